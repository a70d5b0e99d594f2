"""Timers (issue 4, section 5): ``expect`` windows and ``digest`` flushes.

Everything goes the way the router goes: rule text -> ``check_text`` ->
``router.loader.build_ruleset``; events built by ``event_from_argv`` through
``dispatch.process`` into a real ``Store`` in a temporary state directory;
then ``timers.tick`` at explicit moments (``now=``), never sleeping. A
restart is a closed Store and a new one on the same directory: nothing a
timer needs may live in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import doc_blocks

from router.actions.log import append_log
from router.checker import check_text
from router.dispatch import Outcome, process
from router.engine import Ruleset, evaluate
from router.events import event_from_argv, local_host
from router.loader import build_ruleset, empty_ruleset
from router.store import JournalQuery, OutboxRow, Store
from router.timers import ORPHAN_DIGEST_AFTER, TickReport, tick

#: A Monday, 10:00 local time.
T0 = datetime(2024, 3, 4, 10, 0)
#: The engine the events come from: this machine, as for a router beside its engine.
HOST = local_host()
TARGET = 'target ops = "json://127.0.0.1:9/hook"\n'

DAILY_OK = ["EndScript", "Daily Backup", "0", "0", "successful"]
DAILY_FAILED = ["EndScript", "Daily Backup", "0", "-530", "backup client not found"]
WEEKLY_FAILED = ["EndScript", "Weekly", "0", "-102", "trouble communicating"]
MAIL_FAILED = ["EndScript", "Mail", "0", "-1101", "file/directory not found"]


def at(hours: float = 0, minutes: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes)


def ts(hours: float = 0, minutes: float = 0) -> float:
    return at(hours, minutes).timestamp()


def ruleset(text: str, path: str = "timers.rules") -> Ruleset:
    result = check_text(text, path)
    errors = [f"{d.line}:{d.column}: {d.message}" for d in result.diagnostics if d.is_error]
    assert not errors, errors
    return build_ruleset(result)


def send(store: Store, rules: Ruleset, argv: list[str], when: datetime) -> Outcome:
    return process(event_from_argv(argv, host=HOST, received=when), rules, store)


def rows(store: Store) -> list[OutboxRow]:
    """Every outbox row, oldest first."""
    return list(reversed(store.outbox.rows(limit=1000)))


def titles(report: TickReport, store: Store) -> list[str]:
    wanted = set(report.outbox_ids)
    return [row.title for row in rows(store) if row.id in wanted]


@pytest.fixture()
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, state: Path) -> Iterator[Store]:
    """The timers on each backend: SQLite, and a real PostgreSQL server's database."""
    if request.param == "postgresql":
        from router.store import postgres

        with Store(postgres.database(request.getfixturevalue("postgres_url"))) as opened:
            yield opened
        return
    with Store.open(state) as opened:
        yield opened


# ---------------------------------------------------------------------------
# expect
# ---------------------------------------------------------------------------

DAILY_EXPECT = (
    TARGET
    + 'rule "daily"\n'
    + 'expect EndScript where script == "Daily Backup" every 24h grace 2h\n'
    + '  notify ops title "Daily Backup has not finished for {{ overdue | duration }}"\n'
)


def test_expect_fires_once_per_missed_window(store: Store) -> None:
    rules = ruleset(DAILY_EXPECT)
    send(store, rules, DAILY_OK, at(0))

    assert tick(rules, store, now=ts(25)).fired == []  # within every + grace
    assert tick(rules, store, now=ts(25, 59)).fired == []

    late = tick(rules, store, now=ts(26))
    assert titles(late, store) == ["Daily Backup has not finished for 1 day 2 hours"]
    [fired] = late.fired
    assert (fired.kind, fired.rule, fired.key) == ("expect", "daily", f"{HOST}\x1fDaily Backup")
    assert late.errors == []

    # The same missed window: nothing more, however often the timer ticks.
    for hours in (26, 27, 40, 49.99):
        assert tick(rules, store, now=ts(hours)).fired == []
    assert len(rows(store)) == 1

    # Still missing one `every` later: it fires again.
    again = tick(rules, store, now=ts(50))
    assert titles(again, store) == ["Daily Backup has not finished for 2 days 2 hours"]
    assert tick(rules, store, now=ts(51)).fired == []
    assert tick(rules, store, now=ts(74, 30)).fired != []
    assert len(rows(store)) == 3


