"""Conditions: every field known to the rule's events, every value of the
field's type, every pattern valid, every define defined and not circular."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

from router.catalog import RUN_FIELDS
from router.checker.report import Checking, CheckingVisitor
from router.checker.scope import ENUMERATED, SILENCE_FIELDS, FieldInfo, Scope
from router.checker.spans import pattern_span
from router.events import parse_date
from router.language import nodes as n
from router.language.operators import COMPARISONS, PATTERN_TYPES, PATTERNS
from router.runs import RUN_EVENTS
from router.suggest import did_you_mean

_NUMERIC = {"int", "float"}
_ORDERED = {"int", "float", "duration", "datetime"}
_TEXT = {"str", "path"}
_LITERAL_WORDS = {
    "number": "a number",
    "string": "a string",
    "duration": "a duration",
    "size": "a size",
    "bool": "true/false",
}


class ConditionChecker(CheckingVisitor):
    """Checks one condition against a scope; ``stack`` is the chain of
    defines being expanded (to find one that refers back to itself)."""

    def check(self, cond: n.Condition, scope: Scope, stack: tuple[str, ...] = ()) -> None:
        self.visit(cond, scope, stack)

    def visit_BoolOp(self, cond: n.BoolOp, scope: Scope, stack: tuple[str, ...]) -> None:
        for operand in cond.operands:
            self.visit(operand, scope, stack)

    def visit_Not(self, cond: n.Not, scope: Scope, stack: tuple[str, ...]) -> None:
        self.visit(cond.operand, scope, stack)

    def visit_Compare(self, cond: n.Compare, scope: Scope, stack: tuple[str, ...]) -> None:
        self.check_compare(cond.op, cond.left, cond.right, scope)

    def visit_Between(self, cond: n.Between, scope: Scope, stack: tuple[str, ...]) -> None:
        self.check_compare(">=", cond.field, cond.low, scope)
        self.check_compare("<=", cond.field, cond.high, scope, report_missing=False)
        low, high = cond.low, cond.high
        if isinstance(low, n.Literal) and isinstance(high, n.Literal) and low.kind == high.kind:
            try:
                empty = _ordered_value(low) > _ordered_value(high)
            except TypeError:
                return
            if empty:
                self.checking.warning(
                    low.span, "empty-range", "the lower bound is above the upper bound: never true"
                )

    def visit_Exists(self, cond: n.Exists, scope: Scope, stack: tuple[str, ...]) -> None:
        self.check_field(cond.field, scope, report_missing=False)

    def visit_Pattern(self, cond: n.Pattern, scope: Scope, stack: tuple[str, ...]) -> None:
        info = self.check_field(cond.field, scope)
        if info is not None and not info.types & PATTERN_TYPES:
            self.checking.error(
                cond.field.span,
                "type-mismatch",
                f"'{cond.op}' works on text, and {cond.field.name} is {_kinds(info.types)}",
                "compare numbers, durations and dates with ==, <, >, between",
            )
        problem = PATTERNS[cond.op].problem(str(cond.pattern.value))
        if problem is not None:
            span = pattern_span(self.checking, cond.pattern, problem.offset, problem.length)
            self.checking.error(span, problem.code, problem.message, problem.hint)

    def visit_Member(self, cond: n.Member, scope: Scope, stack: tuple[str, ...]) -> None:
        info = self.check_field(cond.field, scope)
        values = cond.values.value
        assert isinstance(values, tuple)
        if not values:
            message = "the list is empty" + ("" if cond.negated else ": 'in' is never true")
            self.checking.warning(cond.values.span, "empty-list", message)
        if info is None:
            return
        for literal in values:
            self.check_literal("==", cond.field, info.types, literal)

    def visit_Reference(self, ref: n.Reference, scope: Scope, stack: tuple[str, ...]) -> None:
        define = self.checking.defines.get(ref.name)
        if define is not None:
            self.check_define_use(ref, define, scope, stack)
            return
        info = scope.lookup(ref.name)
        if info is None:
            candidates = list(self.checking.defines) + list(scope.all_fields)
            self.checking.error(
                ref.span,
                "unknown-name",
                f"unknown name '{ref.name}'" + did_you_mean(ref.name, candidates),
                "a bare name must be a define or a true/false field",
            )
        elif info.types != {"bool"}:
            self.checking.error(
                ref.span,
                "not-a-condition",
                f"'{ref.name}' is a {_kinds(info.types)} field, not a condition",
                f"compare it, for example: {ref.name} == ...",
            )
        else:
            self.report_missing(ref.name, ref.span, info, scope)

    # -- defines

    def check_define_use(
        self, ref: n.Reference, define: n.Define, scope: Scope, stack: tuple[str, ...]
    ) -> None:
        self.checking.used_defines.add(ref.name)
        if ref.name in stack:
            self.checking.error(
                ref.span,
                "recursive-define",
                f"define '{ref.name}' refers to itself (through {' -> '.join(stack)})",
            )
            return
        cycle = self.define_cycle(ref.name, stack)
        if cycle:
            self.checking.error(
                ref.span,
                "recursive-define",
                f"define '{ref.name}' refers back to '{cycle[-1]}'"
                f" ({' -> '.join([*stack[-1:], *cycle])})",
            )
            return
        if not scope.events:
            return
        # The define was checked on its own; here only: do this rule's
        # events carry the fields it tests?
        from router.checker.result import CheckResult

        inner = Checking(CheckResult(sources=self.checking.result.sources))
        inner.defines = self.checking.defines
        ConditionChecker(inner).check(define.condition, scope, stack + (ref.name,))
        for diag in inner.diagnostics:
            if diag.code in ("unknown-field", "missing-field"):
                self.checking.report(
                    ref.span,
                    diag.severity,
                    diag.code,
                    f"define '{ref.name}': {diag.message}",
                    diag.hint,
                )

    def define_cycle(self, name: str, stack: tuple[str, ...]) -> Optional[list[str]]:
        """The chain of defines from ``name`` back into ``stack`` (``a = b``,
        ``b = a``), or None. Direct self-reference is caught by the caller."""
        if not stack:
            return None
        defines = self.checking.defines
        pending, seen = [[name]], {name}
        while pending:
            chain = pending.pop()
            define = defines.get(chain[-1])
            if define is None:
                continue
            for ref in _references(define.condition):
                if ref in stack:
                    return chain + [ref]
                if ref not in seen and ref in defines:
                    seen.add(ref)
                    pending.append(chain + [ref])
        return None

    # -- fields and values

    def check_field(
        self, ref: n.Field, scope: Scope, report_missing: bool = True
    ) -> Optional[FieldInfo]:
        """The field's info, or None after reporting why it is unknown."""
        path = ref.path
        if path[0] == "run":
            return run_field(self.checking, ref, scope)
        if path[0] == "previous":
            if len(path) != 2:
                self.checking.error(
                    ref.span,
                    "unknown-field",
                    "'previous' needs one field after it, as in previous.status",
                )
                return None
            name = path[1]
        elif len(path) > 1:
            self.checking.error(
                ref.span,
                "unknown-field",
                f"unknown field '{ref.name}'; only previous.FIELD and run.FIELD have a dot",
            )
            return None
        else:
            name = path[0]
        info = scope.lookup(name)
        if info is None and name in SILENCE_FIELDS:
            self.checking.error(
                ref.span,
                "unknown-field",
                f"'{name}' can be tested in a silence's condition only",
                "a rule knows its own name and targets; `router silence add` mutes by them",
            )
            return None
        if info is None:
            where = "" if not scope.events else f" for {scope.describe()}"
            self.checking.error(
                ref.span,
                "unknown-field",
                f"unknown field '{name}'{where}" + did_you_mean(name, scope.all_fields),
                f"`router events {scope.events[0]}` lists its fields" if scope.events else None,
            )
            return None
        if report_missing:
            self.report_missing(name, ref.span, info, scope)
        return info

    def report_missing(self, name: str, span: n.Span, info: FieldInfo, scope: Scope) -> None:
        if info.missing_in:
            self.checking.warning(
                span,
                "missing-field",
                f"{', '.join(info.missing_in)} has no field '{name}'",
                "a test on a field the event lacks is false: the rule never matches those events",
            )

    def check_compare(
        self,
        op: str,
        left: n.Operand,
        right: n.Operand,
        scope: Scope,
        report_missing: bool = True,
    ) -> None:
        left_types = self._types(left, scope, report_missing)
        right_types = self._types(right, scope, report_missing)
        if isinstance(left, n.Literal) and isinstance(right, n.Literal):
            self.checking.warning(
                left.span, "constant-comparison", "this compares two constants; it never changes"
            )
            return
        if isinstance(left, n.Field) and isinstance(right, n.Field):
            if left_types and right_types and not _comparable(left_types, right_types):
                self.checking.error(
                    right.span,
                    "type-mismatch",
                    f"cannot compare {left.name} ({_kinds(left_types)})"
                    f" with {right.name} ({_kinds(right_types)})",
                )
            return
        field_ref, literal = (left, right) if isinstance(left, n.Field) else (right, left)
        types = left_types if isinstance(left, n.Field) else right_types
        assert isinstance(field_ref, n.Field) and isinstance(literal, n.Literal)
        if types:
            self.check_literal(op, field_ref, types, literal)

    def _types(
        self, operand: n.Operand, scope: Scope, report_missing: bool
    ) -> Optional[frozenset[str]]:
        if isinstance(operand, n.Field):
            info = self.check_field(operand, scope, report_missing)
            return None if info is None else info.types
        return None

    def check_literal(
        self, op: str, field_ref: n.Field, types: frozenset[str], literal: n.Literal
    ) -> None:
        """Does ``literal`` fit the field's type under ``op``? Reports when not."""
        name = field_ref.path[-1]
        if COMPARISONS[op].orders and not types & _ORDERED:
            self.checking.error(
                literal.span,
                "type-mismatch",
                f"'{op}' does not order {_kinds(types)} values like {field_ref.name}",
                "text fields compare with ==, !=, matches, =~, contains or in",
            )
            return
        if literal.kind == "list":
            self.checking.error(
                literal.span,
                "type-mismatch",
                f"cannot compare {field_ref.name} with a list",
                f"to test membership: {field_ref.name} in [...]",
            )
            return
        problem = _literal_problem(name, types, literal)
        if problem:
            message, hint = problem
            self.checking.error(literal.span, "type-mismatch", message, hint)
            return
        if literal.kind == "size" and name != "bytes":
            self.checking.warning(
                literal.span,
                "size-unit",
                f"sizes are byte counts, but {field_ref.name} is not",
                "compare sizes with bytes, as in bytes > 20MB",
            )
        allowed = ENUMERATED.get(field_ref.name if field_ref.path[0] == "run" else name)
        if allowed and literal.kind == "string" and literal.value not in allowed:
            self.checking.error(
                literal.span,
                "bad-value",
                f"{field_ref.name} is never {literal.value!r}"
                + did_you_mean(str(literal.value), allowed),
                f"{name} is one of: {', '.join(allowed)}",
            )


