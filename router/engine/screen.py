"""Screening: which of an event's rules can match it, without running them.

Most rules in a large ruleset name one script or client: ``script ==
"Nightly-12"``, ``client matches "ws-0042*"``. Such a rule cannot match an
event whose ``script`` is "Daily", so a handler run need not even load it,
let alone compile it. A :class:`Screen` is one such necessary condition,
found in the top-level ``and`` of a rule's ``where``; a
:class:`ScreenIndex` maps an event's field values to the rules that pass
their screens. The screen only ever removes rules whose condition would be
false: every rule it keeps is still evaluated in full.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, Optional

from router.engine.compiler import field_type
from router.language import nodes as n


class Screen(NamedTuple):
    """A field's value must be ``text`` (``equal``), or must start with it
    ignoring ASCII case (``prefix``: a ``matches`` glob's literal start)."""

    field: str
    kind: str  # "equal" | "prefix"
    text: str


def screens_of(rule: n.Rule) -> list[Screen]:
    """Every screen a rule's condition implies (none for a rule with no
    ``where``, or one whose top level is an ``or``)."""
    condition = rule.condition
    operands: tuple[n.Condition, ...] = ()
    if isinstance(condition, n.BoolOp) and condition.op == "and":
        operands = condition.operands
    elif condition is not None:
        operands = (condition,)
    found = []
    for operand in operands:
        screen = _screen(operand)
        if screen is not None:
            found.append(screen)
    return found


def _screen(condition: n.Condition) -> Optional[Screen]:
    if isinstance(condition, n.Compare) and condition.op == "==":
        field, literal = condition.left, condition.right
        if isinstance(field, n.Literal):
            field, literal = literal, field
        name = _event_field(field)
        # A string compared with a text field: the value must be that string
        # (a date field's string is parsed, so it is not screened).
        if (
            name
            and isinstance(literal, n.Literal)
            and literal.kind == "string"
            and isinstance(literal.value, str)
            and not _is_date(name)
        ):
            return Screen(name, "equal", literal.value)
    if isinstance(condition, n.Pattern) and condition.op == "matches":
        name = _event_field(condition.field)
        glob = str(condition.pattern.value)
        start = _literal_start(glob)
        if name and start:
            return Screen(name, "prefix", start.lower())
    return None


def _event_field(operand: object) -> Optional[str]:
    """The name of an event field (not ``previous.``, not ``streak``)."""
    if isinstance(operand, n.Field) and len(operand.path) == 1:
        name = operand.path[0]
        if name not in ("previous", "streak"):
            return name
    return None


def _is_date(name: str) -> bool:
    return field_type(name) == "datetime"


def _literal_start(glob: str) -> str:
    """A glob's text before its first wildcard, when that is ASCII (a glob
    matches ignoring case, and only ASCII case is simple to screen)."""
    for position, char in enumerate(glob):
        if char in "*?[":
            glob = glob[:position]
            break
    else:
        return ""  # no wildcard: "==" ignoring case; rare enough not to screen
    return glob if glob.isascii() else ""


class ScreenIndex:
    """An event's rules by the screens they pass. Each rule is filed under
    one screen: the one on the field with the most distinct values among the
    rules (``script`` before ``status``); a rule with none is always kept."""

    def __init__(self, found: Iterable[tuple[int, list[Screen]]]) -> None:
        """``found``: each rule's position and :func:`screens_of` it."""
        found = list(found)
        spread: dict[str, set[str]] = {}
        for _, screens in found:
            for screen in screens:
                spread.setdefault(screen.field, set()).add(screen.text)
        self.always: list[int] = []
        self.equal: dict[str, dict[str, list[int]]] = {}
        #: field -> prefix length -> lower-case prefix -> positions
        self.prefix: dict[str, dict[int, dict[str, list[int]]]] = {}
        for position, screens in found:
            if not screens:
                self.always.append(position)
                continue
            best = max(screens, key=lambda s: (len(spread[s.field]), s.kind == "equal"))
            if best.kind == "equal":
                self.equal.setdefault(best.field, {}).setdefault(best.text, []).append(position)
            else:
                by_length = self.prefix.setdefault(best.field, {})
                by_length.setdefault(len(best.text), {}).setdefault(best.text, []).append(position)

    def select(self, fields: Mapping[str, Any]) -> list[int]:
        """The positions of the rules that can match an event with ``fields``,
        in order."""
        chosen = list(self.always)
        for name, by_text in self.equal.items():
            value = fields.get(name)
            if isinstance(value, str):
                chosen += by_text.get(value, ())
        for name, by_length in self.prefix.items():
            value = fields.get(name)
            if not isinstance(value, str):
                continue  # "matches" is false on anything but text
            if not value.isascii():
                # Case-insensitive matching of non-ASCII text folds more than
                # lower() does: keep every rule screened on this field.
                for by_text in by_length.values():
                    for positions in by_text.values():
                        chosen += positions
                continue
            lowered = value.lower()
            for length, by_text in by_length.items():
                chosen += by_text.get(lowered[:length], ())
        chosen.sort()
        return chosen


class LeftOut(NamedTuple):
    """What screening left out of a part of a ruleset: the whole ruleset's
    positions of the rules kept (``kept[i]`` is part position ``i``) and of
    those left out, both in order."""

    kept: list[int]
    left_out: list[int]

    def before(self, position: Optional[int]) -> int:
        """How many left-out rules come before the part's rule at
        ``position`` (all of them for None): the rules an evaluation that
        stopped there would have tried."""
        if position is None:
            return len(self.left_out)
        return bisect_left(self.left_out, self.kept[position])
