"""Schedules: ``expect ... at "CRON" [tz "ZONE"] grace D`` (docs/rules.md).

Real time zones, real cron arithmetic (cronsim), the real store and timers;
the clock is the ``now`` the timers are given.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from router.checker import check_text
from router.dispatch import process
from router.events import event_from_argv, local_host
from router.loader import build_ruleset
from router.store import Store
from router.timers import tick

PARIS = ZoneInfo("Europe/Paris")
WEEKNIGHTS = """\
target ops = "json://127.0.0.1:9/"
rule "weeknights"
expect EndScript where script == "Nightly" at "0 2 * * 1-5" tz "Europe/Paris" grace 3h
  notify ops title "Nightly did not finish by {{ deadline | datetime('%a %H:%M') }}"
"""


def paris(*args: int) -> float:
    return datetime(*args, tzinfo=PARIS).timestamp()


def ticks(rules, store, start: float, end: float, step: float = 600) -> list[str]:  # noqa: ANN001
    """Tick every ``step`` seconds; the titles of what fired, in order."""
    titles = []
    now = start
    while now <= end:
        report = tick(rules, store, now=now)
        for fired in report.fired:
            for row in store.outbox.rows(limit=1000):
                if row.id in fired.outbox_ids:
                    titles.append(row.title)
        now += step
    return titles


def test_a_weeknight_schedule_fires_for_each_missed_night_only() -> None:
    rules = build_ruleset(check_text(WEEKNIGHTS, "weeknights.rules"))
    with Store.in_memory() as store:
        tick(rules, store, now=paris(2026, 11, 30, 12, 0))  # Monday noon: watched from now
        # Tuesday 02:00's run finishes at 03:10; Wednesday's never does.
        done = datetime(2026, 12, 1, 3, 10, tzinfo=PARIS).astimezone().replace(tzinfo=None)
        end = ["EndScript", "Nightly", "0", "0", "successful"]
        process(event_from_argv(end, host=local_host(), received=done), rules, store)
        fired = ticks(rules, store, paris(2026, 11, 30, 12, 10), paris(2026, 12, 6, 12, 0))
    # Tue: finished within grace. Wed, Thu, Fri: missed. Sat, Sun: not scheduled.
    assert fired == [
        "Nightly did not finish by Wed 05:00",
        "Nightly did not finish by Thu 05:00",
        "Nightly did not finish by Fri 05:00",
    ]


DAILY_0230 = """\
target ops = "json://127.0.0.1:9/"
rule "half past two" expect EndScript where script == "Nightly" at "30 2 * * *" tz "Europe/Paris"
  notify ops title "missed {{ scheduled | datetime('%m-%d %H:%M') }}"
"""


def test_daylight_saving_days_are_neither_missed_twice_nor_fired_twice() -> None:
    """02:30 does not exist on the spring change day (it runs at 03:00, as
    Debian's cron does) and happens twice on the autumn one (it runs once)."""
    rules = build_ruleset(check_text(DAILY_0230, "dst.rules"))
    for start, end, expected in (
        ((2026, 3, 28, 12, 0), (2026, 3, 30, 12, 0), ["03-29 03:00", "03-30 02:30"]),
        ((2026, 10, 24, 12, 0), (2026, 10, 26, 12, 0), ["10-25 02:30", "10-26 02:30"]),
    ):
        with Store.in_memory() as store:
            tick(rules, store, now=paris(*start))
            fired = ticks(rules, store, paris(*start) + 300, paris(*end), step=300)
        assert fired == [f"missed {when}" for when in expected]


def test_check_rejects_a_bad_cron_expression_or_zone_where_it_is_written() -> None:
    text = (
        'target ops = "json://127.0.0.1:9/"\n'
        'expect EndScript at "0 25 * * *" notify ops\n'
        'expect EndScript at "0 2 * * 1-5" tz "Europe/Pariss" notify ops\n'
    )
    found = [(d.line, d.column, d.code, d.message) for d in check_text(text, "bad.rules").errors]
    assert found == [
        (2, 21, "bad-cron", "not a cron expression: Bad hour"),
        (3, 38, "bad-zone", "unknown time zone 'Europe/Pariss' (did you mean 'Europe/Paris'?)"),
    ]


REPLAY_RULES = """\
target ops = "json://127.0.0.1:9/"
rule "weeknights"
expect EndScript where script == "Nightly" at "0 2 * * 1-5" tz "Europe/Paris" grace 3h
  notify ops title "Nightly did not finish by {{ deadline | datetime('%a %H:%M') }}"
rule "hung" expect EndScript within 6h after StartScript notify ops
rule "morning" on EndScript where hour >= 6 log "late"
"""
# Times in UTC (the router's local time here): Paris is an hour ahead.
WEEK = """\
@2026-11-30T11:00
@2026-12-01T00:00 StartScript Nightly "12/1/2026 0:00" /tmp/if
@2026-12-01T02:10 EndScript Nightly 0 0 successful
@2026-12-02T00:00 StartScript Nightly "12/2/2026 0:00" /tmp/if
@2026-12-02T11:00
"""


def test_replay_runs_a_simulated_clock_and_test_takes_a_time(tmp_path) -> None:  # noqa: ANN001
    """`router replay` honours the @ times for timers, so a CI test of rules
    can prove "Wednesday's Nightly was missed and hung" without waiting a
    day; `router test --at` evaluates time conditions at that moment."""
    import json

    from helpers import Site

    site = Site(tmp_path)
    site.env["TZ"] = "UTC"
    site.write_rules(REPLAY_RULES)
    (site.cwd / "week.replay").write_text(WEEK, encoding="utf-8")
    done = site.router("replay", "--format", "json", "week.replay")
    assert done.code == 0, done.err
    lines = json.loads(done.out)
    assert [(line["event"], line["fired"]) for line in lines] == [
        ("clock", []),
        ("StartScript", []),
        ("EndScript", []),
        ("StartScript", []),
        ("clock", ["weeknights", "hung"]),
    ]
    early = site.router("test", "--at", "2026-12-01 05:30", "EndScript", "Nightly", "0", "0", "ok")
    late = site.router("test", "--at", "2026-12-01 07:30", "EndScript", "Nightly", "0", "0", "ok")
    assert "morning: matched" not in early.out and "morning: matched" in late.out
    bad = site.router("test", "--at", "someday", "EndScript", "Nightly")
    assert bad.code == 2 and "is not a time" in bad.err
    # It shows the schedule an event meets, and when it next wants one:
    # Friday 04:00 Paris meets Friday's 02:00, so Monday's is next.
    friday = ("test", "--at", "2026-12-04 03:00", "EndScript", "Nightly", "0", "0", "ok")
    assert "weeknights: expects this event: its window (" in site.router(*friday).out
    assert (
        'next expected 2026-12-07 02:00 (at "0 2 * * 1-5" tz Europe/Paris),'
        " missed if none by 2026-12-07 05:00" in site.router(*friday).out
    )
    report = json.loads(site.router(friday[0], "--format", "json", *friday[1:]).out)
    (weeknights,) = report["expectations"]
    assert (weeknights["at"], weeknights["tz"]) == ("0 2 * * 1-5", "Europe/Paris")
    assert weeknights["next"] == {
        "expected": "2026-12-07 02:00:00+01:00",
        "deadline": "2026-12-07 05:00:00+01:00",
    }
