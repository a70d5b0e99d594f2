"""A checked ruleset compiled: rules with their predicates, indexed by event."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Optional

from router.catalog import canonical_name
from router.engine.compiler import MISSING, ConditionCompiler, Predicate
from router.language import nodes as n


@dataclass
class CompiledRule:
    """A rule ready to run: its tree, its predicate, and its parts' predicates
    (the top-level ``and`` operands) for explaining a non-match."""

    rule: n.Rule
    position: int
    test: Predicate
    parts: tuple[tuple[n.Condition, Predicate], ...]
    uses_history: bool
    #: expect: the fields the where clause pins with ``==`` (the window's key).
    pinned: tuple[str, ...] = ()
    #: expect: the pinned fields' values when every one is pinned to a literal
    #: (the key is then known before any match); None otherwise.
    pinned_values: Optional[dict[str, Any]] = None

    @property
    def label(self) -> str:
        return self.rule.label

    @property
    def throttle(self) -> Optional[n.Throttle]:
        return next((o for o in self.rule.options if o.kind == "throttle"), None)

    @property
    def digest(self) -> Optional[n.Throttle]:
        return next((o for o in self.rule.options if o.kind == "digest"), None)


@dataclass
class Ruleset:
    """Every rule of a rules directory, compiled and indexed by event."""

    rules: list[CompiledRule]
    expects: list[CompiledRule]
    targets: dict[str, n.TargetDef]
    template_files: dict[n.Template, str]
    #: Source text of each rule file, for explanations (``router test``).
    sources: dict[str, list[str]] = field(default_factory=dict)
    _by_event: dict[str, list[CompiledRule]] = field(default_factory=dict)
    _any: list[CompiledRule] = field(default_factory=list)
    _expects_by_event: dict[str, list[CompiledRule]] = field(default_factory=dict)
    _expects_any: list[CompiledRule] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_event, self._any = _index(self.rules)
        self._expects_by_event, self._expects_any = _index(self.expects)

    @property
    def size(self) -> int:
        """How many rules, expectations included (as ``router check`` counts them)."""
        return len(self.rules) + len(self.expects)

    def candidates(self, event_name: str) -> list[CompiledRule]:
        """Rules that can match ``event_name``, in file-name then file order."""
        return self._by_event.get(event_name, self._any)

    def expect_candidates(self, event_name: str) -> list[CompiledRule]:
        """Expect rules whose window an ``event_name`` event can re-arm."""
        return self._expects_by_event.get(event_name, self._expects_any)

    def source_text(self, span: n.Span) -> str:
        """The rule-file text a span covers (for explanations)."""
        lines = self.sources.get(span.file)
        if not lines:
            return ""
        if span.line == span.end_line:
            return lines[span.line - 1][span.column - 1 : span.end_column - 1]
        first = lines[span.line - 1][span.column - 1 :]
        middle = lines[span.line : span.end_line - 1]
        last = lines[span.end_line - 1][: span.end_column - 1]
        return " ".join(part.strip() for part in [first, *middle, last])


def _index(rules: list[CompiledRule]) -> tuple[dict[str, list[CompiledRule]], list[CompiledRule]]:
    """Rules by the event names they name (with the ``any`` rules merged in,
    in file order), and the ``any`` rules alone (for every other event)."""
    by_event: dict[str, list[CompiledRule]] = {}
    any_event = [rule for rule in rules if rule.rule.any_event]
    for rule in rules:
        for name, _ in rule.rule.events:
            canonical = canonical_name(name)
            if canonical:
                by_event.setdefault(canonical, []).append(rule)
    for name, named in by_event.items():
        by_event[name] = sorted(named + any_event, key=lambda r: r.position)
    return by_event, any_event


def compile_ruleset(
    rule_files: Iterable[n.RuleFile],
    template_files: Mapping[n.Template, str],
    sources: Mapping[str, list[str]],
    date_order: str = "mdy",
) -> Ruleset:
    """Compile rule files that have been checked clean (or came from the cache)."""
    targets: dict[str, n.TargetDef] = {}
    defines: dict[str, n.Define] = {}
    rules: list[n.Rule] = []
    for rule_file in rule_files:
        for statement in rule_file.statements:
            if isinstance(statement, n.TargetDef):
                targets[statement.name] = statement
            elif isinstance(statement, n.Define):
                defines[statement.name] = statement
            else:
                rules.append(statement)
    compiled = [compile_rule(rule, index, defines, date_order) for index, rule in enumerate(rules)]
    return Ruleset(
        rules=[r for r in compiled if not r.rule.is_expect],
        expects=[r for r in compiled if r.rule.is_expect],
        targets=targets,
        template_files=dict(template_files),
        sources=dict(sources),
    )


def compile_rule(
    rule: n.Rule, position: int, defines: Mapping[str, n.Define], date_order: str = "mdy"
) -> CompiledRule:
    compiler = ConditionCompiler(defines, date_order)
    test = compiler.compile(rule.condition, rule.label)
    operands: tuple[n.Condition, ...] = ()
    if isinstance(rule.condition, n.BoolOp) and rule.condition.op == "and":
        operands = rule.condition.operands
    elif rule.condition is not None:
        operands = (rule.condition,)
    parts = tuple((c, compiler.compile(c, rule.label)) for c in operands)
    uses_history = compiler.uses_history or _templates_use_history(rule)
    compiled = CompiledRule(rule, position, test, parts, uses_history)
    if rule.is_expect:
        compiled.pinned, compiled.pinned_values = _pins(rule.condition, compiler)
    return compiled


def _pins(
    condition: Optional[n.Condition], compiler: ConditionCompiler
) -> tuple[tuple[str, ...], Optional[dict[str, Any]]]:
    """An expect rule's pinned fields (as the checker's ``pinned_fields``
    finds them: ``FIELD == ...`` in the top-level ``and``), and their values
    when each is pinned to a literal."""
    compares: list[n.Compare] = []

    def walk(cond: Optional[n.Condition]) -> None:
        if isinstance(cond, n.Compare) and cond.op == "==":
            compares.append(cond)
        elif isinstance(cond, n.BoolOp) and cond.op == "and":
            for operand in cond.operands:
                walk(operand)

    walk(condition)
    names: dict[str, None] = {}
    values: dict[str, Any] = {}
    for compare in compares:
        for side, other in ((compare.left, compare.right), (compare.right, compare.left)):
            if isinstance(side, n.Field) and len(side.path) == 1:
                names[side.path[0]] = None
                if isinstance(other, n.Literal) and other.kind != "list":
                    values.setdefault(side.path[0], compiler.value(other, side))
    pinned = tuple(names)
    return pinned, (values if all(name in values for name in pinned) else None)


def key_text(value: Any) -> str:
    """One pinned value as text for an expect window's key: the same text for
    the literal in the rule and the value an event carries."""
    if value is MISSING or value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def expect_key(rule: CompiledRule, fields: Mapping[str, Any]) -> str:
    """The key of the window an event re-arms: its values of the pinned fields."""
    return "\x1f".join(key_text(fields.get(name, MISSING)) for name in rule.pinned)


def static_expect_key(rule: CompiledRule) -> Optional[str]:
    """The key of an expect rule's only window, when it is known without a
    match (no pins, or every pin a literal); None when matches decide it."""
    if rule.pinned_values is None:
        return None
    return "\x1f".join(key_text(rule.pinned_values[name]) for name in rule.pinned)


def _templates_use_history(rule: n.Rule) -> bool:
    """A template naming ``previous`` or ``streak`` needs history loaded too."""
    pattern = re.compile(r"\b(previous|streak)\b")
    for action in rule.actions:
        for template in action.templates():
            if pattern.search(template.source):
                return True
    return False
