"""Silences: conditions that mute notifications for a while, without
editing rules (maintenance, a laptop on holiday, a known failure).

A silence's condition is the rule language's, over the event's fields
plus ``rule`` (the rule notifying) and ``target``. It mutes notifications
only: ``run``, ``abort`` and ``log`` always happen. The store keeps the
silences (``router/store/silences.py``); ``router silence`` and the
service's ``/silences`` add and expire them, and the checker checks a
condition before it is kept (``router.checker.check_silence``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from router.engine.compiler import ConditionCompiler, Predicate

#: The file name a silence's condition is parsed under (diagnostics' path).
CONDITION_PATH = "condition"


@dataclass(frozen=True)
class Silence:
    """One silence: from ``starts`` until ``ends`` (epoch seconds). Expiring
    one moves its end to now; it stays in the store, for history."""

    id: int
    condition: str
    starts: float
    ends: float
    comment: str = ""
    #: Who added it: the user at the command line, or "http" and its address.
    created_by: str = ""
    created: float = 0.0

    def active(self, now: float) -> bool:
        return self.starts <= now < self.ends

    def state(self, now: float) -> str:
        """ "active", "pending" (starts later) or "expired"."""
        if now >= self.ends:
            return "expired"
        return "active" if now >= self.starts else "pending"

    def record(self, now: float) -> dict[str, Any]:
        """As ``router silence list --format json`` and ``GET /silences`` show it."""
        return {
            "id": self.id,
            "condition": self.condition,
            "starts": _iso(self.starts),
            "ends": _iso(self.ends),
            "comment": self.comment,
            "created_by": self.created_by,
            "created": _iso(self.created),
            "active": self.active(now),
            "state": self.state(now),
        }


@dataclass(frozen=True)
class Muted:
    """A notification a silence kept from being sent."""

    rule: str
    target: str
    silence: int


class Silencer:
    """The silences in force at one moment, compiled: asks, for each
    notification, whether one of them mutes it. A silence whose condition
    no longer compiles (written by another version) mutes nothing and is
    reported in ``problems``."""

    def __init__(self, silences: Iterable[Silence], now: float, date_order: str = "mdy") -> None:
        self.silences: list[tuple[Silence, Predicate]] = []
        self.problems: list[str] = []
        for silence in silences:
            if not silence.active(now):
                continue
            try:
                self.silences.append((silence, compiled(silence.condition, date_order)))
            except Exception as exc:  # noqa: BLE001 - one bad silence mutes nothing, says so
                self.problems.append(f"silence #{silence.id} is ignored: {exc}")

    def __bool__(self) -> bool:
        return bool(self.silences)

    def muting(self, fields: Mapping[str, Any], rule: str, target: str) -> Optional[int]:
        """The id of the first silence that mutes ``rule``'s notification to
        ``target`` for an event with ``fields``; None when none does."""
        if not self.silences:
            return None
        seen = {**fields, "rule": rule, "target": target}
        for silence, test in self.silences:
            try:
                if test(seen, {}):
                    return silence.id
            except Exception:  # noqa: BLE001 - a condition that cannot be decided mutes nothing
                continue
        return None


#: No silences: what callers use without a store.
NO_SILENCES = Silencer((), 0.0)


def mute(
    notifications: list[Any], fields: Mapping[str, Any], silencer: Silencer
) -> tuple[list[Any], list[Muted]]:
    """Notifications (anything with ``rule`` and ``target``) split into the
    ones to send and the ones a silence mutes."""
    if not silencer:
        return notifications, []
    kept, muted = [], []
    for note in notifications:
        silence = silencer.muting(fields, note.rule, note.target)
        if silence is None:
            kept.append(note)
        else:
            muted.append(Muted(note.rule, note.target, silence))
    return kept, muted


@functools.lru_cache(maxsize=256)
def compiled(condition: str, date_order: str = "mdy") -> Predicate:
    """A silence's condition as a predicate over an event's fields (with
    ``rule`` and ``target``); raises ValueError when it does not parse."""
    from router.language.parser import parse_condition

    tree, diagnostics = parse_condition(condition, CONDITION_PATH)
    errors = [d for d in diagnostics if d.is_error]
    if tree is None or errors:
        first = errors[0] if errors else None
        raise ValueError(first.message if first is not None else "the condition does not parse")
    return ConditionCompiler({}, date_order).compile(tree, "silence")


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")


def silenced_rules(muted: Iterable[Muted]) -> dict[str, int]:
    """Each muted rule and the first silence that muted it (for display)."""
    shown: dict[str, int] = {}
    for item in muted:
        shown.setdefault(item.rule, item.silence)
    return shown


def mark_silenced(records: list[dict[str, Any]], muted: Iterable[Muted]) -> list[dict[str, Any]]:
    """Journal decisions with what silences muted: a muted rule's record
    carries ``silenced_by`` (the first silence's id) and ``silenced`` (each
    target and the silence that muted it)."""
    by_rule: dict[str, list[Muted]] = {}
    for item in muted:
        by_rule.setdefault(item.rule, []).append(item)
    for record in records:
        hits = by_rule.get(str(record.get("label")))
        if hits:
            record["silenced_by"] = hits[0].silence
            record["silenced"] = [{"target": m.target, "silence": m.silence} for m in hits]
    return records
