"""Rules -> fast predicates, and events -> a Plan of what to do.

A checked ruleset is compiled once: each condition becomes one small Python
function generated from the syntax tree (no tree walking per event), and
rules are indexed by event name. Evaluating an event only *decides*: it
returns a Plan and touches nothing. Rendering, journaling, delivery and
local steps are later stages' work.

Semantics (docs/rules.md): a comparison on a field the event does not have
is false, and so is one on a value of the wrong type (an unparsed number
arriving as text); ``not`` of either is true.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Optional

from router.actions import Action
from router.events import EVENTS, Event, fields_of, parse_date
from router.language import nodes as n
from router.language.regex import RegexError, RegexProblem, compile_regex

if TYPE_CHECKING:  # the checker pulls in Lark; a cached ruleset must load without it
    from router.language.checker import CheckResult

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
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}

#: Events whose identity (for previous/streak) includes the source.
SOURCE_EVENTS = frozenset({"StartSource", "EndSource", "AnomalyAlert"})


def identity_of(event: Event) -> str:
    """The key ``previous`` and ``streak`` are kept under (docs/events.md):
    the script for script events, script and source for source events,
    the event name for the rest."""
    fields = event.fields
    if event.name in SOURCE_EVENTS and "script" in fields:
        return f"{fields.get('script')}\x1f{fields.get('source', '')}"
    if "script" in fields:
        return str(fields["script"])
    return event.name


# ---------------------------------------------------------------------------
# Condition compiler
# ---------------------------------------------------------------------------


class ConditionCompiler:
    """Turns a condition tree into the source of one Python expression over
    ``f`` (the event's fields) and ``p`` (the previous event's fields),
    with literals bound as constants."""

    def __init__(self, defines: Mapping[str, n.Define], date_order: str = "mdy") -> None:
        self.defines = defines
        self.date_order = date_order
        self.constants: dict[str, Any] = {
            "M": MISSING,
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
            left, right, op = right, left, _FLIPPED[op]
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
        access = self.access(cond.field)
        text = str(cond.pattern.value)
        if cond.op == "contains":
            needle = self.const(text.casefold())
            return (
                f"((type(_v := {access}) is str and {needle} in _v.casefold()) or "
                f"(type(_v) is list and any({needle} in str(x).casefold() for x in _v)))"
            )
        if cond.op == "matches":
            regex = re.compile(fnmatch.translate(text), re.IGNORECASE)
            return f"(type(_v := {access}) is str and {self.const(regex)}.match(_v) is not None)"
        regex = compile_regex(text)
        if isinstance(regex, RegexProblem):
            raise RegexError(f"{cond.pattern.span}: {regex.message}")
        # RE2 matches UTF-8 bytes; "surrogatepass" keeps a value that arrived
        # with undecodable bytes (lone surrogates) searchable, as re did.
        return (
            f"(type(_v := {access}) is str and "
            f"{self.const(regex)}.search(_v.encode('utf-8', 'surrogatepass')) is not None)"
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
        holder, name = self.holder(ref)
        return f"{holder}.get({name!r}, M)"

    def value(self, literal: n.Literal, ref: Optional[n.Field] = None) -> Any:
        """A literal as the runtime value it is compared with. A string
        compared with a datetime field is a date, compared by value."""
        value = literal.value
        if isinstance(value, n.Size):
            return value.bytes
        if literal.kind == "string" and ref is not None and _field_type(ref) == "datetime":
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


def _field_type(ref: n.Field) -> Optional[str]:
    """A field's type, which the catalog keeps the same in every event."""
    return _FIELD_TYPES.get(ref.path[-1])


_FIELD_TYPES: dict[str, str] = {
    name: spec.type for event in EVENTS for name, spec in fields_of(event).items()
}


def _apply(op: str, a: Any, b: Any) -> bool:
    """``a op b`` for a comparison of two constants (decided at compile time)."""
    try:
        return bool(_OPERATORS[op](a, b))
    except TypeError:
        return False


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


