"""Screening: a handler loads only the rules of its event that can match it.

The one property that matters: evaluating an event with the screened part
of the ruleset decides exactly what the whole ruleset decides (the same
rules match, the same steps, the same journal record).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from router.engine import Ruleset, decision_records, evaluate
from router.engine.screen import Screen, ScreenIndex, screens_of
from router.events import Event
from router.language.parser import parse_text
from router.loader import load_ruleset

RULES = """\
target ops = "json://localhost:1/"
define nightly = script == "Nightly"
rule "eq" on EndScript where script == "Nightly" log "eq"
rule "literal left" on EndScript where "Nightly" == script log "x"
rule "status first" on EndScript where status == "failure" and script == "Nightly" log "x"
rule "glob" on EndScript where script matches "Night*" log "x"
rule "glob ?" on EndScript where script matches "N?ght*" log "x"
rule "glob class" on EndScript where script matches "[Nn]ight*" log "x"
rule "glob plain" on EndScript where script matches "nightly" log "x"
rule "glob non-ascii" on EndScript where script matches "Über*" log "x"
rule "glob kelvin" on EndScript where script matches "kel*" log "x"
rule "or" on EndScript where script == "A" or script == "B" log "x"
rule "not" on EndScript where not script == "A" log "x"
rule "previous" on EndScript where previous.script == "Nightly" log "x"
rule "define" on EndScript where nightly log "x"
rule "date" on EndScript where received == "2026-11-28" log "x"
rule "many" on EndScript, EndSource where script == "Daily" and errors > 0 log "x"
rule "stopper" on EndScript where script == "Stop" stop
rule "after stop" on EndScript where script matches "St*" log "x"
rule "every event" on any where script == "Nightly" log "x"
rule "plain" on EndScript log "x"
rule "digested" on EndScript where script == "Nightly" notify ops digest 1h
"""

SCRIPTS: list[Any] = [
    "Nightly",
    "NIGHTLY",
    "nightly-2",
    "Night",
    "Nxght",
    "Daily",
    "A",
    "B",
    "Über-1",
    "über-1",
    "ÜBER-1",
    "\u212aelvin",  # KELVIN SIGN: matches "kel*" ignoring case, unlike its lower()
    "Stop",
    "Stopped",
    "",
    5,
    None,
]


def events() -> list[Event]:
    found = []
    for script in SCRIPTS:
        for status in ("failure", "success"):
            fields: dict[str, Any] = {"status": status, "errors": 2}
            if script is not None:
                fields["script"] = script
            found.append(Event("EndScript", known=True, fields=fields, args=[]))
    found.append(Event("EndSource", known=True, fields={"script": "Daily", "errors": 1}, args=[]))
    return found


def outcome(ruleset: Ruleset, event: Event) -> tuple[Any, ...]:
    plan = evaluate(ruleset, event)
    return (
        plan.matched,
        [(a.rule.label, type(a.action).__name__) for a in plan.actions],
        plan.stopped_by,
        decision_records(plan),
    )


@pytest.fixture
def loaded(tmp_path: Path, state_dir: Path) -> tuple[Path, Path]:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir(mode=0o700)
    (rules_dir / "screen.rules").write_text(RULES, encoding="utf-8")
    full = load_ruleset(rules_dir, state_dir)
    assert not full.errors, full.errors
    return rules_dir, state_dir


@pytest.mark.parametrize("event", events(), ids=lambda e: f"{e.name}-{e.fields.get('script')!r}")
def test_a_screened_ruleset_decides_what_the_whole_one_decides(
    loaded: tuple[Path, Path], event: Event
) -> None:
    rules_dir, state_dir = loaded
    whole = load_ruleset(rules_dir, state_dir)
    part = load_ruleset(rules_dir, state_dir, event=event)
    assert whole.from_cache and part.from_cache
    assert outcome(part.ruleset, event) == outcome(whole.ruleset, event)


def test_screening_leaves_out_the_rules_that_cannot_match(loaded: tuple[Path, Path]) -> None:
    rules_dir, state_dir = loaded
    daily = Event("EndScript", known=True, fields={"script": "Daily"}, args=[])
    part = load_ruleset(rules_dir, state_dir, event=daily).ruleset
    labels = part.labels
    assert "eq" not in labels and "glob" not in labels and "status first" not in labels
    # Not screenable: kept, and evaluated.
    for kept in ("or", "not", "previous", "define", "date", "glob class", "glob plain"):
        assert kept in labels
    assert part.screened_out() > 0
    plan = evaluate(part, daily)
    unmatched = len(plan.decisions) - len(plan.matched) + part.screened_out()
    assert len(plan.matched) == 2 and decision_records(plan)[-1] == {"unmatched": unmatched}


def test_each_rule_is_filed_under_its_most_telling_field() -> None:
    rule_file, problems = parse_text(
        'rule "a" on EndScript where status == "failure" and script == "One" log "x"\n'
        'rule "b" on EndScript where status == "failure" and script == "Two" log "x"\n'
        'rule "c" on EndScript where status == "success" and script matches "Th*" log "x"\n'
    )
    assert not problems
    rules = rule_file.statements
    assert screens_of(rules[0]) == [
        Screen("status", "equal", "failure"),
        Screen("script", "equal", "One"),
    ]
    index = ScreenIndex((i, screens_of(rule)) for i, rule in enumerate(rules))
    assert set(index.equal) == {"script"}  # three values beat two
    assert index.select({"script": "Two", "status": "success"}) == [1]
    assert index.select({"script": "THREE"}) == [2]
    assert index.select({"status": "failure"}) == []
