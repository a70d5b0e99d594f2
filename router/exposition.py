"""Prometheus's text exposition format, written in one place: the service's
own counters (``/metrics``) and every backup's gauges (``router status
--format prometheus``, the same on ``/metrics``) are spelt by it.

Standard library only, and below every stage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Union

Number = Union[int, float]
#: One sample: its labels (name -> value) and its value.
Sample = tuple[Mapping[str, str], Number]


def label(value: str) -> str:
    """A label value, escaped as the format asks (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value: Number) -> str:
    """A sample value: integers as integers, others as Python's shortest repr."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    return repr(float(value))


def family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    """One metric family: its HELP and TYPE lines, then a line per sample."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        shown = ",".join(f'{key}="{label(str(v))}"' for key, v in labels.items())
        lines.append(f"{name}{{{shown}}} {number(value)}" if shown else f"{name} {number(value)}")
    return lines