def test_a_fire_is_journaled_with_its_outbox_rows(store: Store) -> None:
    rules = ruleset(DAILY_EXPECT)
    send(store, rules, DAILY_OK, at(0))
    [fired] = tick(rules, store, now=ts(26, 30)).fired

    [entry] = store.journal.entries(where=JournalQuery(event="expect"))
    assert entry.id == fired.event_id
    assert (entry.origin, entry.status) == ("timer", "warning")
    assert entry.identity == f"daily\x1f{HOST}\x1fDaily Backup"
    assert entry.fields["overdue"] == timedelta(hours=26, minutes=30)
    assert entry.fields["since"] == at(0)
    assert entry.fields["window_end"] == at(26)
    assert [d["label"] for d in entry.decisions if d.get("matched")] == ["daily"]
    [row] = rows(store)
    assert (row.event_id, row.rule, row.target, row.type) == (entry.id, "daily", "ops", "warning")
    assert row.url == "json://127.0.0.1:9/hook"


def test_a_match_rearms_the_window(store: Store) -> None:
    rules = ruleset(DAILY_EXPECT)
    send(store, rules, DAILY_OK, at(0))
    assert len(tick(rules, store, now=ts(26)).fired) == 1

    # A failed run is still a finished run: the rule pins only the script.
    send(store, rules, DAILY_FAILED, at(27))
    assert tick(rules, store, now=ts(28)).fired == []
    assert tick(rules, store, now=ts(27 + 25)).fired == []  # counted from the new match
    rearmed = tick(rules, store, now=ts(27 + 26))
    assert titles(rearmed, store) == ["Daily Backup has not finished for 1 day 2 hours"]

    [state] = store.state.expect_states()
    assert state.last_match == ts(27)
    assert state.last_fields is not None and state.last_fields["error_code"] == -530


def test_other_events_do_not_rearm_it(store: Store) -> None:
    rules = ruleset(DAILY_EXPECT)
    send(store, rules, DAILY_OK, at(0))
    send(store, rules, WEEKLY_FAILED, at(20))  # another script
    send(store, rules, ["StartScript", "Daily Backup", "3/5/2024 10:00"], at(21))  # other event
    assert len(tick(rules, store, now=ts(26)).fired) == 1


PINNED = (
    TARGET
    + 'rule "daily"\n'
    + 'expect EndScript where script == "Daily Backup" every 24h grace 2h\n'
    + '  notify ops title "{{ script }} is late; it last said: {{ last.error_message }}"\n'
    + 'rule "weekly"\n'
    + 'expect EndScript where script == "Weekly" and errors == 0 every 1w grace 1d\n'
    + '  notify ops title "{{ script }} is late{% if not last %} (never seen){% endif %}"\n'
)


def test_pinned_fields_key_the_window_and_reach_the_templates(store: Store) -> None:
    rules = ruleset(PINNED)
    assert [r.pinned for r in rules.expects] == [("host", "script"), ("host", "script", "errors")]

    plan = evaluate(rules, event_from_argv(DAILY_FAILED, received=at(0)))
    assert [(hit.rule.label, hit.key) for hit in plan.expect_matches] == [
        ("daily", f"{HOST}\x1fDaily Backup")
    ]

    tick(rules, store, now=ts(0))  # both windows armed
    send(store, rules, DAILY_FAILED, at(1))
    send(store, rules, WEEKLY_FAILED, at(2))  # errors == 0 holds: Weekly's window re-arms

    fired = tick(rules, store, now=ts(27))
    assert titles(fired, store) == ["Daily Backup is late; it last said: backup client not found"]
    keys = {(s.rule, s.key) for s in store.state.expect_states()}
    assert keys == {("daily", f"{HOST}\x1fDaily Backup"), ("weekly", f"{HOST}\x1fWeekly\x1f0")}

    weekly = tick(rules, store, now=ts(2 + 24 * 8))
    assert titles(weekly, store) == [
        "Daily Backup is late; it last said: backup client not found",
        "Weekly is late",
    ]