def run_field(checking: Checking, ref: n.Field, scope: Scope) -> Optional[FieldInfo]:
    """``run.FIELD``: a field of the run (docs/rules.md, "Runs"), on events
    that belong to runs; None after reporting an unknown one."""
    specs = {spec.name: spec for spec in RUN_FIELDS}
    name = ref.path[1] if len(ref.path) == 2 else ""
    spec = specs.get(name)
    if spec is None:
        checking.error(
            ref.span,
            "unknown-field",
            f"unknown field '{ref.name}'" + did_you_mean(ref.name, [f"run.{k}" for k in specs]),
            "run has: " + ", ".join(specs),
        )
        return None
    warn_outside_runs(checking, ref, scope)
    return FieldInfo(frozenset({spec.type}), ())


def warn_outside_runs(checking: Checking, ref: n.Field, scope: Scope) -> None:
    """A warning when some of the rule's events belong to no run (a
    silence's condition applies to any event: outside runs it is false)."""
    if scope.extra:
        return
    outside = [e for e in scope.events or ("any",) if e not in RUN_EVENTS]
    if outside:
        checking.warning(
            ref.span,
            "missing-field",
            f"{', '.join(outside)} belongs to no run: '{ref.name}' is absent there",
            "runs are made of " + ", ".join(RUN_EVENTS),
        )


