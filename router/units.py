"""Durations and sizes as the rule language and router.toml write them:
``90s``, ``5m``, ``1h30m``, ``2d``, ``1w``; ``500KB``, ``2GB``, ``1TB``.

Standard library only, and below every stage: the parser, the checker and
the configuration read these the same way.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_UNITS = {"B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
#: A whole duration: ``90s``, ``2h``, ``1h30m``.
DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``2h``, ``1h30m`` -> timedelta."""
    seconds = sum(float(num) * _UNITS[unit] for num, unit in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def parse_size(text: str) -> int:
    """``500KB``, ``2GB``, ``1TB`` -> bytes, in powers of 1024."""
    match = re.match(r"(\d+(?:\.\d+)?)\s*([KMGT]?)", text, re.I)
    assert match is not None
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[(unit or "B").upper()])


def seconds(value: object) -> float:
    """A duration setting as seconds: a number, or a string like ``"10s"``,
    ``"1h30m"``. ValueError for anything else (negative or zero included)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    elif isinstance(value, str) and DURATION.fullmatch(value.strip()):
        result = parse_duration(value.strip()).total_seconds()
    else:
        raise ValueError(value)
    if not result > 0:
        raise ValueError(value)
    return result
