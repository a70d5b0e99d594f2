"""Which fields and variables a rule can see: its events' fields in its
conditions, and those plus the router's own variables in its templates."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Optional

from router.catalog import CATALOG, RUN_STATUS_VALUES, STATUS_VALUES, WEEKDAYS, FieldSpec, fields_of
from router.language import nodes as n

#: Values a field can only take from a closed set, checked in comparisons.
ENUMERATED: dict[str, tuple[str, ...]] = {
    "status": STATUS_VALUES,
    "weekday": WEEKDAYS,
    "event": tuple(spec.name for spec in CATALOG),
    "run.status": RUN_STATUS_VALUES,
    "run.kind": ("script", "proactive", "client"),
}
#: Variables every rule's templates see besides the event's fields.
RULE_VARIABLES = ("rule", "previous", "suppressed", "run")
EXPECT_VARIABLES = ("rule", "overdue", "last", "host", "received")
DIGEST_VARIABLES = ("events", "count")


@dataclass(frozen=True)
class FieldInfo:
    types: frozenset[str]
    #: Events of the rule that do not carry this field.
    missing_in: tuple[str, ...]


class Scope:
    """The fields a rule's events carry. ``events`` empty means ``any``.
    ``extra``: fields besides the events' (a silence's ``rule`` and
    ``target``), by name and type."""

    def __init__(self, events: Iterable[str], extra: Optional[dict[str, str]] = None) -> None:
        self.events = tuple(events)
        self.extra = dict(extra or {})
        names = self.events or tuple(spec.name for spec in CATALOG)
        self._per_event = {name: fields_of(name) for name in names}
        self.all_fields: dict[str, list[FieldSpec]] = {}
        for specs in self._per_event.values():
            for name, spec in specs.items():
                self.all_fields.setdefault(name, []).append(spec)
        for name, kind in self.extra.items():
            self.all_fields[name] = [FieldSpec(name, kind, f"the notification's {name}")]

    def lookup(self, name: str) -> Optional[FieldInfo]:
        specs = self.all_fields.get(name)
        if specs is None:
            return None
        if name in self.extra:
            return FieldInfo(frozenset({self.extra[name]}), ())
        missing: tuple[str, ...] = ()
        if self.events:
            missing = tuple(e for e in self.events if name not in self._per_event[e])
        return FieldInfo(frozenset(s.type for s in specs), missing)

    def describe(self) -> str:
        return ", ".join(self.events) if self.events else "any event"


#: Every event's fields (a define is checked against any event).
ANY_EVENT = Scope(())
#: What a silence's condition may test: any event's fields, and the rule
#: and target of the notification it would mute.
SILENCE_FIELDS = ("rule", "target")
SILENCE = Scope((), {name: "str" for name in SILENCE_FIELDS})


@dataclass
class Variables:
    """What a rule's templates may name."""

    scope: Scope
    extra: set[str]
    #: False in expect rules: no event is at hand when they fire.
    fields_visible: bool
    pinned: set[str] = field(default_factory=set)


def template_variables(rule: n.Rule, scope: Scope) -> Variables:
    """What the templates of ``rule`` may name."""
    if rule.is_expect:
        pinned = set(pinned_fields(rule.condition))
        hung = {"run"} if rule.within is not None else set()  # the run that has not ended
        scheduled = {"scheduled", "deadline"} if rule.at is not None else set()
        return Variables(
            scope=scope,
            extra=set(EXPECT_VARIABLES) | pinned | hung | scheduled,
            fields_visible=False,
            pinned=pinned,
        )
    extra = set(RULE_VARIABLES)
    if any(option.kind == "digest" for option in rule.options):
        extra |= set(DIGEST_VARIABLES)
    return Variables(scope=scope, extra=extra, fields_visible=True)


def pinned_fields(condition: Optional[n.Condition]) -> Iterable[str]:
    """Fields an expect rule's where clause fixes with ``==`` (its templates see them)."""
    if isinstance(condition, n.Compare) and condition.op == "==":
        for side in (condition.left, condition.right):
            if isinstance(side, n.Field) and len(side.path) == 1:
                yield side.path[0]
    elif isinstance(condition, n.BoolOp) and condition.op == "and":
        for operand in condition.operands:
            yield from pinned_fields(operand)