def _kinds(types: Iterable[str]) -> str:
    return "/".join(sorted(types))


def _comparable(left: Iterable[str], right: Iterable[str]) -> bool:
    left, right = set(left), set(right)
    if left & right:
        return True
    return bool(left & _NUMERIC and right & _NUMERIC)


def _literal_problem(
    name: str, types: frozenset[str], literal: n.Literal
) -> Optional[tuple[str, Optional[str]]]:
    """(message, hint) when ``literal`` cannot be compared with the field."""
    kind = literal.kind
    if types & _TEXT and kind == "string":
        return None
    if types & _NUMERIC and kind in ("number", "size"):
        return None
    if "bool" in types and kind == "bool":
        return None
    if "duration" in types and kind == "duration":
        return None
    if "datetime" in types and kind == "string":
        if parse_date(str(literal.value)) is not None:
            return None
        return (
            f"{literal.value!r} is not a date, so it cannot be compared with {name}",
            'write dates as "2024-01-31 18:00" or as Retrospect prints them',
        )
    hint = None
    if "duration" in types and kind == "number":
        hint = f"write a duration with its unit, as in {name} > 30m"
    elif types & _TEXT and kind != "string":
        hint = 'put text in double quotes, as in "Daily Backup"'
    elif "bool" in types and kind == "string":
        hint = f"write {name} == true or {name} == false, without quotes"
    elif types & _NUMERIC and kind == "string":
        hint = "numbers are written without quotes"
    return (f"{name} is {_kinds(types)}, not {_LITERAL_WORDS.get(kind, kind)}", hint)


def _ordered_value(literal: n.Literal) -> object:
    value = literal.value
    return value.bytes if isinstance(value, n.Size) else value


def _references(condition: n.Condition) -> Iterable[str]:
    """The bare names (defines or boolean fields) a condition mentions."""
    if isinstance(condition, n.Reference):
        yield condition.name
    elif isinstance(condition, n.Not):
        yield from _references(condition.operand)
    elif isinstance(condition, n.BoolOp):
        for operand in condition.operands:
            yield from _references(operand)
