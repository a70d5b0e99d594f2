"""Identity across engines (docs/rules.md): one router serving several
engines keeps ``previous``, ``streak``, throttles, expectations and runs per
``host``; two engines running a script of the same name never share them."""

from __future__ import annotations

from datetime import datetime, timedelta

from router.checker import check_text
from router.dispatch import process
from router.events import event_from_argv
from router.loader import build_ruleset
from router.store import Store

RULES = """\
target ops = "json://127.0.0.1:9/"
rule "third" on EndScript where status == "failure" and streak >= 3 notify ops
rule "once an hour" on EndScript where status == "failure" notify ops throttle 1h
rule "once an hour per script" on EndScript where status == "failure"
  notify ops throttle 1h by script
"""
FAILED = ["EndScript", "Nightly", "1", "-530", "backup client not found"]
T0 = datetime(2026, 11, 28, 2, 0)


def test_two_engines_never_share_a_streak_or_a_throttle() -> None:
    rules = build_ruleset(check_text(RULES, "identity.rules"))
    with Store.in_memory() as store:
        acted: list[tuple[str, list[str]]] = []
        for minute, host in enumerate(["engine-a", "engine-b", "engine-a", "engine-a", "engine-b"]):
            event = event_from_argv(FAILED, host=host, received=T0 + timedelta(minutes=minute))
            outcome = process(event, rules, store)
            acted.append((host, outcome.plan.matched))
    assert acted == [
        ("engine-a", ["once an hour", "once an hour per script"]),
        # engine-b: its own streak (1) and its own throttle window; `by script`
        # says the window is the script's, whichever engine ran it.
        ("engine-b", ["once an hour"]),
        ("engine-a", []),
        ("engine-a", ["third"]),  # engine-a's third failure in a row, not the fifth
        ("engine-b", []),
    ]
