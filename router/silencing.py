"""Adding, listing and expiring silences: what ``router silence`` and the
service's ``/silences`` share, so a silence is checked and kept the same
way whichever door it comes in by.

What a silence is and how it mutes is ``router/engine/silences.py``; the
store keeps them (``router/store/silences.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

from router.checker import check_silence
from router.engine.silences import CONDITION_PATH, Silence
from router.events import parse_date
from router.language.diagnostics import render_text
from router.store import Store
from router.units import DURATION, parse_duration

#: The longest condition and comment kept (they are shown in lists and pages).
MAX_CONDITION, MAX_COMMENT = 4096, 1000
#: How a time is written, for messages.
TIME_EXAMPLE = '"2026-12-01 08:00"'


class SilenceRefused(ValueError):
    """A silence that cannot be kept; the message says why, with the
    condition's diagnostics and their positions."""


@dataclass
class Added:
    silence: Silence
    #: The condition's warnings (it was kept all the same), as text.
    warnings: list[str] = field(default_factory=list)


def window(
    now: float,
    duration: Optional[str] = None,
    until: Optional[str] = None,
    starts: Optional[str] = None,
    date_order: str = "mdy",
) -> tuple[float, float]:
    """(starts, ends) from ``--for``/``--until`` and ``--starts``, as epoch
    seconds; SilenceRefused when they are missing, malformed or empty."""
    begin = now
    if starts:
        begin = _time(starts, "starts", date_order)
    if (duration is None) == (until is None):
        raise SilenceRefused("give how long (for, as in 10d) or until when (until), not both")
    if duration is not None:
        text = duration.strip()
        if not DURATION.fullmatch(text) or parse_duration(text).total_seconds() <= 0:
            raise SilenceRefused(f"for {duration!r} is not a duration (as in 2h, 10d, 1w)")
        end = begin + parse_duration(text).total_seconds()
    else:
        end = _time(str(until), "until", date_order)
    if end <= now:
        raise SilenceRefused("the silence would have ended already")
    if end <= begin:
        raise SilenceRefused("the silence would end before it starts")
    return begin, end


def _time(text: str, what: str, date_order: str) -> float:
    parsed = parse_date(text.strip(), date_order)
    if parsed is None:
        raise SilenceRefused(f"{what} {text!r} is not a time (as in {TIME_EXAMPLE})")
    return parsed.timestamp()


def add(
    store: Store,
    condition: str,
    starts: float,
    ends: float,
    comment: str = "",
    created_by: str = "",
    now: Optional[float] = None,
) -> Added:
    """Check ``condition`` as a rule's would be, then keep the silence.
    SilenceRefused (nothing kept) when the condition has errors."""
    if not condition.strip():
        raise SilenceRefused("the condition is empty (as in 'client == \"LAPTOP-7\"')")
    if len(condition) > MAX_CONDITION or len(comment) > MAX_COMMENT:
        raise SilenceRefused(
            f"at most {MAX_CONDITION} characters of condition and {MAX_COMMENT} of comment"
        )
    result = check_silence(condition, CONDITION_PATH)
    if result.errors:
        raise SilenceRefused(
            "the condition has errors:\n" + render_text(result.errors, result.sources)
        )
    warnings = [d for d in result.diagnostics if not d.is_error]
    silence = store.silences.add(condition, starts, ends, comment, created_by, now)
    shown = render_text(warnings, result.sources) if warnings else ""
    return Added(silence, [shown] if shown else [])


def expire(store: Store, silence_id: int, now: Optional[float] = None) -> Silence:
    """End a silence now; LookupError when there is no such silence."""
    now = time.time() if now is None else now
    silence = store.silences.expire(silence_id, now)
    if silence is None:
        raise LookupError(f"no silence #{silence_id}")
    return silence


def listed(store: Store, every: bool = False, now: Optional[float] = None) -> list[Silence]:
    """The silences not yet ended; ``every``: the expired ones too."""
    return store.silences.every() if every else store.silences.current(now)