def test_a_pinned_expect_that_never_matched_fires_from_start_up(store: Store) -> None:
    rules = ruleset(PINNED)
    tick(rules, store, now=ts(0))
    fired = tick(rules, store, now=ts(26))
    # The pinned value comes from the rule itself; `last` is empty.
    assert titles(fired, store) == ["Daily Backup is late; it last said:"]
    week = tick(rules, store, now=ts(24 * 8))
    assert [f.rule for f in week.fired] == ["daily", "weekly"]  # daily: still missing too
    assert titles(tick(rules, store, now=ts(24 * 8 + 1)), store) == []
    assert rows(store)[-1].title == "Weekly is late (never seen)"


def test_a_field_pinned_to_another_field_gets_a_window_per_key(store: Store) -> None:
    # No literal: the key is unknown until a match, then one window per value.
    rules = ruleset(
        TARGET
        + "expect EndSource where client == source every 1h\n"
        + '  notify ops title "{{ client }} not seen for {{ overdue | duration }}"\n'
    )
    report = tick(rules, store, now=ts(0))
    assert report.armed == [] and store.state.expect_states() == []
    end_source = ["EndSource", "Daily Backup", "SQL01", "D:\\", "SQL01", "100"]
    send(store, rules, end_source, at(0))
    send(store, rules, [*end_source[:2], "FS01", "E:\\", "FS01", "5"], at(0, 30))
    send(store, rules, [*end_source[:2], "FS02", "E:\\", "OTHER", "5"], at(0, 40))  # no match
    assert titles(tick(rules, store, now=ts(1)), store) == ["SQL01 not seen for 1 hour"]
    assert titles(tick(rules, store, now=ts(1, 30)), store) == ["FS01 not seen for 1 hour"]


def test_expect_survives_a_restart_and_fires_exactly_once(state: Path) -> None:
    rules = ruleset(DAILY_EXPECT)
    with Store.open(state) as first:
        send(first, rules, DAILY_OK, at(0))
        assert tick(rules, first, now=ts(10)).fired == []

    # A new process (the service restarted, or the next handler): the window
    # comes from the journal's match, not from memory.
    with Store.open(state) as second:
        assert titles(tick(rules, second, now=ts(26, 5)), second) == [
            "Daily Backup has not finished for 1 day 2 hours"
        ]
    for minutes in (6, 30, 59):
        with Store.open(state) as again:
            assert tick(rules, again, now=ts(26, minutes)).fired == []
    with Store.open(state) as last:
        assert len(rows(last)) == 1
        assert len(tick(rules, last, now=ts(50)).fired) == 1  # the next window still fires


def test_two_processes_ticking_at_once_fire_once(state: Path) -> None:
    rules = ruleset(DAILY_EXPECT)
    with Store.open(state) as service, Store.open(state) as handler:
        send(handler, rules, DAILY_OK, at(0))
        # Both read the state before either fires (the race the claim settles).
        seen_by_service = service.state.expect_states()
        first = tick(rules, handler, now=ts(26))
        assert len(first.fired) == 1
        from router.timers import due_deadline, fire_expect

        [rule] = rules.expects
        [stale] = seen_by_service
        deadline = due_deadline(rule, stale, ts(26))
        assert deadline is not None
        assert fire_expect(rules, service, rule, stale, deadline, ts(26)) is None
        assert tick(rules, service, now=ts(26)).fired == []
        assert len(rows(service)) == 1
        assert len(service.journal.entries(where=JournalQuery(event="expect"))) == 1


NEVER = (
    TARGET
    + "expect StartApp every 1h\n"
    + '  notify ops title "No StartApp for {{ overdue | duration }}'
    + '{% if last %}, last at {{ last.received }}{% else %}, none yet{% endif %}"\n'
)


def test_a_never_matched_expect_is_armed_at_the_first_tick_and_survives_a_restart(
    state: Path,
) -> None:
    rules = ruleset(NEVER)
    label = rules.expects[0].label
    with Store.open(state) as first:
        report = tick(rules, first, now=ts(0))
        assert report.armed == [(label, HOST)] and report.fired == []
        assert tick(rules, first, now=ts(0, 30)).armed == []  # armed once

    # Restarted 40 minutes later: the window still counts from the first start.
    with Store.open(state) as second:
        assert tick(rules, second, now=ts(0, 40)).fired == []
        [state_row] = second.state.expect_states()
        assert state_row.armed_at == ts(0) and state_row.last_match is None
        fired = tick(rules, second, now=ts(1, 1))
        assert titles(fired, second) == ["No StartApp for 1 hour 1 minute, none yet"]


