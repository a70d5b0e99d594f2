"""Schedules: ``expect ... at "CRON" [tz "ZONE"] grace D`` (docs/rules.md).

Cron expressions are Healthchecks' dialect, through ``cronsim`` (the
library Healthchecks itself uses): five fields, lists, ranges, steps, names
of days and months; daylight saving time as Debian's cron does it (a 02:30
job on the spring change day runs once, at 03:00; on the autumn day, once).
Zones are IANA names through ``zoneinfo``; without ``tz``, the router's
local time.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Optional

from cronsim import CronSim, CronSimError

#: How far back a missed time is looked for: the router may have been down,
#: but only the latest missed time fires (and a monthly schedule still has one).
LOOK_BACK = timedelta(days=40)
#: At most this many scheduled times are stepped through at one look
#: (an every-minute schedule over LOOK_BACK).
MOST_STEPS = 100_000


def cron_problem(expression: str) -> Optional[str]:
    """Why ``expression`` is not a cron expression cronsim accepts, or None."""
    try:
        CronSim(expression, datetime(2026, 1, 1))
    except CronSimError as exc:
        return str(exc) or "not a cron expression"
    except Exception as exc:  # noqa: BLE001 - cronsim's own surprises, said as such
        return f"{type(exc).__name__}: {exc}"
    return None


def zone(name: Optional[str]) -> Optional[tzinfo]:
    """The IANA zone ``name`` (None: the router's local time). Raises
    KeyError for a zone this machine does not know."""
    if not name:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise KeyError(name) from None


def zone_problem(name: str) -> Optional[str]:
    try:
        zone(name)
    except KeyError:
        return f"unknown time zone {name!r}"
    return None


def latest_missed(
    expression: str, where: Optional[tzinfo], since: float, now: float, grace: float
) -> Optional[float]:
    """The latest scheduled time after ``since`` whose ``grace`` has passed
    by ``now`` (a POSIX time), or None: what a schedule that has seen no
    matching event since ``since`` has missed."""
    start = max(since, now - LOOK_BACK.total_seconds() - grace)
    found: Optional[float] = None
    for steps, scheduled in enumerate(CronSim(expression, datetime.fromtimestamp(start, where))):
        at = scheduled.timestamp()
        if at + grace > now or steps >= MOST_STEPS:
            break
        if at > since:
            found = at
    return found


def next_after(expression: str, where: Optional[tzinfo], after: float) -> Optional[float]:
    """The first scheduled time after ``after`` (a POSIX time), or None."""
    for scheduled in CronSim(expression, datetime.fromtimestamp(after, where)):
        at = scheduled.timestamp()
        if at > after:
            return at
    return None
