"""Rules -> fast predicates, and events -> a Plan of what to do.

A checked ruleset is compiled once (``compiler``: each condition one small
Python function; ``ruleset``: the rules indexed by event name). Evaluating
an event (``evaluate``) only decides: it returns a Plan and touches nothing.
"""

from __future__ import annotations

from router.engine.compiler import MISSING, ConditionCompiler, Predicate
from router.engine.evaluate import (
    SOURCE_EVENTS,
    ExpectHit,
    History,
    Plan,
    PlannedAction,
    PlannedDigest,
    RuleDecision,
    ThrottleLookup,
    ThrottleState,
    decision_records,
    evaluate,
    first_failure,
    identity_of,
    throttle_key,
)
from router.engine.ruleset import (
    CompiledRule,
    Ruleset,
    compile_rule,
    compile_ruleset,
    expect_key,
    key_text,
    static_expect_key,
)

__all__ = [
    "MISSING",
    "SOURCE_EVENTS",
    "CompiledRule",
    "ConditionCompiler",
    "ExpectHit",
    "History",
    "Plan",
    "PlannedAction",
    "PlannedDigest",
    "Predicate",
    "RuleDecision",
    "Ruleset",
    "ThrottleLookup",
    "ThrottleState",
    "compile_rule",
    "compile_ruleset",
    "decision_records",
    "evaluate",
    "expect_key",
    "first_failure",
    "identity_of",
    "key_text",
    "static_expect_key",
    "throttle_key",
]
