"""A checked ruleset compiled: rules with their predicates, indexed by event."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Optional

from router.bulk import collector_paused
from router.catalog import canonical_name
from router.engine.compiler import MISSING, ConditionCompiler, Predicate
from router.engine.screen import LeftOut
from router.events import local_host
from router.language import nodes as n


@dataclass
class CompiledRule:
    """A rule ready to run: its tree and its predicate. Its parts' predicates
    (the top-level ``and`` operands, for explaining a non-match) compile when
    first asked for: only ``router test`` explains."""

    rule: n.Rule
    position: int
    test: Predicate
    uses_history: bool
    #: expect: the fields the where clause pins with ``==`` (the window's key).
    pinned: tuple[str, ...] = ()
    #: expect: the pinned fields' values when every one is pinned to a literal
    #: (the key is then known before any match); None otherwise.
    pinned_values: Optional[dict[str, Any]] = None
    #: How the parts compile: the defines and date order the test used.
    compiler: Optional[ConditionCompiler] = field(default=None, repr=False, compare=False)
    _parts: Optional[tuple[tuple[n.Condition, Predicate], ...]] = field(
        default=None, repr=False, compare=False
    )

    @property
    def label(self) -> str:
        return self.rule.label

    @property
    def parts(self) -> tuple[tuple[n.Condition, Predicate], ...]:
        if self._parts is None:
            condition = self.rule.condition
            operands: tuple[n.Condition, ...] = ()
            if isinstance(condition, n.BoolOp) and condition.op == "and":
                operands = condition.operands
            elif condition is not None:
                operands = (condition,)
            compiler = self.compiler
            if compiler is None:
                return ()
            self._parts = tuple((c, compiler.compile(c, self.label)) for c in operands)
        return self._parts

    @property
    def throttle(self) -> Optional[n.Throttle]:
        return next((o for o in self.rule.options if o.kind == "throttle"), None)

    @property
    def digest(self) -> Optional[n.Throttle]:
        return next((o for o in self.rule.options if o.kind == "digest"), None)


class Ruleset:
    """Every rule of a rules directory, indexed by event name, each rule
    compiled the first time an event it can match is evaluated.

    A handler run evaluates one event: it compiles that event's rules (and
    the ``any`` rules), not all of them; compiling costs about 0.2 ms a
    rule, 2 s for 10,000. A long-running process calls ``compile_all`` once,
    off the path of its events.
    """

    def __init__(
        self,
        rules: Iterable[n.Rule] = (),
        targets: Optional[Mapping[str, n.TargetDef]] = None,
        template_files: Optional[Mapping[n.Template, str]] = None,
        sources: Optional[Mapping[str, list[str]]] = None,
        defines: Optional[Mapping[str, n.Define]] = None,
        date_order: str = "mdy",
        size: Optional[int] = None,
        left_out: Optional[LeftOut] = None,
    ) -> None:
        self.targets = dict(targets or {})
        self.template_files = dict(template_files or {})
        #: Source text of each rule file, for explanations (``router test``).
        self.sources = dict(sources or {})
        self._defines = dict(defines or {})
        self._date_order = date_order
        #: Every rule in file-name then file order; a rule's index is its position.
        self._all = list(rules)
        #: A part of a ruleset (one event's rules, from the cache) knows the
        #: size of the whole.
        self._size = len(self._all) if size is None else size
        #: A handler's part of a ruleset leaves out the rules of its event
        #: that screening showed cannot match it (see engine/screen.py); the
        #: journal counts them with the rules that did not match.
        self._left_out = left_out
        self._compiled: dict[int, CompiledRule] = {}
        plain = [i for i, rule in enumerate(self._all) if not rule.is_expect]
        expects = [i for i, rule in enumerate(self._all) if rule.is_expect]
        self._by_event, self._any = _index(self._all, plain)
        self._expects_by_event, self._expects_any = _index(self._all, expects)
        self._plain, self._expects = plain, expects
        self._candidates: dict[str, list[CompiledRule]] = {}
        self._expect_candidates: dict[str, list[CompiledRule]] = {}
        self._run_digests: Optional[list[str]] = None

    @property
    def date_order(self) -> str:
        """How Retrospect's dates read here (conditions comparing dates use it)."""
        return self._date_order

    @property
    def size(self) -> int:
        """How many rules, expectations included (as ``router check`` counts them)."""
        return self._size

    def screened_out(self, stopped_at: Optional[CompiledRule] = None) -> int:
        """How many of the event's rules screening left out of this part (of
        those before ``stopped_at``, when a ``stop`` ended evaluation)."""
        if self._left_out is None:
            return 0
        return self._left_out.before(None if stopped_at is None else stopped_at.position)

    @property
    def compiled(self) -> int:
        """How many rules are compiled so far (for the benchmarks and tests)."""
        return len(self._compiled)

    @property
    def labels(self) -> list[str]:
        """Every rule's label, expectations included (nothing compiled)."""
        return [rule.label for rule in self._all]

    @property
    def rules(self) -> list[CompiledRule]:
        """Every rule but the expectations, compiled."""
        return [self._compile(i) for i in self._plain]

    @property
    def expects(self) -> list[CompiledRule]:
        """The ``expect`` rules, compiled."""
        return [self._compile(i) for i in self._expects]

    def compile_all(self, previous: Optional[Ruleset] = None) -> Ruleset:
        """Compile every rule now (the service, before the ruleset goes live).
        A rule that is the very node a ``previous`` ruleset compiled (a file
        that did not change) keeps its compiled form, when the defines and
        the date order it was compiled with are the same."""
        reuse: dict[int, CompiledRule] = {}
        if (
            previous is not None
            and previous._date_order == self._date_order
            and previous._defines == self._defines
        ):
            reuse = {id(c.rule): c for c in previous._compiled.values()}
        with collector_paused():
            for index, rule in enumerate(self._all):
                if index in self._compiled:
                    continue
                found = reuse.get(id(rule))
                if found is not None and found.rule is rule:
                    self._compiled[index] = replace(found, position=index)
                else:
                    self._compile(index)
        return self

    def run_digest_labels(self) -> list[str]:
        """The labels of the ``digest run`` rules (the timers look at their
        windows every tick; nothing compiled, worked out once)."""
        if self._run_digests is None:
            self._run_digests = [
                rule.label
                for rule in self._all
                if any(o.kind == "digest" and o.per_run for o in rule.options)
            ]
        return self._run_digests

    def rule_named(self, label: str) -> Optional[CompiledRule]:
        """The rule labelled ``label`` (a digest's, when its window closes)."""
        for index, rule in enumerate(self._all):
            if rule.label == label and not rule.is_expect:
                return self._compile(index)
        return None

    def candidates(self, event_name: str) -> list[CompiledRule]:
        """Rules that can match ``event_name``, in file-name then file order."""
        return self._compiled_for(event_name, self._candidates, self._by_event, self._any)

    def expect_candidates(self, event_name: str) -> list[CompiledRule]:
        """Expect rules whose window an ``event_name`` event can re-arm."""
        return self._compiled_for(
            event_name, self._expect_candidates, self._expects_by_event, self._expects_any
        )

    def _compiled_for(
        self,
        event_name: str,
        memo: dict[str, list[CompiledRule]],
        by_event: dict[str, list[int]],
        any_event: list[int],
    ) -> list[CompiledRule]:
        """An index's rules for ``event_name``, compiled (once)."""
        found = memo.get(event_name)
        if found is None:
            with collector_paused():
                found = [self._compile(i) for i in by_event.get(event_name, any_event)]
            memo[event_name] = found
        return found

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

    def _compile(self, index: int) -> CompiledRule:
        # Two threads may compile the same rule at once: the same result,
        # one of them kept. No lock on the way of every event.
        compiled = self._compiled.get(index)
        if compiled is None:
            rule = self._all[index]
            try:
                compiled = compile_rule(rule, index, self._defines, self._date_order)
            except Exception as exc:  # noqa: BLE001 - one rule must not cost the others
                compiled = _broken(rule, index, exc)
            self._compiled[index] = compiled
        return compiled


