"""An event -> a Plan of what to do. Pure: evaluating only *decides*.

Rendering, journaling, delivery and local steps are later stages' work;
``router test`` shows the same Plan the handler acts on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Optional

from router.actions import Action
from router.engine.ruleset import CompiledRule, Ruleset, expect_key
from router.events import Event
from router.language import nodes as n

#: Events whose identity (for previous/streak) includes the source.
SOURCE_EVENTS = frozenset({"StartSource", "EndSource", "AnomalyAlert"})


def identity_of(event: Event) -> str:
    """The key ``previous`` and ``streak`` are kept under (docs/events.md):
    the engine (``host``), then the script for script events, script and
    source for source events, the event name for the rest. Two engines
    running a script of the same name never share a streak."""
    fields = event.fields
    host = str(fields.get("host", ""))
    if event.name in SOURCE_EVENTS and "script" in fields:
        return f"{host}\x1f{fields.get('script')}\x1f{fields.get('source', '')}"
    if "script" in fields:
        return f"{host}\x1f{fields['script']}"
    return f"{host}\x1f{event.name}"


@dataclass
class History:
    """What the store remembers of the previous event of the same identity."""

    previous: dict[str, Any] = field(default_factory=dict)
    #: Streak of the previous event (0 when there was none).
    previous_streak: int = 0
    #: The run the event belongs to, as rules see it (``run.status``...):
    #: ``Run.view()`` with this event in it; None when it belongs to none.
    run: Optional[dict[str, Any]] = None

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

    def record(self) -> dict[str, Any]:
        """The decision as the journal keeps it (a matched rule's)."""
        record: dict[str, Any] = {
            "label": self.label,
            "matched": self.matched,
            "reason": self.reason,
        }
        if self.suppressed:
            record["suppressed"] = self.suppressed
        return record


def decision_records(plan: Plan) -> list[dict[str, Any]]:
    """What the journal keeps of an event's decisions: the rules that matched
    (acted or held back), and how many others did not, as one
    ``{"unmatched": N}`` at the end. Storing every candidate rule made a
    journal row grow with the ruleset (36 KB an event at 1,000 rules);
    ``router test`` evaluates again when a non-match needs explaining."""
    records = [d.record() for d in plan.decisions if d.matched]
    unmatched = len(plan.decisions) - len(records) + plan.screened_out
    if unmatched:
        records.append({"unmatched": unmatched})
    return records


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
    #: Rules of the event left out before evaluation as unable to match it
    #: (a handler's screened ruleset), up to a ``stop``.
    screened_out: int = 0

    @property
    def streak(self) -> int:
        return int(self.fields.get("streak", 1))

    @property
    def matched(self) -> list[str]:
        return [d.label for d in self.decisions if d.matched and d.reason is None]


ThrottleLookup = Callable[[str, str], ThrottleState]


def throttle_key(rule: CompiledRule, option: n.Throttle, fields: Mapping[str, Any]) -> str:
    """A throttle's or digest's key: its ``by`` fields' values; without
    ``by``, the engine's (each ``host`` has its own window)."""
    if not option.by:
        return str(fields.get("host", ""))
    return "\x1f".join(_key_part(f, fields) for f in option.by)


def _key_part(by: n.Field, fields: Mapping[str, Any]) -> str:
    """One ``by`` field's value in a key; ``by run``: the run's id."""
    if by.path == ("run",):
        return str((fields.get("run") or {}).get("id", ""))
    return str(fields.get(by.path[-1], ""))


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
    if history.run is not None:
        fields["run"] = history.run
    previous = history.previous
    decisions: list[RuleDecision] = []
    actions: list[PlannedAction] = []
    digests: list[PlannedDigest] = []
    stopped_by: Optional[str] = None
    stopped_at: Optional[CompiledRule] = None
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
                stopped_by, stopped_at = compiled.label, compiled
        if digest is not None and collected:
            key = throttle_key(compiled, digest, fields)
            digests.append(PlannedDigest(compiled, key, collected, variables))
        if stopped_by:
            break
    expect_matches = [
        ExpectHit(compiled, expect_key(compiled, fields))
        for compiled in ruleset.expect_candidates(event.name)
        if compiled.rule.within is None and _test(compiled, fields, previous, errors)
    ]
    screened_out = ruleset.screened_out(stopped_at)
    return Plan(
        event, decisions, actions, stopped_by, digests, expect_matches, errors, fields, screened_out
    )


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