def test_expect_without_title_or_body_has_a_built_in_message(store: Store) -> None:
    rules = ruleset(
        TARGET + 'rule "daily"\nexpect EndScript where script == "Daily Backup"'
        " every 24h grace 2h\n  notify ops\n"
    )
    send(store, rules, DAILY_OK, at(0))
    tick(rules, store, now=ts(26))
    [row] = rows(store)
    assert row.title == "No EndScript for 1 day 2 hours (rule 'daily')"
    assert 'where script == "Daily Backup" every 1 day (grace 2 hours)' in row.body
    assert "The last one arrived 1 day 2 hours ago, at 2024-03-04 10:00." in row.body
    assert "[template error" not in row.body


def test_expect_log_action_writes_its_line_when_it_fires(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "late.log"
    rules = ruleset(
        TARGET
        + 'rule "daily"\nexpect EndScript where script == "Daily Backup" every 1h\n'
        + f'  log "{{{{ script }}}} late by {{{{ overdue | duration }}}}" to "{log}"\n'
    )
    send(store, rules, DAILY_OK, at(0))
    tick(rules, store, now=ts(1, 15))
    assert log.read_text(encoding="utf-8") == "Daily Backup late by 1 hour 15 minutes\n"
    [entry] = store.journal.entries(where=JournalQuery(event="expect"))
    assert [(s["kind"], s["outcome"]) for s in entry.steps] == [("log", "ok")]


def test_the_rules_md_expect_example() -> None:
    block = doc_blocks("rules.md", "rules")[0].text
    # docs/rules.md's whole "At a glance" block, as an admin would install it.
    rules = build_ruleset(check_text(block, "glance.rules"))
    [expect] = rules.expects
    assert expect.pinned == ("host", "script")
    with Store.in_memory() as store:
        tick(rules, store, now=ts(0))
        send(store, rules, DAILY_OK, at(1))
        assert tick(rules, store, now=ts(26, 59)).fired == []
        fired = tick(rules, store, now=ts(27, 30))
        [row] = [r for r in rows(store) if r.id in fired.outbox_ids]
        # Two units, as the duration filter shows them: 26.5 hours overdue.
        assert row.title == "Daily Backup has not finished for 1 day 2 hours"
        assert (row.target, row.url) == ("ops", "mailto://backup-admin@example.com")


# ---------------------------------------------------------------------------
# digest
# ---------------------------------------------------------------------------

DIGEST = (
    TARGET
    + 'rule "failures"\n'
    + 'on EndScript where status == "failure"\n'
    + '  notify ops title "{{ count }} failed scripts, the last {{ script }}"\n'
    + '    body """\n'
    + "      {% for e in events %}{{ e.script }}: {{ e.error_message }}\n"
    + '      {% endfor %}"""\n'
    + "  digest 1h\n"
)


def test_digest_collects_events_into_one_notification_after_its_window(store: Store) -> None:
    rules = ruleset(DIGEST)
    for minutes, argv in ((0, DAILY_FAILED), (10, WEEKLY_FAILED), (20, MAIL_FAILED)):
        outcome = send(store, rules, argv, at(0, minutes))
        assert outcome.plan.matched == ["failures"]
        assert outcome.notifications == [] and outcome.outbox == []  # collected, not sent
    send(store, rules, DAILY_OK, at(0, 30))  # not a failure: not collected
    assert store.state.digest_count("failures") == 3

    assert tick(rules, store, now=ts(0, 59)).fired == []
    report = tick(rules, store, now=ts(1))
    [fired] = report.fired
    assert (fired.kind, fired.count) == ("digest", 3)
    [row] = rows(store)
    assert row.title == "3 failed scripts, the last Mail"
    assert row.body == (
        "Daily Backup: backup client not found\n"
        "Weekly: trouble communicating\n"
        "Mail: file/directory not found\n"
    )
    assert row.type == "failure"
    assert store.state.digest_count() == 0
    assert tick(rules, store, now=ts(5)).fired == []  # flushed once

    [entry] = store.journal.entries(where=JournalQuery(event="digest"))
    assert (entry.origin, entry.identity, entry.id) == (
        "timer",
        f"failures\x1f{HOST}",
        row.event_id,
    )
    assert entry.fields["count"] == 3
    assert len(entry.fields["event_ids"]) == 3


def test_digest_count_and_events_in_the_template_variables(store: Store) -> None:
    rules = ruleset(
        TARGET
        + 'rule "r"\non EndScript\n'
        + "  notify ops title \"{{ count }}: {{ events | map(attribute='status') | join(',') }}"
        + ' / {{ events[0].received | datetime }}"\n'
        + "  digest 30m\n"
    )
    send(store, rules, DAILY_OK, at(0))
    send(store, rules, DAILY_FAILED, at(0, 5))
    tick(rules, store, now=ts(0, 30))
    assert [r.title for r in rows(store)] == ["2: success,failure / 2024-03-04 10:00"]


def test_digest_windows_per_by_key(store: Store) -> None:
    rules = ruleset(DIGEST.replace("digest 1h", "digest 1h by script"))
    send(store, rules, DAILY_FAILED, at(0))
    send(store, rules, WEEKLY_FAILED, at(0, 5))
    send(store, rules, DAILY_FAILED, at(0, 10))

    daily = tick(rules, store, now=ts(1))
    assert [(f.key, f.count) for f in daily.fired] == [("Daily Backup", 2)]
    assert titles(daily, store) == ["2 failed scripts, the last Daily Backup"]
    weekly = tick(rules, store, now=ts(1, 5))
    assert [(f.key, f.count) for f in weekly.fired] == [("Weekly", 1)]
    assert titles(weekly, store) == ["1 failed scripts, the last Weekly"]
    [digest, *_] = store.journal.entries(where=JournalQuery(event="digest"))
    assert digest.identity == "failures\x1fWeekly"


def test_an_event_after_a_window_closes_starts_the_next_one(store: Store) -> None:
    rules = ruleset(DIGEST)
    send(store, rules, DAILY_FAILED, at(0))
    send(store, rules, WEEKLY_FAILED, at(1, 30))  # the first window ended at 1:00, unflushed
    first = tick(rules, store, now=ts(2))
    assert [f.count for f in first.fired] == [1]
    assert titles(first, store) == ["1 failed scripts, the last Daily Backup"]
    assert tick(rules, store, now=ts(2, 29)).fired == []
    second = tick(rules, store, now=ts(2, 30))
    assert titles(second, store) == ["1 failed scripts, the last Weekly"]


def test_digest_survives_a_restart_mid_window(state: Path) -> None:
    rules = ruleset(DIGEST)
    with Store.open(state) as first:
        send(first, rules, DAILY_FAILED, at(0))
        send(first, rules, WEEKLY_FAILED, at(0, 10))
        assert tick(rules, first, now=ts(0, 15)).fired == []
    with Store.open(state) as second:
        send(second, rules, MAIL_FAILED, at(0, 20))
    with Store.open(state) as third:
        assert [f.count for f in tick(rules, third, now=ts(1)).fired] == [3]
        assert [r.title for r in rows(third)] == ["3 failed scripts, the last Mail"]
    with Store.open(state) as fourth:
        assert tick(rules, fourth, now=ts(1, 1)).fired == []
        assert len(rows(fourth)) == 1


def test_a_digest_rules_other_actions_still_happen_per_event(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "failures.log"
    rules = ruleset(
        DIGEST.replace("  digest 1h\n", f'  log "{{{{ script }}}}" to "{log}"\n  digest 1h\n')
    )
    for minutes, argv in ((0, DAILY_FAILED), (10, WEEKLY_FAILED)):
        outcome = send(store, rules, argv, at(0, minutes))
        assert [step.kind for step in outcome.steps] == ["log"]
        for step in outcome.steps:
            append_log(step, tmp_path / "events.log")
    assert log.read_text(encoding="utf-8") == "Daily Backup\nWeekly\n"
    assert rows(store) == []
    assert [f.count for f in tick(rules, store, now=ts(1)).fired] == [2]


def test_throttle_and_stop_are_unchanged_by_digest(store: Store) -> None:
    rules = ruleset(
        TARGET
        + 'rule "digest"\non EndScript where status == "failure"\n'
        + '  notify ops title "{{ count }} '
        + "({{ events | map(attribute='script') | join(',') }})\"\n"
        + "  stop\n"
        + "  throttle 30m\n"
        + "  digest 2h\n"
        + 'rule "after"\non EndScript\n  log "after"\n'
    )
    first = send(store, rules, DAILY_FAILED, at(0))
    assert first.plan.stopped_by == "digest"
    assert [d.label for d in first.plan.decisions] == ["digest"]  # "after" never sees it
    held = send(store, rules, WEEKLY_FAILED, at(0, 10))
    assert held.plan.decisions[0].reason == "throttled" and held.plan.digests == []
    assert held.plan.stopped_by is None and held.plan.matched == ["after"]
    again = send(store, rules, MAIL_FAILED, at(0, 40))
    assert [d.key for d in again.plan.digests] == [HOST]  # no `by`: per engine
    assert again.plan.actions[0].variables["suppressed"] == 1

    assert [r.title for r in rows(store)] == []
    tick(rules, store, now=ts(2))
    assert [r.title for r in rows(store)] == ["2 (Daily Backup,Mail)"]


def test_digest_without_title_or_body_lists_each_events_own_title(store: Store) -> None:
    rules = ruleset(
        TARGET + 'rule "failures"\non EndScript where status == "failure"\n'
        "  notify ops\n  digest 1h\n"
    )
    send(store, rules, DAILY_FAILED, at(0))
    send(store, rules, WEEKLY_FAILED, at(0, 10))
    tick(rules, store, now=ts(1))
    [row] = rows(store)
    assert row.title == "failures: 2 events"
    assert row.body.splitlines()[:3] == [
        "2 events matched rule 'failures' between 2024-03-04 10:00 and 2024-03-04 10:10:",
        "- Backup 'Daily Backup' failed: error -530 (backup client not found)",
        "- Backup 'Weekly' failed: error -102 (trouble communicating)",
    ]


def test_a_digest_of_a_rule_that_left_the_rules_is_kept_then_dropped_visibly(
    store: Store,
) -> None:
    rules = ruleset(DIGEST)
    send(store, rules, DAILY_FAILED, at(0))
    # A process whose ruleset lacks the rule (stale, or broken): leaves it alone.
    assert tick(empty_ruleset(), store, now=ts(1)).fired == []
    assert store.state.digest_count() == 1
    dropped = tick(empty_ruleset(), store, now=ts(1) + ORPHAN_DIGEST_AFTER)
    assert [f.outbox_ids for f in dropped.fired] == [[]]
    [entry] = store.journal.entries(where=JournalQuery(event="digest"))
    assert "no longer in the rules" in entry.errors[0]
    assert store.state.digest_count() == 0


# ---------------------------------------------------------------------------
# robustness
# ---------------------------------------------------------------------------


def test_evaluate_plans_timers_without_writing() -> None:
    rules = ruleset(DIGEST + DAILY_EXPECT.replace(TARGET, ""))
    plan = evaluate(rules, event_from_argv(DAILY_FAILED, received=at(0)))
    assert [(d.rule.label, d.key, len(d.actions)) for d in plan.digests] == [("failures", HOST, 1)]
    assert [(h.rule.label, h.key) for h in plan.expect_matches] == [
        ("daily", f"{HOST}\x1fDaily Backup")
    ]
    assert plan.actions == []


def test_tick_reports_instead_of_raising(store: Store) -> None:
    rules = ruleset(DAILY_EXPECT)
    store.close()
    report = tick(rules, store, now=ts(30))
    assert report.fired == [] and report.errors


def test_tick_with_nothing_to_do_writes_nothing(store: Store) -> None:
    rules = ruleset(DIGEST)
    tables = ("events", "outbox", "expect_state", "digest_items", "runs", "throttle")

    def written() -> Any:
        if store.db.dialect.name == "sqlite":  # every write counts, same values or not
            with store.db.connection() as connection:
                return connection.total_changes
        return [store.db.all(f"SELECT * FROM {table} ORDER BY 1") for table in tables]

    before = written()
    for hours in (0, 1, 2):
        assert tick(rules, store, now=ts(hours)) == TickReport(ts(hours))
    assert written() == before