# ---------------------------------------------------------------------------
# Rulesets
# ---------------------------------------------------------------------------


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
        for rule in self.rules:
            if rule.rule.any_event:
                self._any.append(rule)
            for name in self.event_names(rule):
                self._by_event.setdefault(name, []).append(rule)
        for name, rules in self._by_event.items():
            self._by_event[name] = sorted(rules + self._any, key=lambda r: r.position)
        for rule in self.expects:
            if rule.rule.any_event:
                self._expects_any.append(rule)
            for name in self.event_names(rule):
                self._expects_by_event.setdefault(name, []).append(rule)
        for name, rules in self._expects_by_event.items():
            self._expects_by_event[name] = sorted(
                rules + self._expects_any, key=lambda r: r.position
            )

    @staticmethod
    def event_names(rule: CompiledRule) -> Iterable[str]:
        from router.events import canonical_name

        for name, _ in rule.rule.events:
            canonical = canonical_name(name)
            if canonical:
                yield canonical

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


class RulesetError(Exception):
    """A ruleset with errors: never compiled, never run."""

    def __init__(self, result: CheckResult) -> None:
        self.result = result
        first = result.errors[0]
        more = len(result.errors) - 1
        suffix = f" (and {more} more)" if more else ""
        super().__init__(f"{first.path}:{first.line}:{first.column}: {first.message}{suffix}")


def build_ruleset(result: CheckResult, date_order: str = "mdy") -> Ruleset:
    """Compile a checked ruleset. Raises RulesetError if it has errors."""
    if result.errors:
        raise RulesetError(result)
    return compile_ruleset(result.rule_files, result.template_files, result.sources, date_order)


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


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


@dataclass
class History:
    """What the store remembers of the previous event of the same identity."""

    previous: dict[str, Any] = field(default_factory=dict)
    #: Streak of the previous event (0 when there was none).
    previous_streak: int = 0

    def streak_for(self, status: str) -> int:
        """This event's streak: one more than the previous if the status held."""
        if self.previous and self.previous.get("status") == status:
            return self.previous_streak + 1
        return 1


@dataclass
class ThrottleState:
    """A throttled rule's memory for one key: when it last acted, how much it held back."""

    last_acted: Optional[datetime] = None
    suppressed: int = 0


@dataclass
class RuleDecision:
    """What happened with one candidate rule, for the journal and ``router test``."""

    label: str
    matched: bool
    #: Why it did not act: the first condition that failed, or "throttled".
    reason: Optional[str] = None
    #: Matches held back by throttle since the rule last acted.
    suppressed: int = 0
    throttle_key: Optional[str] = None


@dataclass
class PlannedAction:
    rule: CompiledRule
    action: Action
    #: Extra template variables for this rule (``rule``, ``suppressed``).
    variables: dict[str, Any]


@dataclass
class PlannedDigest:
    """A ``digest`` rule acted: its notifications wait for the window of ``key``."""

    rule: CompiledRule
    #: The values of the digest's ``by`` fields ("" without ``by``).
    key: str
    actions: list[Action]
    variables: dict[str, Any]


@dataclass
class ExpectHit:
    """The event matched an ``expect`` rule: the window of ``key`` starts again."""

    rule: CompiledRule
    #: The event's values of the fields the rule pins with ``==``.
    key: str


@dataclass
class Plan:
    """The decision for one event. Nothing here has happened yet."""

    event: Event
    decisions: list[RuleDecision]
    actions: list[PlannedAction]
    #: True when a matching rule's ``stop`` ended evaluation.
    stopped_by: Optional[str] = None
    #: Notifications collected by digest rules instead of sent now.
    digests: list[PlannedDigest] = field(default_factory=list)
    #: Expect rules this event matched (every event is seen by them, ``stop`` or not).
    expect_matches: list[ExpectHit] = field(default_factory=list)
    #: Rules whose condition could not be decided (they did not act).
    errors: list[str] = field(default_factory=list)
    #: The fields the rules saw: the event's, with its ``streak``.
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def streak(self) -> int:
        return int(self.fields.get("streak", 1))

    @property
    def matched(self) -> list[str]:
        return [d.label for d in self.decisions if d.matched and d.reason is None]