def _broken(rule: n.Rule, position: int, exc: Exception) -> CompiledRule:
    """A rule that did not compile (a cached regex this RE2 refuses): its
    test raises, so evaluating it is an error the journal shows, and every
    other rule still runs."""
    message = f"{type(exc).__name__}: {exc}"

    def test(fields: Mapping[str, Any], previous: Mapping[str, Any]) -> bool:
        raise ValueError(f"the rule did not compile: {message}")

    return CompiledRule(rule, position, test, uses_history=False)


def _index(rules: list[n.Rule], positions: list[int]) -> tuple[dict[str, list[int]], list[int]]:
    """Positions by the event names their rules name (with the ``any`` rules
    merged in, in file order), and the ``any`` rules alone (for every other
    event)."""
    by_event: dict[str, list[int]] = {}
    any_event = [i for i in positions if rules[i].any_event]
    for i in positions:
        for name, _ in rules[i].events:
            canonical = canonical_name(name)
            if canonical:
                by_event.setdefault(canonical, []).append(i)
    for name, named in by_event.items():
        by_event[name] = sorted(set(named) | set(any_event))
    return by_event, any_event


def compile_ruleset(
    rule_files: Iterable[n.RuleFile],
    template_files: Mapping[n.Template, str],
    sources: Mapping[str, list[str]],
    date_order: str = "mdy",
) -> Ruleset:
    """The ruleset of rule files that have been checked clean (or came from
    the cache); its rules compile when first needed."""
    targets, defines, rules = statements(rule_files)
    return Ruleset(rules, targets, template_files, sources, defines, date_order)


