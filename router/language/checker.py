"""Semantic checks over parsed rule files: everything docs/rules.md's
"Checking" section lists, beyond syntax.

The checker reads a whole ruleset at once (targets and defines are shared
by all files in a rules directory) and never has side effects: it sends
nothing, runs nothing, writes nothing. Its result is also what the engine
loads, so a ruleset is checked exactly as it will run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable, Optional

from router.actions import Action
from router.events import (
    CATALOG,
    EVENTS,
    STATUS_VALUES,
    WEEKDAYS,
    FieldSpec,
    canonical_name,
    fields_of,
    parse_date,
)
from router.language import nodes as n
from router.language.diagnostics import ERROR, WARNING, Diagnostic
from router.language.parser import parse_file
from router.language.regex import RegexProblem, compile_regex
from router.suggest import did_you_mean
from router.templates import environment, template_refs
from router.trust import admin_problem

RULE_SUFFIX = ".rules"
#: Values a field can only take from a closed set, checked in comparisons.
ENUMERATED: dict[str, tuple[str, ...]] = {
    "status": STATUS_VALUES,
    "weekday": WEEKDAYS,
    "event": tuple(spec.name for spec in CATALOG),
}
#: Variables every rule's templates see besides the event's fields.
RULE_VARIABLES = ("rule", "previous", "suppressed")
EXPECT_VARIABLES = ("rule", "overdue", "last", "host", "received")
DIGEST_VARIABLES = ("events", "count")
_NUMERIC = {"int", "float"}
_ORDERED = {"int", "float", "duration", "datetime"}
_TEMPLATE_MARK = re.compile(r"{[{%]")
REFUSAL_HINT = (
    "rules can run programs as the user Retrospect runs as (often root):"
    " make it owned by root or that user, and chmod go-w it"
)


@dataclass
class CheckResult:
    """What ``router check`` reports, plus what the engine needs to load."""

    files: int = 0
    rule_files: list[n.RuleFile] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: File path -> its lines, for printing source lines under diagnostics.
    sources: dict[str, list[str]] = field(default_factory=dict)
    #: ``file`` templates' text, by the template node (the engine renders these).
    template_files: dict[n.Template, str] = field(default_factory=dict)
    #: Set when the paths themselves are unusable (exit status 2).
    usage_error: Optional[str] = None

    @property
    def rules(self) -> int:
        return sum(isinstance(s, n.Rule) for f in self.rule_files for s in f.statements)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]


# ---------------------------------------------------------------------------
# Finding rule files
# ---------------------------------------------------------------------------


def discover(paths: Iterable[Path]) -> tuple[list[Path], Optional[str]]:
    """Rule files under ``paths``: a directory gives its ``*.rules`` in name order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix == RULE_SUFFIX))
        elif path.is_file():
            found.append(path)
        else:
            return [], f"{path}: no such file or directory"
    return found, None


def permission_problem(path: Path, *, check_directory: bool = True) -> Optional[str]:
    """Why the router refuses ``path``, or None: rules can run programs as the
    user Retrospect runs as, often root, so a rule file, its directory and
    every file a rule reads (templates, Apprise configs, programs) must be
    owned by root or the router's user and writable by no one else."""
    return admin_problem(path, check_directory=check_directory)


# ---------------------------------------------------------------------------
# Scopes: which fields a rule can see
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldInfo:
    types: frozenset[str]
    #: Events of the rule that do not carry this field.
    missing_in: tuple[str, ...]


class Scope:
    """The fields a rule's events carry. ``events`` empty means ``any``."""

    def __init__(self, events: Iterable[str]) -> None:
        self.events = tuple(events)
        names = self.events or tuple(spec.name for spec in CATALOG)
        self._per_event = {name: fields_of(name) for name in names}
        self.all_fields: dict[str, list[FieldSpec]] = {}
        for specs in self._per_event.values():
            for name, spec in specs.items():
                self.all_fields.setdefault(name, []).append(spec)

    def lookup(self, name: str) -> Optional[FieldInfo]:
        specs = self.all_fields.get(name)
        if specs is None:
            return None
        missing: tuple[str, ...] = ()
        if self.events:
            missing = tuple(e for e in self.events if name not in self._per_event[e])
        return FieldInfo(frozenset(s.type for s in specs), missing)

    def describe(self) -> str:
        return ", ".join(self.events) if self.events else "any event"


ANY_SCOPE_EVENTS: tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# The checker
# ---------------------------------------------------------------------------