ThrottleLookup = Callable[[str, str], ThrottleState]


def throttle_key(rule: CompiledRule, option: n.Throttle, fields: Mapping[str, Any]) -> str:
    values = [str(fields.get(f.path[-1], "")) for f in option.by]
    return "\x1f".join(values)


def evaluate(
    ruleset: Ruleset,
    event: Event,
    history: Optional[History] = None,
    throttles: Optional[ThrottleLookup] = None,
    explain: bool = False,
) -> Plan:
    """Decide what ``event`` makes happen. Pure: reads, never writes.

    ``history`` gives ``previous`` and ``streak``; ``throttles`` looks up a
    throttled rule's state. ``explain`` records, for each rule that did not
    match, the first of its conditions that failed.
    """
    history = history or History()
    fields = dict(event.fields)
    fields["streak"] = history.streak_for(str(fields.get("status")))
    previous = history.previous
    decisions: list[RuleDecision] = []
    actions: list[PlannedAction] = []
    digests: list[PlannedDigest] = []
    stopped_by: Optional[str] = None
    errors: list[str] = []
    for compiled in ruleset.candidates(event.name):
        matched = _test(compiled, fields, previous, errors)
        if not matched:
            reason = first_failure(ruleset, compiled, fields, previous) if explain else None
            if matched is None:
                reason = "error (see the errors)"
            decisions.append(RuleDecision(compiled.label, False, reason))
            continue
        decision = RuleDecision(compiled.label, True)
        decisions.append(decision)
        option = compiled.throttle
        if option is not None:
            key = throttle_key(compiled, option, fields)
            decision.throttle_key = key
            state = throttles(compiled.label, key) if throttles else ThrottleState()
            now = fields["received"]
            if state.last_acted is not None and now - state.last_acted < option.window:
                decision.reason = "throttled"
                decision.suppressed = state.suppressed + 1
                continue
            decision.suppressed = state.suppressed
        variables = {"rule": compiled.label, "suppressed": decision.suppressed}
        digest = compiled.digest
        collected: list[Action] = []
        for action in compiled.rule.actions:
            if digest is not None and action.notifies:
                collected.append(action)  # sent later, in one notification per window
                continue
            actions.append(PlannedAction(compiled, action, variables))
            if action.ends_evaluation:
                stopped_by = compiled.label
        if digest is not None and collected:
            key = throttle_key(compiled, digest, fields)
            digests.append(PlannedDigest(compiled, key, collected, variables))
        if stopped_by:
            break
    expect_matches = [
        ExpectHit(compiled, expect_key(compiled, fields))
        for compiled in ruleset.expect_candidates(event.name)
        if _test(compiled, fields, previous, errors)
    ]
    return Plan(event, decisions, actions, stopped_by, digests, expect_matches, errors, fields)


def _test(
    compiled: CompiledRule, fields: Mapping[str, Any], previous: Mapping, errors: list[str]
) -> Optional[bool]:
    """Whether the rule's condition holds; None (and an error noted) when it
    could not be decided, so one rule's surprise costs no other its action."""
    try:
        return bool(compiled.test(fields, previous))
    except Exception as exc:  # noqa: BLE001
        errors.append(f"rule {compiled.label}: condition failed: {type(exc).__name__}: {exc}")
        return None


def first_failure(
    ruleset: Ruleset, compiled: CompiledRule, fields: Mapping[str, Any], previous: Mapping
) -> str:
    for condition, predicate in compiled.parts:
        try:
            held = predicate(fields, previous)
        except Exception:  # noqa: BLE001 - evaluate() reports it
            held = False
        if not held:
            return ruleset.source_text(condition.span) or "condition"
    return "condition"