def statements(
    rule_files: Iterable[n.RuleFile],
) -> tuple[dict[str, n.TargetDef], dict[str, n.Define], list[n.Rule]]:
    """The targets and defines by name, and the rules in order (a rule's
    position in the ruleset is its index here)."""
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
    return targets, defines, rules


def compile_rule(
    rule: n.Rule, position: int, defines: Mapping[str, n.Define], date_order: str = "mdy"
) -> CompiledRule:
    compiler = ConditionCompiler(defines, date_order)
    test = compiler.compile(rule.condition, rule.label)
    uses_history = compiler.uses_history or _templates_use_history(rule)
    compiled = CompiledRule(rule, position, test, uses_history, compiler=compiler)
    if rule.is_expect:
        compiled.pinned, compiled.pinned_values = _pins(rule.condition, compiler)
    return compiled


def _pins(
    condition: Optional[n.Condition], compiler: ConditionCompiler
) -> tuple[tuple[str, ...], Optional[dict[str, Any]]]:
    """An expect rule's pinned fields (as the checker's ``pinned_fields``
    finds them: ``FIELD == ...`` in the top-level ``and``), and their values
    when each is pinned to a literal.

    ``host`` is always pinned (docs/rules.md, "Identity across engines"):
    each engine has its own windows. Unless the rule names a host, the
    window watched from start-up is this machine's; other engines' windows
    start with their first match."""
    compares: list[n.Compare] = []

    def walk(cond: Optional[n.Condition]) -> None:
        if isinstance(cond, n.Compare) and cond.op == "==":
            compares.append(cond)
        elif isinstance(cond, n.BoolOp) and cond.op == "and":
            for operand in cond.operands:
                walk(operand)

    walk(condition)
    names: dict[str, None] = {"host": None}
    values: dict[str, Any] = {}
    for compare in compares:
        for side, other in ((compare.left, compare.right), (compare.right, compare.left)):
            if isinstance(side, n.Field) and len(side.path) == 1:
                names[side.path[0]] = None
                if isinstance(other, n.Literal) and other.kind != "list":
                    values.setdefault(side.path[0], compiler.value(other, side))
    values.setdefault("host", local_host())
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
