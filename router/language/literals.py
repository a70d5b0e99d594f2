"""Durations and sizes as the rule language and router.toml write them.

Kept apart from the parser so that reading a setting like ``deadline =
"5s"`` does not import Lark: the handler must start fast.
"""

from __future__ import annotations

import re
from datetime import timedelta

from router.language.nodes import Size

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_UNITS = {"B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
#: A whole duration: ``90s``, ``2h``, ``1h30m``.
DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``2h``, ``1h30m`` -> timedelta."""
    seconds = sum(float(num) * _UNITS[unit] for num, unit in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def parse_size(text: str) -> Size:
    """``500KB``, ``2GB``, ``1TB`` -> bytes, in powers of 1024."""
    match = re.match(r"(\d+(?:\.\d+)?)\s*([KMGT]?)", text, re.I)
    assert match is not None
    number, unit = match.groups()
    return Size(int(float(number) * _SIZE_UNITS[(unit or "B").upper()]))
