"""The checker's parts: one visitor over the nodes (an unknown node is an
error, never a silent skip), and the built-in messages held to the same
template checks as an admin's templates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from router.catalog import CATALOG
from router.checker import CheckResult, check_text
from router.checker.conditions import ConditionChecker
from router.checker.report import Checking
from router.checker.rules import RulesetChecker
from router.checker.scope import (
    ANY_EVENT,
    DIGEST_VARIABLES,
    EXPECT_VARIABLES,
    RULE_VARIABLES,
    Scope,
    Variables,
)
from router.checker.templates import TemplateChecker
from router.language import nodes as n
from router.templates import MESSAGE_EXTRAS, MESSAGES_DIR

SPAN = n.Span("x.rules", 3, 4, 3, 9)


@dataclass(frozen=True)
class Unheard:
    """A condition node the checker was never taught."""

    span: n.Span


def test_a_condition_node_without_a_check_is_an_error() -> None:
    checking = Checking(CheckResult())
    ConditionChecker(checking).check(Unheard(SPAN), ANY_EVENT)
    [diagnostic] = checking.diagnostics
    assert diagnostic.is_error and diagnostic.code == "unchecked"
    assert "Unheard" in diagnostic.message and (diagnostic.line, diagnostic.column) == (3, 4)


def test_a_statement_without_a_check_is_an_error() -> None:
    result = CheckResult()
    rule_file = n.RuleFile("x.rules", "", [Unheard(SPAN)])  # type: ignore[list-item]
    RulesetChecker(Checking(result)).run([rule_file])
    assert [d.code for d in result.errors] == ["unchecked"]


def test_every_action_kind_goes_through_its_own_check() -> None:
    """The visitor finds visit methods by base class too: no kind is skipped."""
    result = check_text(
        'target ops = "json://localhost:9/"\n'
        "on StartScript\n"
        '  notify nobody\n  run "/no/such/program"\n  abort "x"\n  log "{{ nosuch }}"\n  stop\n'
    )
    codes = {d.code for d in result.diagnostics}
    assert {"unknown-target", "program-not-found", "unknown-variable"} <= codes


#: What each built-in message is rendered with besides the event's fields
#: (router/templates.py _message_extras; router/timers.py for the timers').
EVENT_MESSAGE_EXTRAS = {*RULE_VARIABLES, *MESSAGE_EXTRAS}
TIMER_MESSAGE_VARIABLES = {
    "_expect": {*EXPECT_VARIABLES, "expected", "condition", "every", "grace"},
    "_digest": {*RULE_VARIABLES, *DIGEST_VARIABLES, "summaries", "host"},
}


def message_variables(name: str) -> Variables:
    if name in TIMER_MESSAGE_VARIABLES:
        return Variables(ANY_EVENT, TIMER_MESSAGE_VARIABLES[name], fields_visible=False)
    events = (name,) if name in {spec.name for spec in CATALOG} else ()
    return Variables(Scope(events), set(EVENT_MESSAGE_EXTRAS), fields_visible=True)


@pytest.mark.parametrize("path", sorted(Path(MESSAGES_DIR).glob("*.j2")), ids=lambda p: p.name)
def test_the_built_in_messages_pass_the_template_checks(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    result = CheckResult(sources={str(path): text.splitlines()})
    template = n.Template(text, n.Span(str(path), 1, 1, 1, 1), first_line=1)
    TemplateChecker(Checking(result)).check(template, message_variables(path.stem))
    problems = [f"{d.line}: {d.code}: {d.message}" for d in result.diagnostics]
    assert problems == []


def test_every_event_has_its_message() -> None:
    names = {path.stem for path in Path(MESSAGES_DIR).glob("*.j2")}
    assert {spec.name for spec in CATALOG} <= names


def test_a_template_may_define_a_macro_and_call_it() -> None:
    result = check_text(
        'on EndScript\n  log "{% macro who() %}{{ script }}{% endmacro %}{{ who() }} ended"\n'
    )
    assert [d.code for d in result.diagnostics] == []
