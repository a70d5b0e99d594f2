"""Conditions -> fast predicates: each becomes one small Python function.

The source of one expression over ``f`` (the event's fields) and ``p`` (the
previous event's fields) is generated from the syntax tree, with literals
bound as constants, and compiled once per ruleset: no tree walking per
event. The operators' tests come from ``router/language/operators.py``.

Semantics: a comparison on a field the event does not have is false, and
so is one on a value of the wrong type (an unparsed number arriving as
text); ``not`` of either is true.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Callable, Optional

from router.catalog import EVENTS, fields_of
from router.events import parse_date
from router.language import nodes as n
from router.language.operators import COMPARISONS, PATTERNS
from router.language.regex import RegexError

#: Stands for "the event has no such field" inside compiled conditions.
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()

Predicate = Callable[[Mapping[str, Any], Mapping[str, Any]], bool]

#: Which runtime types may be ordered against a literal of each kind.
_ORDER_TYPES = {
    "number": (int, float),
    "size": (int, float),
    "duration": (timedelta,),
    "date": (datetime,),
}


class ConditionCompiler:
    """Turns a condition tree into the source of one Python expression over
    ``f`` (the event's fields) and ``p`` (the previous event's fields),
    with literals bound as constants."""

    def __init__(self, defines: Mapping[str, n.Define], date_order: str = "mdy") -> None:
        self.defines = defines
        self.date_order = date_order
        self.constants: dict[str, Any] = {
            "M": MISSING,
            "E": {},
            "timedelta": timedelta,
            "datetime": datetime,
        }
        self.uses_history = False

    def const(self, value: Any) -> str:
        name = f"c{len(self.constants)}"
        self.constants[name] = value
        return name

    def compile(self, condition: Optional[n.Condition], label: str) -> Predicate:
        source = self.expression(condition) if condition is not None else "True"
        code = compile(f"lambda f, p: {source}", f"<rule {label}>", "eval")
        return eval(code, dict(self.constants))  # noqa: S307 - our own generated source

    # -- expressions

    def expression(self, cond: n.Condition) -> str:
        method = getattr(self, f"_{type(cond).__name__.lower()}")
        return method(cond)

    def _boolop(self, cond: n.BoolOp) -> str:
        return "(" + f" {cond.op} ".join(self.expression(c) for c in cond.operands) + ")"

    def _not(self, cond: n.Not) -> str:
        return f"(not {self.expression(cond.operand)})"

    def _reference(self, cond: n.Reference) -> str:
        define = self.defines.get(cond.name)
        if define is not None:
            return self.expression(define.condition)
        return f"({self.access(n.Field((cond.name,), cond.span))} is True)"

    def _exists(self, cond: n.Exists) -> str:
        if cond.field.path[0] == "run" and len(cond.field.path) == 2:
            return f"({cond.field.path[1]!r} in (f.get('run') or E))"
        holder, name = self.holder(cond.field)
        return f"({name!r} in {holder})"

    def _compare(self, cond: n.Compare) -> str:
        left, right, op = cond.left, cond.right, cond.op
        if isinstance(left, n.Literal) and isinstance(right, n.Literal):
            return repr(bool(_apply(op, self.value(left), self.value(right))))
        if isinstance(left, n.Field) and isinstance(right, n.Field):
            a, b = self.access(left), self.access(right)
            if op in ("==", "!="):
                # Values of different types (a number kept as text) are not compared.
                return (
                    f"((type(_a := {a}) is type(_b := {b}) or "
                    f"type(_a) in (int, float) and type(_b) in (int, float))"
                    f" and _a is not M and _a {op} _b)"
                )
            return (
                f"(type(_a := {a}) in (int, float, timedelta, datetime) and "
                f"type(_b := {b}) in (int, float, timedelta, datetime) and "
                f"(type(_a) is type(_b) or type(_a) in (int, float) and type(_b) in (int, float))"
                f" and _a {op} _b)"
            )
        if isinstance(left, n.Literal):
            left, right, op = right, left, COMPARISONS[op].flipped
        assert isinstance(left, n.Field) and isinstance(right, n.Literal)
        return self.field_vs_literal(left, op, right)

    def field_vs_literal(self, ref: n.Field, op: str, literal: n.Literal) -> str:
        access = self.access(ref)
        value = self.value(literal, ref)
        constant = self.const(value)
        if op == "==":
            return f"({access} == {constant})"
        if op == "!=":
            # Not "different" unless it is a value of the literal's type at all.
            return f"(type(_v := {access}) in {self.const(_types_of(value))} and _v != {constant})"
        kind = "date" if isinstance(value, datetime) else literal.kind
        types = self.const(_ORDER_TYPES.get(kind, (type(value),)))
        return f"(type(_v := {access}) in {types} and _v {op} {constant})"

    def _pattern(self, cond: n.Pattern) -> str:
        pattern = PATTERNS[cond.op]
        try:
            prepared = pattern.prepare(str(cond.pattern.value))
        except RegexError as exc:
            raise RegexError(f"{cond.pattern.span}: {exc}") from None
        return pattern.expression.format(
            value=self.access(cond.field), pattern=self.const(prepared)
        )

    def _member(self, cond: n.Member) -> str:
        literals = cond.values.value
        assert isinstance(literals, tuple)
        values = [self.value(lit, cond.field) for lit in literals]
        try:
            pool: Any = frozenset(values)
        except TypeError:
            pool = tuple(values)
        constant = self.const(pool)
        access = self.access(cond.field)
        if cond.negated:
            # As with !=: only a value of the list's types is "not in" it.
            types = tuple(dict.fromkeys(t for v in values for t in _types_of(v)))
            if not types:
                return f"({access} is not M)"
            return f"(type(_v := {access}) in {self.const(types)} and _v not in {constant})"
        return f"({access} in {constant})"

    def _between(self, cond: n.Between) -> str:
        low = self.between_bound(cond.field, ">=", cond.low)
        high = self.between_bound(cond.field, "<=", cond.high)
        return f"({low} and {high})"

    def between_bound(self, ref: n.Field, op: str, bound: n.Operand) -> str:
        if isinstance(bound, n.Literal):
            return self.field_vs_literal(ref, op, bound)
        return self._compare(n.Compare(op, ref, bound, bound.span))

    # -- operands

    def holder(self, ref: n.Field) -> tuple[str, str]:
        """The dict a field lives in (``f`` or ``p``) and its key."""
        if ref.path[0] == "previous" and len(ref.path) == 2:
            self.uses_history = True
            return "p", ref.path[1]
        if ref.path == ("streak",):
            self.uses_history = True
        return "f", ref.path[0]

    def access(self, ref: n.Field) -> str:
        if ref.path[0] == "run" and len(ref.path) == 2:  # the event's run (router/runs.py)
            return f"(f.get('run') or E).get({ref.path[1]!r}, M)"
        holder, name = self.holder(ref)
        return f"{holder}.get({name!r}, M)"

    def value(self, literal: n.Literal, ref: Optional[n.Field] = None) -> Any:
        """A literal as the runtime value it is compared with. A string
        compared with a datetime field is a date, compared by value."""
        value = literal.value
        if isinstance(value, n.Size):
            return value.bytes
        if literal.kind == "string" and ref is not None and field_type(ref.path[-1]) == "datetime":
            parsed = parse_date(str(value), self.date_order)
            if parsed is not None:
                return parsed
        return value


def _types_of(value: Any) -> tuple[type, ...]:
    """The runtime types a field's value must have to be compared with
    ``value`` at all: a bool is not a number, a number kept as text is not one."""
    if isinstance(value, bool):
        return (bool,)
    if isinstance(value, (int, float)):
        return (int, float)
    return (type(value),)


def field_type(name: str) -> Optional[str]:
    """A field's type, which the catalog keeps the same in every event."""
    return _FIELD_TYPES.get(name)


_FIELD_TYPES: dict[str, str] = {
    name: spec.type for event in EVENTS for name, spec in fields_of(event).items()
}


def _apply(op: str, a: Any, b: Any) -> bool:
    """``a op b`` for a comparison of two constants (decided at compile time)."""
    try:
        return bool(COMPARISONS[op].test(a, b))
    except TypeError:
        return False