class Checker:
    """Walks every statement once, collecting Diagnostics."""

    def __init__(self, result: CheckResult) -> None:
        self.result = result
        self.diagnostics = result.diagnostics
        self.targets: dict[str, n.TargetDef] = {}
        self.defines: dict[str, n.Define] = {}
        self.used_targets: set[str] = set()
        self.used_defines: set[str] = set()
        self.any_scope = Scope(ANY_SCOPE_EVENTS)
        #: Directory of the rule file being checked, for relative paths.
        self.base_dir = Path(".")

    # -- reporting

    def report(
        self, span: n.Span, severity: str, code: str, message: str, hint: Optional[str] = None
    ) -> None:
        self.diagnostics.append(Diagnostic.at(span, severity, code, message, hint))

    def error(self, span: n.Span, code: str, message: str, hint: Optional[str] = None) -> None:
        self.report(span, ERROR, code, message, hint)

    def warning(self, span: n.Span, code: str, message: str, hint: Optional[str] = None) -> None:
        self.report(span, WARNING, code, message, hint)

    # -- the whole ruleset

    def run(self, files: list[n.RuleFile]) -> None:
        # A rule that did not parse may be the one using a target or define:
        # "never used" would then send the admin after the wrong problem.
        unparsed = any(d.code in ("syntax", "encoding") for d in self.diagnostics)
        self.collect_names(files)
        for rule_file in files:
            self.base_dir = Path(rule_file.path).parent
            for statement in rule_file.statements:
                if isinstance(statement, n.TargetDef):
                    self.check_target(statement)
                elif isinstance(statement, n.Define):
                    self.check_define(statement)
                else:
                    self.check_rule(statement)
        self.check_rule_names(files)
        if unparsed:
            return
        for name, target in self.targets.items():
            if name not in self.used_targets:
                self.warning(
                    target.name_span, "unused-target", f"target '{name}' is never notified"
                )
        for name, define in self.defines.items():
            if name not in self.used_defines:
                self.warning(define.name_span, "unused-define", f"define '{name}' is never used")

    def collect_names(self, files: list[n.RuleFile]) -> None:
        """Targets and defines are shared by every file, so gather them first."""
        field_names = set(self.any_scope.all_fields)
        for rule_file in files:
            for statement in rule_file.statements:
                if isinstance(statement, n.Rule):
                    continue
                table: dict = self.targets if isinstance(statement, n.TargetDef) else self.defines
                kind = "target" if isinstance(statement, n.TargetDef) else "define"
                first = self.targets.get(statement.name) or self.defines.get(statement.name)
                if first is not None:
                    self.error(
                        statement.name_span,
                        "duplicate-name",
                        f"'{statement.name}' is already defined at {first.name_span}",
                        "give each target and define its own name",
                    )
                    continue
                if kind == "define" and statement.name in field_names:
                    self.error(
                        statement.name_span,
                        "duplicate-name",
                        f"define '{statement.name}' has the name of an event field",
                        "choose another name, so conditions stay unambiguous",
                    )
                    continue
                table[statement.name] = statement

    def check_rule_names(self, files: list[n.RuleFile]) -> None:
        seen: dict[str, n.Rule] = {}
        for rule_file in files:
            for rule in rule_file.statements:
                if not isinstance(rule, n.Rule) or rule.name is None:
                    continue
                if rule.name in seen:
                    self.error(
                        rule.span,
                        "duplicate-name",
                        f"rule name '{rule.name}' is already used at {seen[rule.name].span}",
                        "rule names identify rules in the journal and in replay --expect",
                    )
                else:
                    seen[rule.name] = rule

    # -- targets

    def check_target(self, target: n.TargetDef) -> None:
        from router.urls import mask_url, recognise

        for source in target.sources:
            if source.kind == "url":
                problem = recognise(source.value)
                if problem:
                    self.error(
                        source.span,
                        "bad-url",
                        f"'{mask_url(source.value)}' is not a usable Apprise URL: {problem}",
                        "see the Apprise wiki for the URL form of each service",
                    )
            elif source.kind == "env":
                self.check_env_source(source, recognise, mask_url)
            else:
                self.check_config_source(source)

    def check_env_source(self, source: n.Source, recognise: Callable, mask_url: Callable) -> None:
        value = os.environ.get(source.value)
        if not value:
            self.warning(
                source.span,
                "unset-env",
                f"environment variable {source.value} is not set here",
                "it is read when the rule runs; set it in the router's environment",
            )
            return
        for url in filter(None, re.split(r"[\s,]+", value)):
            problem = recognise(url)
            if problem:
                # A warning: the variable is read when the rule runs, and a bad
                # value then costs only this target, never the whole ruleset.
                self.warning(
                    source.span,
                    "bad-url",
                    f"{source.value} holds '{mask_url(url)}', not a usable Apprise URL: {problem}",
                    "the other targets and rules are unaffected; fix the variable",
                )

    def check_config_source(self, source: n.Source) -> None:
        path = self.base_dir / source.value
        if not path.is_file():
            self.warning(
                source.span,
                "missing-config",
                f"Apprise config file '{source.value}' does not exist",
                "relative paths are relative to the rule file",
            )
            return
        refused = permission_problem(path)
        if refused:
            self.error(source.span, "insecure-permissions", f"refused: {refused}", REFUSAL_HINT)
            return
        if source.tag is None:
            return
        import apprise

        config = apprise.AppriseConfig()
        config.add(str(path))
        # Apprise 2 renamed AppriseConfig.servers() to services().
        entries = getattr(config, "services", None) or config.servers
        tags = {str(tag) for server in entries() for tag in server.tags}  # AppriseTag in 2.x
        if source.tag not in tags:
            self.warning(
                source.span,
                "unknown-tag",
                f"no entry of '{source.value}' has the tag '{source.tag}'"
                + did_you_mean(source.tag, tags),
            )

    # -- defines

    def check_define(self, define: n.Define) -> None:
        self.check_condition(define.condition, self.any_scope, stack=(define.name,))

    # -- rules

    def check_rule(self, rule: n.Rule) -> None:
        events: list[str] = []
        for name, span in rule.events:
            canonical = canonical_name(name)
            if canonical is None:
                self.error(
                    span,
                    "unknown-event",
                    f"unknown event '{name}'" + did_you_mean(name, EVENTS),
                    "`router events` lists every event",
                )
            elif canonical in events:
                self.warning(span, "duplicate-event", f"event '{name}' is listed twice")
            else:
                events.append(canonical)  # aliases resolve, as the handler resolves them
        if rule.events and not events:
            return  # every event unknown: field checks would only repeat the error
        scope = Scope(events)
        if rule.condition is not None:
            self.check_condition(rule.condition, scope, stack=())
        if rule.is_expect:
            self.check_window(rule.every, rule.span, "every")
        variables = self.template_variables(rule, scope)
        for action in rule.actions:
            self.check_action(action, rule, scope, variables)
        seen_kinds: dict[str, n.Throttle] = {}
        for option in rule.options:
            if option.kind in seen_kinds:
                self.error(option.span, "duplicate-option", f"'{option.kind}' is given twice")
            seen_kinds[option.kind] = option
            self.check_window(option.window, option.span, option.kind)
            for by_field in option.by:
                self.check_field(by_field, scope)
            if option.kind == "digest" and not any(a.notifies for a in rule.actions):
                self.warning(
                    option.span,
                    "digest-without-notify",
                    "digest collects notifications, and this rule sends none",
                )

    def check_window(self, window: Optional[object], span: n.Span, what: str) -> None:
        if window is not None and window.total_seconds() <= 0:  # type: ignore[attr-defined]
            self.error(span, "bad-duration", f"'{what}' needs a duration above zero")

    # -- conditions

    def check_condition(self, cond: n.Condition, scope: Scope, stack: tuple[str, ...]) -> None:
        if isinstance(cond, n.BoolOp):
            for operand in cond.operands:
                self.check_condition(operand, scope, stack)
        elif isinstance(cond, n.Not):
            self.check_condition(cond.operand, scope, stack)
        elif isinstance(cond, n.Reference):
            self.check_reference(cond, scope, stack)
        elif isinstance(cond, n.Compare):
            self.check_compare(cond.op, cond.left, cond.right, scope)
        elif isinstance(cond, n.Pattern):
            self.check_pattern(cond, scope)
        elif isinstance(cond, n.Member):
            self.check_member(cond, scope)
        elif isinstance(cond, n.Between):
            self.check_compare(">=", cond.field, cond.low, scope)
            self.check_compare("<=", cond.field, cond.high, scope, report_missing=False)
            self.check_range(cond)
        elif isinstance(cond, n.Exists):
            self.check_field(cond.field, scope, report_missing=False)

    def check_reference(self, ref: n.Reference, scope: Scope, stack: tuple[str, ...]) -> None:
        define = self.defines.get(ref.name)
        if define is not None:
            self.used_defines.add(ref.name)
            if ref.name in stack:
                self.error(
                    ref.span,
                    "recursive-define",
                    f"define '{ref.name}' refers to itself (through {' -> '.join(stack)})",
                )
                return
            cycle = self.define_cycle(ref.name, stack)
            if cycle:
                self.error(
                    ref.span,
                    "recursive-define",
                    f"define '{ref.name}' refers back to '{cycle[-1]}'"
                    f" ({' -> '.join([*stack[-1:], *cycle])})",
                )
                return
            if scope.events:
                # The define was checked on its own; here only: do this rule's
                # events carry the fields it tests?
                sub = Checker(CheckResult())
                sub.defines = self.defines
                sub.check_condition(define.condition, scope, stack + (ref.name,))
                for diag in sub.diagnostics:
                    if diag.code in ("unknown-field", "missing-field"):
                        self.report(
                            ref.span,
                            diag.severity,
                            diag.code,
                            f"define '{ref.name}': {diag.message}",
                            diag.hint,
                        )
            return
        info = scope.lookup(ref.name)
        if info is not None:
            if info.types != {"bool"}:
                kind = "/".join(sorted(info.types))
                self.error(
                    ref.span,
                    "not-a-condition",
                    f"'{ref.name}' is a {kind} field, not a condition",
                    f"compare it, for example: {ref.name} == ...",
                )
            else:
                self.report_missing(ref.name, ref.span, info, scope)
            return
        candidates = list(self.defines) + list(scope.all_fields)
        self.error(
            ref.span,
            "unknown-name",
            f"unknown name '{ref.name}'" + did_you_mean(ref.name, candidates),
            "a bare name must be a define or a true/false field",
        )

    def define_cycle(self, name: str, stack: tuple[str, ...]) -> Optional[list[str]]:
        """The chain of defines from ``name`` back into ``stack`` (``a = b``,
        ``b = a``), or None. Direct self-reference is caught by the caller."""
        if not stack:
            return None
        pending, seen = [[name]], {name}
        while pending:
            chain = pending.pop()
            define = self.defines.get(chain[-1])
            if define is None:
                continue
            for ref in _references(define.condition):
                if ref in stack:
                    return chain + [ref]
                if ref not in seen and ref in self.defines:
                    seen.add(ref)
                    pending.append(chain + [ref])
        return None

    def check_field(
        self, ref: n.Field, scope: Scope, report_missing: bool = True
    ) -> Optional[FieldInfo]:
        """The field's info, or None after reporting why it is unknown."""
        path = ref.path
        if path[0] == "previous":
            if len(path) != 2:
                self.error(
                    ref.span,
                    "unknown-field",
                    "'previous' needs one field after it, as in previous.status",
                )
                return None
            name = path[1]
        elif len(path) > 1:
            self.error(
                ref.span,
                "unknown-field",
                f"unknown field '{ref.name}'; only previous.FIELD has a dot",
            )
            return None
        else:
            name = path[0]
        info = scope.lookup(name)
        if info is None:
            where = "" if not scope.events else f" for {scope.describe()}"
            self.error(
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
            self.warning(
                span,
                "missing-field",
                f"{', '.join(info.missing_in)} has no field '{name}'",
                "a test on a field the event lacks is false: the rule never matches those events",
            )

    def operand_types(
        self, operand: n.Operand, scope: Scope, report_missing: bool
    ) -> Optional[frozenset[str]]:
        if isinstance(operand, n.Field):
            info = self.check_field(operand, scope, report_missing)
            return None if info is None else info.types
        return None

    def check_compare(
        self,
        op: str,
        left: n.Operand,
        right: n.Operand,
        scope: Scope,
        report_missing: bool = True,
    ) -> None:
        left_types = self.operand_types(left, scope, report_missing)
        right_types = self.operand_types(right, scope, report_missing)
        if isinstance(left, n.Literal) and isinstance(right, n.Literal):
            self.warning(
                left.span, "constant-comparison", "this compares two constants; it never changes"
            )
            return
        if isinstance(left, n.Field) and isinstance(right, n.Field):
            if left_types and right_types and not _comparable(left_types, right_types):
                self.error(
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

    def check_literal(
        self, op: str, field_ref: n.Field, types: frozenset[str], literal: n.Literal
    ) -> None:
        """Does ``literal`` fit the field's type under ``op``? Reports when not."""
        name = field_ref.path[-1]
        if op not in ("==", "!=") and not types & _ORDERED:
            self.error(
                literal.span,
                "type-mismatch",
                f"'{op}' does not order {_kinds(types)} values like {field_ref.name}",
                "text fields compare with ==, !=, matches, =~, contains or in",
            )
            return
        if literal.kind == "list":
            self.error(
                literal.span,
                "type-mismatch",
                f"cannot compare {field_ref.name} with a list",
                f"to test membership: {field_ref.name} in [...]",
            )
            return
        problem = _literal_problem(name, types, literal)
        if problem:
            message, hint = problem
            self.error(literal.span, "type-mismatch", message, hint)
            return
        if literal.kind == "size" and name != "bytes":
            self.warning(
                literal.span,
                "size-unit",
                f"sizes are byte counts, but {field_ref.name} is not",
                "compare sizes with bytes, as in bytes > 20MB",
            )
        allowed = ENUMERATED.get(name)
        if allowed and literal.kind == "string" and literal.value not in allowed:
            self.error(
                literal.span,
                "bad-value",
                f"{field_ref.name} is never {literal.value!r}"
                + did_you_mean(str(literal.value), allowed),
                f"{name} is one of: {', '.join(allowed)}",
            )

    def check_pattern(self, cond: n.Pattern, scope: Scope) -> None:
        info = self.check_field(cond.field, scope)
        if info is not None and not info.types & {"str", "path", "list"}:
            self.error(
                cond.field.span,
                "type-mismatch",
                f"'{cond.op}' works on text, and {cond.field.name} is {_kinds(info.types)}",
                "compare numbers, durations and dates with ==, <, >, between",
            )
        pattern = str(cond.pattern.value)
        if cond.op == "=~":
            problem = compile_regex(pattern)
            if isinstance(problem, RegexProblem):
                span = self.pattern_span(cond.pattern, problem.offset, problem.length)
                self.error(span, "bad-regex", problem.message, problem.hint)
        elif cond.op == "matches":
            problem = glob_problem(pattern)
            if problem:
                index, message = problem
                span = self.char_span(cond.pattern, index)
                self.error(span, "bad-glob", f"invalid glob: {message}")

    def char_span(self, literal: n.Literal, index: Optional[int]) -> n.Span:
        """The span of one character of a string literal's value, in the file."""
        span = literal.span
        column = span.column + 1 + self.source_offset(literal, index)
        return n.Span(span.file, span.line, column, span.line, column + 1)

    def pattern_span(self, literal: n.Literal, index: Optional[int], length: int) -> n.Span:
        """The span of ``length`` characters of a string literal's value from
        ``index``; the whole literal when the index is unknown or the literal
        spans lines (its columns no longer follow the value's)."""
        span = literal.span
        if index is None or span.end_line != span.line or self.is_long_string(literal):
            return span
        start = self.char_span(literal, index)
        end = span.column + 1 + self.source_offset(literal, index + max(length, 1))
        return n.Span(span.file, span.line, start.column, span.line, max(end, start.end_column))

    def source_offset(self, literal: n.Literal, index: Optional[int]) -> int:
        """How many source characters, after the opening quote, spell the
        first ``index`` characters of a string literal (``\\"`` spells one)."""
        index = index or 0
        span = literal.span
        if span.end_line != span.line or self.is_long_string(literal):
            return index
        raw, offset = self.source_line(span)[span.column : span.end_column - 2], 0
        for _ in range(index):
            if offset >= len(raw):
                break
            escaped = raw[offset] == "\\" and raw[offset + 1 : offset + 2] in ('"', "\\", "n", "t")
            offset += 2 if escaped else 1
        return offset

    def source_line(self, span: n.Span) -> str:
        lines = self.result.sources.get(span.file) or []
        return lines[span.line - 1] if 0 < span.line <= len(lines) else ""

    def is_long_string(self, literal: n.Literal) -> bool:
        """A triple-quoted string: its value's characters are not where its columns say."""
        span = literal.span
        return self.source_line(span)[span.column - 1 : span.column + 2] == '"""'

    def check_member(self, cond: n.Member, scope: Scope) -> None:
        info = self.check_field(cond.field, scope)
        values = cond.values.value
        assert isinstance(values, tuple)
        if not values:
            self.warning(
                cond.values.span,
                "empty-list",
                "the list is empty: 'in' is never true"
                if not cond.negated
                else "the list is empty",
            )
        if info is None:
            return
        for literal in values:
            self.check_literal("==", cond.field, info.types, literal)

    def check_range(self, cond: n.Between) -> None:
        low, high = cond.low, cond.high
        if isinstance(low, n.Literal) and isinstance(high, n.Literal) and low.kind == high.kind:
            try:
                empty = _ordered_value(low) > _ordered_value(high)
            except TypeError:
                return
            if empty:
                self.warning(
                    low.span,
                    "empty-range",
                    "the lower bound is above the upper bound: never true",
                )

    # -- actions

    def check_action(
        self, action: Action, rule: n.Rule, scope: Scope, variables: Variables
    ) -> None:
        """An action: refused in an expect rule if its kind says so, then
        whatever its kind checks (router/actions/)."""
        refusal = action.refused_in_expect if rule.is_expect else None
        if refusal is not None:
            code, message, hint = refusal
            self.error(action.span, code, message, hint)
        action.check(ActionCheck(self, rule, scope, variables))

    def use_target(self, name: str, span: n.Span) -> None:
        if name in self.targets:
            self.used_targets.add(name)
        else:
            self.error(
                span,
                "unknown-target",
                f"unknown target '{name}'" + did_you_mean(name, self.targets),
                'declare it: target NAME = "apprise://url"',
            )

    # -- templates

    def template_variables(self, rule: n.Rule, scope: Scope) -> Variables:
        digest = any(option.kind == "digest" for option in rule.options)
        if rule.is_expect:
            pinned = set(pinned_fields(rule.condition))
            return Variables(
                scope=scope,
                extra=set(EXPECT_VARIABLES) | pinned,
                fields_visible=False,
                pinned=pinned,
            )
        extra = set(RULE_VARIABLES) | (set(DIGEST_VARIABLES) if digest else set())
        return Variables(scope=scope, extra=extra, fields_visible=True)

    def check_template(self, template: n.Template, variables: Variables) -> None:
        source, location = self.template_source(template)
        if source is None:
            return
        refs = template_refs(source)
        if refs.syntax_error is not None:
            line, message = refs.syntax_error
            self.report(
                location.span_for(line, None),
                ERROR,
                "template-syntax",
                f"template: {message}",
            )
            return
        env = environment()
        for name, line in refs.variables:
            self.check_template_variable(name, location.span_for(line, name), variables)
        for base, attr, line in refs.attributes:
            if base == "previous" and variables.scope.lookup(attr) is None:
                self.error(
                    location.span_for(line, f"previous.{attr}"),
                    "unknown-variable",
                    f"unknown field 'previous.{attr}'"
                    + did_you_mean(attr, variables.scope.all_fields),
                )
        for name, line in refs.filters:
            if name not in env.filters:
                self.error(
                    location.span_for(line, name),
                    "unknown-filter",
                    f"unknown filter '{name}'" + did_you_mean(name, env.filters),
                )
        for name, line in refs.tests:
            if name not in env.tests:
                self.error(
                    location.span_for(line, name),
                    "unknown-test",
                    f"unknown test '{name}'" + did_you_mean(name, env.tests),
                )

    def check_template_variable(self, name: str, span: n.Span, variables: Variables) -> None:
        if name in variables.extra:
            return
        info = variables.scope.lookup(name)
        if info is not None and variables.fields_visible:
            if info.missing_in:
                self.warning(
                    span,
                    "missing-variable",
                    f"{', '.join(info.missing_in)} has no field '{name}'; it renders empty there",
                )
            return
        candidates = set(variables.extra)
        if variables.fields_visible:
            candidates |= set(variables.scope.all_fields)
        if info is not None:
            self.error(
                span,
                "unknown-variable",
                f"expect templates cannot see '{name}': no event is at hand when one fires",
                "use last.FIELD, or pin the field in where with ==",
            )
            return
        self.error(
            span,
            "unknown-variable",
            f"unknown variable '{name}'" + did_you_mean(name, candidates),
            f"the rule's templates see the fields of {variables.scope.describe()}",
        )

    def template_source(self, template: n.Template) -> tuple[Optional[str], TemplateLocation]:
        """The template's text and how its lines map to a file."""
        if template.path is None:
            return template.source, TemplateLocation(template, self.result.sources)
        path = self.base_dir / template.path
        display = str(path)
        refused = permission_problem(path)
        if refused:
            self.error(template.span, "insecure-permissions", f"refused: {refused}", REFUSAL_HINT)
            return None, TemplateLocation(template, self.result.sources)
        try:
            text = path.read_text(encoding="utf-8-sig")  # without a Windows BOM
        except (OSError, UnicodeDecodeError) as exc:
            reason = "not found" if isinstance(exc, FileNotFoundError) else str(exc)
            self.error(
                template.span,
                "template-file",
                f"template file '{template.path}': {reason}",
                "template files are relative to the rule file",
            )
            return None, TemplateLocation(template, self.result.sources)
        self.result.template_files[template] = text
        self.result.sources[display] = text.splitlines()
        return text, TemplateLocation(template, self.result.sources, display)


class ActionCheck:
    """What an action kind sees while it is checked (``CheckContext``)."""

    catalog = EVENTS

    def __init__(self, checker: Checker, rule: n.Rule, scope: Scope, variables: Variables):
        self.checker = checker
        self.rule = rule
        self.scope = scope
        self.variables = variables
        self.events = scope.events
        self.base_dir = checker.base_dir
        self.is_expect = rule.is_expect

    def error(self, span: n.Span, code: str, message: str, hint: Optional[str] = None) -> None:
        self.checker.error(span, code, message, hint)

    def warning(self, span: n.Span, code: str, message: str, hint: Optional[str] = None) -> None:
        self.checker.warning(span, code, message, hint)

    def refuse(self, span: n.Span, reason: str) -> None:
        self.checker.error(span, "insecure-permissions", f"refused: {reason}", REFUSAL_HINT)

    def check_template(self, template: n.Template) -> None:
        self.checker.check_template(template, self.variables)

    def check_action(self, action: Action) -> None:
        self.checker.check_action(action, self.rule, self.scope, self.variables)

    def check_window(self, window: Optional[timedelta], span: n.Span, what: str) -> None:
        self.checker.check_window(window, span, what)

    def use_target(self, name: str, span: n.Span) -> None:
        self.checker.use_target(name, span)


@dataclass
class Variables:
    """What a rule's templates may name."""

    scope: Scope
    extra: set[str]
    #: False in expect rules: no event is at hand when they fire.
    fields_visible: bool
    pinned: set[str] = field(default_factory=set)


class TemplateLocation:
    """Maps a line inside a template to a span in the file that holds it."""

    def __init__(
        self, template: n.Template, sources: dict[str, list[str]], path: Optional[str] = None
    ) -> None:
        self.template = template
        self.sources = sources
        self.path = path  # set for `file` templates: lines are that file's own

    def span_for(self, line: int, needle: Optional[str]) -> n.Span:
        span = self.template.span
        if self.path is not None:
            file, file_line, start = self.path, line, 0
        else:
            file, file_line = span.file, max(self.template.first_line, span.line) + line - 1
            start = span.column - 1 if file_line == span.line else 0
        text = self.sources.get(file, [])
        source_line = text[file_line - 1] if 0 < file_line <= len(text) else ""
        if needle:
            match = re.compile(rf"(?<![\w.]){re.escape(needle)}(?!\w)").search(source_line, start)
            if match:
                return n.Span(file, file_line, match.start() + 1, file_line, match.end() + 1)
        if self.path is None and file_line == span.line:
            return span
        indent = len(source_line) - len(source_line.lstrip())
        return n.Span(file, file_line, indent + 1, file_line, max(len(source_line), indent) + 1)


# ---------------------------------------------------------------------------
# Small pure helpers
# ---------------------------------------------------------------------------


def _kinds(types: Iterable[str]) -> str:
    return "/".join(sorted(types))


def _comparable(left: Iterable[str], right: Iterable[str]) -> bool:
    left, right = set(left), set(right)
    if left & right:
        return True
    return bool(left & _NUMERIC and right & _NUMERIC)


_LITERAL_WORDS = {
    "number": "a number",
    "string": "a string",
    "duration": "a duration",
    "size": "a size",
    "bool": "true/false",
}


def _literal_problem(
    name: str, types: frozenset[str], literal: n.Literal
) -> Optional[tuple[str, Optional[str]]]:
    """(message, hint) when ``literal`` cannot be compared with the field."""
    kind = literal.kind
    if types & {"str", "path"} and kind == "string":
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
    elif types & {"str", "path"} and kind != "string":
        hint = 'put text in double quotes, as in "Daily Backup"'
    elif "bool" in types and kind == "string":
        hint = f"write {name} == true or {name} == false, without quotes"
    elif types & _NUMERIC and kind == "string":
        hint = "numbers are written without quotes"
    return (f"{name} is {_kinds(types)}, not {_LITERAL_WORDS.get(kind, kind)}", hint)


def _ordered_value(literal: n.Literal) -> object:
    value = literal.value
    return value.bytes if isinstance(value, n.Size) else value


def glob_problem(pattern: str) -> Optional[tuple[int, str]]:
    """Where and what is wrong with a shell glob, or None. An unclosed ``[``
    is the one mistake fnmatch would silently treat as a literal."""
    index = 0
    while index < len(pattern):
        if pattern[index] == "[":
            close = pattern.find(
                "]", index + 2 if pattern[index + 1 : index + 2] in ("!", "]") else index + 1
            )
            if close < 0:
                return index, f"'[' at position {index + 1} is never closed"
            index = close
        index += 1
    return None


def _references(condition: n.Condition) -> Iterable[str]:
    """The bare names (defines or boolean fields) a condition mentions."""
    if isinstance(condition, n.Reference):
        yield condition.name
    elif isinstance(condition, n.Not):
        yield from _references(condition.operand)
    elif isinstance(condition, n.BoolOp):
        for operand in condition.operands:
            yield from _references(operand)


def pinned_fields(condition: Optional[n.Condition]) -> Iterable[str]:
    """Fields an expect rule's where clause fixes with ``==`` (its templates see them)."""
    if isinstance(condition, n.Compare) and condition.op == "==":
        for side in (condition.left, condition.right):
            if isinstance(side, n.Field) and len(side.path) == 1:
                yield side.path[0]
    elif isinstance(condition, n.BoolOp) and condition.op == "and":
        for operand in condition.operands:
            yield from pinned_fields(operand)


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def check_paths(paths: Iterable[Path]) -> CheckResult:
    """Load every rule file under ``paths`` as the router would, and check it."""
    result = CheckResult()
    paths = list(paths)
    files, problem = discover(paths)
    if problem:
        result.usage_error = problem
        return result
    for directory in (p for p in paths if p.is_dir()):
        refused = permission_problem(directory, check_directory=False)
        if refused:
            result.diagnostics.append(_refusal(str(directory), refused))
    given = {p for p in paths if not p.is_dir()}
    for path in files:
        rule_file, diagnostics = parse_file(path)
        result.files += 1
        result.rule_files.append(rule_file)
        result.sources[rule_file.path] = rule_file.text.splitlines()
        result.diagnostics.extend(diagnostics)
        # A file named on its own: its directory is checked with it (a
        # directory argument was checked once, above).
        refused = permission_problem(path, check_directory=path in given)
        if refused:
            result.diagnostics.append(_refusal(rule_file.path, refused))
    for directory in (p for p in paths if p.is_dir()):
        result.diagnostics.extend(_not_loaded(directory))
    Checker(result).run(result.rule_files)
    if result.rules == 0 and not result.errors:
        for directory in (p for p in paths if p.is_dir()):
            result.diagnostics.append(
                Diagnostic(
                    str(directory),
                    1,
                    1,
                    1,
                    1,
                    WARNING,
                    "no-rules",
                    f"no rules in {directory}: events are journaled, and nothing else happens",
                    "rules go in files named *.rules in this directory",
                )
            )
    result.diagnostics.sort(key=Diagnostic.sort_key)
    return result


#: File names that look like rule files but are not loaded (only *.rules is).
_LOOKALIKE = re.compile(r"(?i)\.(rules?|rls)(\.txt)?$")


def _not_loaded(directory: Path) -> list[Diagnostic]:
    """Warnings for files in ``directory`` an admin probably meant as rules:
    ``ops.rule``, ``ops.RULES``, Notepad's ``ops.rules.txt``."""
    found = []
    for path in sorted(directory.iterdir()):
        if path.suffix == RULE_SUFFIX or not _LOOKALIKE.search(path.name):
            continue
        stem = _LOOKALIKE.sub("", path.name)
        found.append(
            Diagnostic(
                str(path),
                1,
                1,
                1,
                1,
                WARNING,
                "not-loaded",
                f"'{path.name}' is not loaded: only files named *.rules are",
                f"rename it to {stem}{RULE_SUFFIX} to load it",
            )
        )
    return found


def check_text(text: str, path: str = "<rules>") -> CheckResult:
    """Check one rule file's text (tests, ``router test`` snippets)."""
    from router.language.parser import parse_text

    result = CheckResult(files=1)
    rule_file, diagnostics = parse_text(text, path)
    result.rule_files.append(rule_file)
    result.sources[path] = text.splitlines()
    result.diagnostics.extend(diagnostics)
    Checker(result).run(result.rule_files)
    result.diagnostics.sort(key=Diagnostic.sort_key)
    return result


def _refusal(path: str, reason: str) -> Diagnostic:
    return Diagnostic(
        path,
        1,
        1,
        1,
        1,
        ERROR,
        "insecure-permissions",
        f"refused: {reason}",
        REFUSAL_HINT,
    )
