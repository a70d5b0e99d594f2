"""The engine against the rule language's semantics (docs/rules.md), end to end.

Every case goes the way the router goes: rule text -> ``check_text`` (or
``check_paths`` for a directory) -> ``router.loader.build_ruleset`` -> ``evaluate`` (or
``router.dispatch.process`` with a real in-memory ``Store`` where history
and throttle state matter), on events built by ``event_from_argv`` from
argv shaped the way Retrospect sends it. The assertions are on decisions
and planned actions, never only on "it did not raise".
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional

import pytest
from helpers import write_rules

from router.actions import Log, Stop
from router.checker import CheckResult, check_paths, check_text
from router.dispatch import Outcome, process
from router.engine import Plan, Ruleset, evaluate
from router.events import Event, event_from_argv
from router.loader import build_ruleset
from router.store import Store

#: A Monday, 10:00 local time: every event is received at a known moment.
T0 = datetime(2024, 3, 4, 10, 0)

# ---------------------------------------------------------------------------
# Events as Retrospect sends them (argv after the program name)
# ---------------------------------------------------------------------------

END_SCRIPT_FAILED = ["EndScript", "Daily Backup", "0", "-530", "backup client not found"]
END_SCRIPT_OK = ["EndScript", "Daily Backup", "0", "0", "successful"]
END_SCRIPT_WARNING = ["EndScript", "Nightly Mail", "3", "0", "successful"]
#: errors arrived as text: kept raw, with a warning (the robustness contract of docs/events.md).
END_SCRIPT_RAW = ["EndScript", "Daily Backup", "abc", "-530", "backup client not found"]
#: Fewer arguments than the table: errors, error_code, error_message are absent.
END_SCRIPT_SHORT = ["EndScript", "Daily Backup"]


def end_source(
    script: str = "Daily Backup",
    source: str = "SQL01/Data (D:)",
    client: str = "SQL01",
    kb: str = "1048577",
    seconds: str = "3700",
    source_start: str = "2/10/2017 15:39",
    error_code: str = "0",
    errors: str = "0",
) -> list[str]:
    return [
        "EndSource",
        script,
        source,
        "D:\\",
        client,
        kb,
        "1234",
        seconds,
        source_start,
        "2/10/2017 16:40",
        "2/10/2017 15:00",
        "Backup Set A",
        "Normal",
        "Data (D:)",
        errors,
        error_code,
        "successful" if error_code == "0" else "trouble communicating",
    ]


START_SOURCE_LAPTOP = [
    "StartSource",
    "Daily Backup",
    "Anna-laptop/Macintosh HD",
    "/",
    "Anna-laptop",
    "/tmp/retrospect-intervention",
]
MEDIA_REQUEST = ["MediaRequest", "Backup Set A", "1-Backup Set A", "false", "45", "/tmp/ifile"]
START_APP = ["StartApp", "2/10/2017 15:39", "true", "/tmp/ifile"]


def event(argv: list[str], received: Optional[datetime] = None) -> Event:
    return event_from_argv(argv, host="backup-server", received=received or T0)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def checked(result: CheckResult) -> Ruleset:
    errors = [f"{d.line}:{d.column}: {d.message}" for d in result.diagnostics if d.is_error]
    assert not errors, errors
    return build_ruleset(result)


def ruleset(text: str, path: str = "engine.rules") -> Ruleset:
    return checked(check_text(text, path))


def one_rule(event_name: str, condition: str) -> Ruleset:
    return ruleset(f'rule "r" on {event_name} where {condition}\n  log "hit"\n')


def matches(condition: str, argv: list[str], received: Optional[datetime] = None) -> bool:
    """Does ``on EVENT where condition`` match the event? Checks that the
    decision and the planned actions agree."""
    e = event(argv, received)
    plan = evaluate(one_rule(e.name, condition), e)
    assert [d.label for d in plan.decisions] == ["r"]
    matched = plan.decisions[0].matched
    assert [p.rule.label for p in plan.actions] == (["r"] if matched else [])
    return matched


def labels(plan: Plan) -> list[str]:
    """The rules that acted, in the order they acted."""
    return plan.matched


# ---------------------------------------------------------------------------
# Missing fields: every comparison is false, and `not` of it true
# ---------------------------------------------------------------------------

#: Each condition is true on END_SCRIPT_WARNING (errors 3, error_code 0,
#: error_message "successful"), so a False on the short event is the
#: missing field's doing, not the value's.
ON_PRESENT_FIELDS = [
    "errors == 3",
    "errors != 0",
    "errors < 10",
    "errors <= 3",
    "errors > 0",
    "errors >= 3",
    'error_message matches "succ*"',
    'error_message =~ "cess"',
    'error_message contains "SUCCESS"',
    "errors in [1, 2, 3]",
    "errors not in [0]",
    "errors between 1 and 5",
    "errors exists",
    'error_message == "successful"',
    'error_message != "failed"',
    'error_message in ["successful"]',
    'error_message not in ["failed"]',
    "error_code == 0",
    "0 == error_code",
    "5 > errors",
]


@pytest.mark.parametrize("condition", ON_PRESENT_FIELDS)
def test_condition_is_true_when_the_field_is_there(condition: str) -> None:
    assert matches(condition, END_SCRIPT_WARNING)


@pytest.mark.parametrize("condition", ON_PRESENT_FIELDS)
def test_missing_field_makes_every_comparison_false(condition: str) -> None:
    e = event(END_SCRIPT_SHORT)
    assert "errors" not in e.fields and "error_message" not in e.fields
    assert any("missing" in w for w in e.warnings)
    assert not matches(condition, END_SCRIPT_SHORT)


@pytest.mark.parametrize("condition", ON_PRESENT_FIELDS)
def test_not_of_a_comparison_on_a_missing_field_is_true(condition: str) -> None:
    assert matches(f"not ({condition})", END_SCRIPT_SHORT)
    assert not matches(f"not ({condition})", END_SCRIPT_WARNING)


def test_missing_previous_is_false_and_its_negation_true() -> None:
    """No history at all: previous.FIELD is absent."""
    assert not matches('previous.status == "failure"', END_SCRIPT_OK)
    assert not matches('previous.status != "failure"', END_SCRIPT_OK)
    assert not matches("previous.errors >= 0", END_SCRIPT_OK)
    assert matches('not previous.status == "failure"', END_SCRIPT_OK)
    assert matches("not previous.status exists", END_SCRIPT_OK)


# ---------------------------------------------------------------------------
# Raw (unparsed) values: never an error, never ordered
# ---------------------------------------------------------------------------


def test_raw_value_is_kept_as_text_with_a_warning() -> None:
    e = event(END_SCRIPT_RAW)
    assert e.fields["errors"] == "abc"
    assert any("errors" in w and "kept as text" in w for w in e.warnings)


@pytest.mark.parametrize(
    "condition",
    [
        "errors > 0",
        "errors < 0",
        "errors >= 0",
        "errors <= 0",
        "errors > -1000",
        "errors between -1000 and 1000",
        "errors == 0",
        "errors in [0, 1]",
        # A value of the wrong type is not "different from 0": it is not a
        # number at all, as status (which ignores it) agrees.
        "errors != 0",
        "errors not in [0, 1]",
    ],
)
def test_raw_value_compares_false(condition: str) -> None:
    assert not matches(condition, END_SCRIPT_RAW)
    assert matches(f"not ({condition})", END_SCRIPT_RAW)


def test_raw_value_exists_and_is_still_in_args() -> None:
    assert matches("errors exists", END_SCRIPT_RAW)
    assert matches('args contains "abc"', END_SCRIPT_RAW)


@pytest.mark.parametrize(
    "argv, condition",
    [
        (end_source(source_start="yesterday"), 'source_start < "2/11/2030"'),
        (end_source(source_start="yesterday"), 'source_start > "2/11/1990"'),
        (end_source(source_start="yesterday"), 'source_start != "2/11/2017"'),
        (end_source(source_start="yesterday"), "source_start != source_end"),
        (end_source(source_start="yesterday"), "source_start < source_end"),
        (end_source(errors="abc"), "errors != error_code"),
        (end_source(seconds="a while"), "duration > 0s"),
        (end_source(seconds="a while"), "duration < 100d"),
        (end_source(kb="lots"), "bytes > 0KB"),
        (end_source(kb="lots"), "kb > 0"),
        (MEDIA_REQUEST[:4] + ["soon", "/tmp/ifile"], "waited >= 0m"),
    ],
)
def test_raw_dates_durations_and_numbers_never_order(argv: list[str], condition: str) -> None:
    assert not matches(condition, argv)
    assert matches(f"not ({condition})", argv)


def test_raw_bool_is_not_true() -> None:
    argv = MEDIA_REQUEST[:3] + ["maybe"] + MEDIA_REQUEST[4:]
    assert not matches("known", argv)
    assert matches("not known", argv)
    assert not matches("known == false", argv)


# ---------------------------------------------------------------------------
# matches, =~, contains
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, script, expected",
    [
        ("Nightly*", "Nightly Mail", True),
        ("nightly*", "Nightly Mail", True),  # case-insensitive
        ("NIGHTLY MAIL", "Nightly Mail", True),
        ("Nightly", "Nightly Mail", False),  # the whole value, not a prefix
        ("Mail", "Nightly Mail", False),
        ("*Mail", "Nightly Mail", True),
        ("*", "", True),
        ("Daily?", "Daily1", True),
        ("Daily?", "Daily12", False),
        ("Daily?", "Daily", False),
        ("Daily [abc]", "Daily b", True),
        ("Daily [ABC]", "Daily b", True),
        ("Daily [abc]", "Daily d", False),
        ("Daily [!abc]", "Daily d", True),
        ("Daily.*", "Daily Backup", False),  # . is a literal dot in a glob
        ("Daily.*", "Daily.old", True),
        ("Data (D:)", "Data (D:)", True),  # parentheses are literal
        ("a+b", "aab", False),
        ("*\\*", "x\\", True),
    ],
)
def test_matches_is_a_case_insensitive_glob_over_the_whole_value(
    pattern: str, script: str, expected: bool
) -> None:
    escaped = pattern.replace("\\", "\\\\")
    assert matches(f'script matches "{escaped}"', ["EndScript", script, "0", "0", "ok"]) is expected


def test_matches_on_a_client_name() -> None:
    assert matches('client matches "*-laptop"', START_SOURCE_LAPTOP)
    assert not matches('client matches "*-desktop"', START_SOURCE_LAPTOP)


@pytest.mark.parametrize(
    "regex, script, expected",
    [
        ("Back", "Daily Backup", True),  # anywhere in the value
        ("^Back", "Daily Backup", False),
        ("^Daily", "Daily Backup", True),
        ("Backup$", "Daily Backup", True),
        ("backup", "Daily Backup", False),  # case-sensitive, like Python's re
        ("(?i)backup", "Daily Backup", True),
        ("Da.ly", "Daily Backup", True),
        ("\\d{2}", "Daily 07", True),
        ("\\d{2}", "Daily 7", False),
        ("Mail|Backup", "Daily Backup", True),
        ("^(Daily|Weekly) ", "Nightly Mail", False),
    ],
)
def test_regex_searches_anywhere(regex: str, script: str, expected: bool) -> None:
    escaped = regex.replace("\\", "\\\\")
    assert matches(f'script =~ "{escaped}"', ["EndScript", script, "0", "0", "ok"]) is expected


@pytest.mark.parametrize(
    "regex",
    [
        "(?i)^daily backup$",
        "\\d+",
        "^\\w+ \\w+$",
        "\\s",
        "\\bBack",
        "\\Bup\\b",
        "(?P<kind>Daily|Weekly)-\\d{2,3}",
        "\\ABackup",
        "(?m)^Mail",
        "[^a-z ]+$",
        "Da.*?ly",
        "(?i:DAILY)-[0-9]{2}",
        "^$",
    ],
)
def test_regex_matches_as_python_re_did(regex: str) -> None:
    """RE2 decides like Python's re on every pattern both accept (ASCII text)."""
    import re

    escaped = regex.replace("\\", "\\\\")
    for script in ["Daily Backup", "daily backup", "Daily-07", "Weekly-123", "Backup", "", "X9"]:
        expected = re.search(regex, script) is not None
        got = matches(f'script =~ "{escaped}"', ["EndScript", script, "0", "0", "ok"])
        assert got is expected, (regex, script)


def test_regex_searches_a_value_with_undecodable_bytes() -> None:
    """A byte that was not UTF-8 arrives as a lone surrogate: it is one character, as before."""
    argv = ["EndScript", "Caf\udce9 Backup", "0", "0", "ok"]
    assert matches('script =~ "^Caf. Backup$"', argv) is True
    assert matches('script =~ "^Caf Backup$"', argv) is False


@pytest.mark.parametrize(
    "condition, expected",
    [
        ('error_message contains "client"', True),
        ('error_message contains "CLIENT NOT"', True),  # case-insensitive
        ('error_message contains "Backup Client Not Found"', True),
        ('error_message contains "server"', False),
        ('script contains "daily"', True),
        ('args contains "-530"', True),  # a list: any element
        ('args contains "CLIENT"', True),
        ('args contains "-531"', False),
    ],
)
def test_contains_is_a_case_insensitive_substring(condition: str, expected: bool) -> None:
    assert matches(condition, END_SCRIPT_FAILED) is expected


# ---------------------------------------------------------------------------
# ==, in, not in, between, exists
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition, expected",
    [
        ('script == "Daily Backup"', True),
        ('script == "daily backup"', False),  # strings compare exactly
        ('script != "daily backup"', True),
        ('script in ["Weekly", "Daily Backup"]', True),
        ('script in ["daily backup", "Weekly"]', False),
        ('script not in ["Weekly", "Monthly"]', True),
        ('script not in ["Weekly", "Daily Backup"]', False),
        ("error_code in [-530, -1017]", True),
        ("error_code in [-102]", False),
        ("error_code not in [0]", True),
        ('status == "failure"', True),
        ('status in ["failure", "warning"]', True),
        ('status not in ["failure", "warning"]', False),
        ('event == "EndScript"', True),
        ('host == "backup-server"', True),
        ('weekday in ["mon", "tue", "wed", "thu", "fri"]', True),
        ('weekday == "sat"', False),
        ("hour == 10", True),
        ("error_code < 0", True),
        ("error_code <= -530", True),
        ("error_code < -530", False),
        ("-600 < error_code", True),
    ],
)
def test_equality_and_membership(condition: str, expected: bool) -> None:
    assert matches(condition, END_SCRIPT_FAILED) is expected


@pytest.mark.parametrize(
    "errors, expected",
    [("-1", False), ("0", True), ("1", True), ("3", True), ("4", False)],
)
def test_between_is_inclusive(errors: str, expected: bool) -> None:
    argv = ["EndScript", "Daily Backup", errors, "0", "successful"]
    assert matches("errors between 0 and 3", argv) is expected


@pytest.mark.parametrize(
    "hour, minute, expected",
    [(8, 59, False), (9, 0, True), (13, 30, True), (17, 59, True), (18, 0, False)],
)
def test_office_hours_policy_example(hour: int, minute: int, expected: bool) -> None:
    """The laptop policy of docs/rules.md, on a Monday at various times."""
    condition = (
        'client matches "*-laptop" and weekday in ["mon","tue","wed","thu","fri"]'
        " and hour between 9 and 17"
    )
    received = T0.replace(hour=hour, minute=minute)
    assert matches(condition, START_SOURCE_LAPTOP, received) is expected
    saturday = received + timedelta(days=5)
    assert not matches(condition, START_SOURCE_LAPTOP, saturday)


def test_exists() -> None:
    assert matches("error_code exists", END_SCRIPT_FAILED)
    assert not matches("error_code exists", END_SCRIPT_SHORT)
    assert matches("not error_code exists", END_SCRIPT_SHORT)
    # NextExec's intervention file is optional.
    with_file = ["NextExec", "Daily Backup", "2/11/2017 01:00", "/tmp/ifile"]
    assert matches("intervention_file exists", with_file)
    assert not matches("intervention_file exists", with_file[:3])


# ---------------------------------------------------------------------------
# Durations, sizes and dates compare by value
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition, argv, expected",
    [
        # EndSource duration is in seconds: 3700 s = 1 h 1 min 40 s.
        ("duration > 1h", end_source(seconds="3700"), True),
        ("duration > 2h", end_source(seconds="3700"), False),
        ("duration < 1h", end_source(seconds="3599"), True),
        ("duration == 3700s", end_source(seconds="3700"), True),
        ("duration between 61m and 62m", end_source(seconds="3700"), True),
        ("duration >= 1d", end_source(seconds="86400"), True),
        ("duration < 1w", end_source(seconds="86400"), True),
        # MediaRequest waited is in minutes: 45.
        ("waited > 30m", MEDIA_REQUEST, True),
        ("waited > 45m", MEDIA_REQUEST, False),
        ("waited == 45m", MEDIA_REQUEST, True),
        ("waited == 2700s", MEDIA_REQUEST, True),
        ("waited < 1h", MEDIA_REQUEST, True),
        ("waited > 44m and waited < 46m", MEDIA_REQUEST, True),
    ],
)
def test_durations_compare_by_value(condition: str, argv: list[str], expected: bool) -> None:
    assert matches(condition, argv) is expected


@pytest.mark.parametrize(
    "kb, condition, expected",
    [
        ("1048577", "bytes > 1GB", True),  # 1 GiB + 1 KiB
        ("1048576", "bytes > 1GB", False),  # exactly 1 GiB
        ("1048576", "bytes >= 1GB", True),
        ("1048576", "bytes == 1024MB", True),
        ("1048576", "bytes == 1048576KB", True),
        # 1,024,000,000 bytes: over a decimal 1 GB, under 1 GiB.
        ("1000000", "bytes < 1GB", True),
        ("1000000", "bytes > 976MB", True),
        ("1000000", "bytes > 977MB", False),
        ("1073741824", "bytes == 1TB", True),
        ("20480", "bytes between 20MB and 20MB", True),
        ("500", "bytes == 500KB", True),
    ],
)
def test_sizes_are_powers_of_1024(kb: str, condition: str, expected: bool) -> None:
    argv = end_source(kb=kb)
    assert event(argv).fields["bytes"] == int(kb) * 1024
    assert matches(condition, argv) is expected


@pytest.mark.parametrize(
    "condition, expected",
    [
        ('source_start < "2/11/2017"', True),
        ('source_start > "2/10/2017"', True),  # midnight that day
        ('source_start > "2/10/2017 16:00"', False),
        ('source_start == "2/10/2017 15:39"', True),
        ('source_start == "2017-02-10 15:39"', True),  # ISO, same moment
        ('source_start != "2017-02-10 15:39"', False),
        ('source_start == "2/10/2017 3:39 PM"', True),
        # By value, not as text: "2/10/2017" sorts after "11/21/2017" as a string.
        ('source_start < "11/21/2017"', True),
        ('source_start > "11/21/2016 18:06"', True),
        ('source_start between "2/10/2017 15:00" and "2/10/2017 16:00"', True),
        ('source_start between "2/10/2017 15:40" and "2/10/2017 16:00"', False),
        ('source_start in ["2/10/2017 15:39", "1/1/2000"]', True),
        ("source_start < source_end", True),
        ("source_start != source_end", True),
        ("source_start == source_end", False),
        ("errors == error_code", True),
        ("errors != error_code", False),
        ("source_start > script_start", True),
        ("source_end between script_start and source_start", False),
    ],
)
def test_dates_compare_by_value(condition: str, expected: bool) -> None:
    assert matches(condition, end_source()) is expected


def test_start_app_date_and_autolaunched() -> None:
    assert matches('date < "2/11/2017"', START_APP)
    assert not matches('date < "2/10/2017"', START_APP)
    assert matches('autolaunched and date > "2016-12-31"', START_APP)


# ---------------------------------------------------------------------------
# Boolean logic, defines, bare bool fields
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition, expected",
    [
        # and binds tighter than or: true or (false and false)
        ('script == "Daily Backup" or script == "X" and errors > 0', True),
        ('(script == "Daily Backup" or script == "X") and errors > 0', False),
        # false or (true and false)
        ('script == "X" or script == "Daily Backup" and errors > 0', False),
        ('errors > 0 and script == "X" or script == "Daily Backup"', True),
        ('errors > 0 and (script == "X" or script == "Daily Backup")', False),
        # not binds tighter than and: (not true) and true
        ('not errors == 0 and script == "Daily Backup"', False),
        ('not (errors == 0 and script == "X")', True),
        ("not not errors == 0", True),
        ('errors == 0 and error_code == -530 and script matches "d*"', True),
        ('errors == 1 or error_code == 1 or script == "x"', False),
    ],
)
def test_and_binds_tighter_than_or(condition: str, expected: bool) -> None:
    assert matches(condition, END_SCRIPT_FAILED) is expected


DEFINES = """\
define nightly = script matches "Nightly*" or script matches "Daily*"
define failed = status == "failure"
define nightly_failure = failed and nightly
rule "failed nightly" on EndScript where status == "failure" and nightly
  log "a"
rule "not nightly" on EndScript where not nightly
  log "b"
rule "nested" on EndScript where nightly_failure
  log "c"
rule "or" on EndScript where error_code == 1 or nightly
  log "d"
"""


@pytest.mark.parametrize(
    "argv, expected",
    [
        (END_SCRIPT_FAILED, ["failed nightly", "nested", "or"]),
        # A successful Daily: "status == failure and nightly" must group the
        # define's "or" (inlined as text it would be "failed and A or B").
        (END_SCRIPT_OK, ["or"]),
        (["EndScript", "Nightly Mail", "0", "-102", "x"], ["failed nightly", "nested", "or"]),
        (["EndScript", "Weekly", "0", "-102", "x"], ["not nightly"]),
        (END_SCRIPT_SHORT, ["or"]),
    ],
)
def test_defines_stand_in_as_one_condition(argv: list[str], expected: list[str]) -> None:
    assert labels(evaluate(ruleset(DEFINES), event(argv))) == expected


@pytest.mark.parametrize(
    "argv, condition, expected",
    [
        (MEDIA_REQUEST, "known", False),
        (MEDIA_REQUEST, "not known", True),
        (MEDIA_REQUEST[:3] + ["true"] + MEDIA_REQUEST[4:], "known", True),
        (MEDIA_REQUEST[:3] + ["true"] + MEDIA_REQUEST[4:], "known and waited > 30m", True),
        (MEDIA_REQUEST, "known == false", True),
        (MEDIA_REQUEST, "known != true", True),
        (MEDIA_REQUEST, "known in [false]", True),
        (MEDIA_REQUEST, "known not in [true]", True),
        (MEDIA_REQUEST[:3] + ["true"] + MEDIA_REQUEST[4:], "known not in [true]", False),
        (MEDIA_REQUEST[:3], "known", False),  # missing
        (MEDIA_REQUEST[:3], "not known", True),
        (START_APP, "autolaunched", True),
        (START_APP, "not autolaunched", False),
        (["StartApp", "2/10/2017 15:39", "false", "/tmp/ifile"], "autolaunched", False),
    ],
)
def test_bare_bool_fields(argv: list[str], condition: str, expected: bool) -> None:
    assert matches(condition, argv) is expected


# ---------------------------------------------------------------------------
# previous and streak, through the real store
# ---------------------------------------------------------------------------

HISTORY_RULES = """\
target ops = "json://127.0.0.1:9/"
target pager = "json://127.0.0.1:9/pager"

# Recovery notice: the first success after a failure.
rule "recovered"
on EndScript, EndSource where status == "success" and previous.status == "failure"
  notify ops title "{{ script }} recovered after {{ previous.streak }} failed runs"

# Escalate the third failure in a row.
rule "escalate"
on EndScript, EndSource where status == "failure" and streak >= 3
  notify pager type failure

rule "same set as before"
on MediaRequest where previous.backup_set == backup_set
  log "{{ backup_set }} again"

rule "another set"
on MediaRequest where previous.backup_set != backup_set
  log "{{ previous.backup_set }} then {{ backup_set }}"
"""


class Feed:
    """Successive events through ``process`` into one in-memory store."""

    def __init__(self, text: str) -> None:
        self.ruleset = ruleset(text)
        self.store = Store.in_memory()
        self.clock = T0

    def send(self, argv: list[str], at: Optional[datetime] = None) -> Outcome:
        self.clock = at or self.clock + timedelta(minutes=1)
        return process(event(argv, self.clock), self.ruleset, self.store)

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def feed() -> Iterator[Feed]:
    history = Feed(HISTORY_RULES)
    yield history
    history.close()


def script_end(script: str, error_code: int) -> list[str]:
    message = "successful" if error_code == 0 else "backup client not found"
    return ["EndScript", script, "0", str(error_code), message]


def test_recovery_example(feed: Feed) -> None:
    outcomes = [feed.send(script_end("Daily Backup", code)) for code in (-530, -530, 0)]
    assert [o.streak for o in outcomes] == [1, 2, 1]
    assert [labels(o.plan) for o in outcomes] == [[], [], ["recovered"]]
    [note] = outcomes[2].notifications
    assert (note.target, note.title) == ("ops", "Daily Backup recovered after 2 failed runs")
    assert feed.send(script_end("Daily Backup", 0)).plan.matched == []  # only the first success


def test_escalation_on_the_third_failure_in_a_row(feed: Feed) -> None:
    codes = [-530, -530, -530, -530, 0, -530, -530, -530]
    outcomes = [feed.send(script_end("Daily Backup", code)) for code in codes]
    assert [o.streak for o in outcomes] == [1, 2, 3, 4, 1, 1, 2, 3]
    escalated = ["escalate" in labels(o.plan) for o in outcomes]
    assert escalated == [False, False, True, True, False, False, False, True]
    assert [n.target for n in outcomes[2].notifications] == ["pager"]
    assert outcomes[2].notifications[0].type == "failure"


def test_streak_and_previous_are_per_script(feed: Feed) -> None:
    feed.send(script_end("Daily Backup", -530))
    feed.send(script_end("Daily Backup", -530))
    other = feed.send(script_end("Weekly", 0))  # another script: its own history
    assert other.streak == 1 and labels(other.plan) == []
    third = feed.send(script_end("Daily Backup", -530))
    assert third.streak == 3 and labels(third.plan) == ["escalate"]
    weekly_fail = feed.send(script_end("Weekly", -102))
    assert weekly_fail.streak == 1 and labels(weekly_fail.plan) == []
    recovered = feed.send(script_end("Daily Backup", 0))
    assert labels(recovered.plan) == ["recovered"]
    assert recovered.notifications[0].title == "Daily Backup recovered after 3 failed runs"


def test_previous_is_per_event_name(feed: Feed) -> None:
    """A StartScript between two EndScripts is not their 'previous'."""
    feed.send(script_end("Daily Backup", -530))
    feed.send(["StartScript", "Daily Backup", "2/10/2017 15:00", "/tmp/ifile"])
    assert labels(feed.send(script_end("Daily Backup", 0)).plan) == ["recovered"]


def test_source_identity_is_script_and_source(feed: Feed) -> None:
    failed_a = end_source(source="SQL01/Data (D:)", error_code="-102")
    ok_a = end_source(source="SQL01/Data (D:)")
    ok_b = end_source(source="SQL01/System (C:)")
    failed_a_other_script = end_source(script="Weekly", source="SQL01/Data (D:)", error_code="-102")
    assert labels(feed.send(failed_a).plan) == []
    # Same script, another source: no previous of its own yet.
    assert labels(feed.send(ok_b).plan) == []
    # Same source, another script: its own identity too.
    assert labels(feed.send(failed_a_other_script).plan) == []
    outcome = feed.send(ok_a)
    assert labels(outcome.plan) == ["recovered"]
    assert outcome.notifications[0].title == "Daily Backup recovered after 1 failed runs"


def test_source_streak_escalates_per_source(feed: Feed) -> None:
    failed_a = end_source(source="SQL01/Data (D:)", error_code="-102")
    failed_b = end_source(source="SQL01/System (C:)", error_code="-102")
    streaks = [feed.send(argv).streak for argv in (failed_a, failed_b, failed_a, failed_b)]
    assert streaks == [1, 1, 2, 2]
    assert labels(feed.send(failed_a).plan) == ["escalate"]


def test_other_events_keep_history_by_event_name(feed: Feed) -> None:
    first = feed.send(MEDIA_REQUEST)
    assert labels(first.plan) == []  # no previous: both comparisons false
    same = feed.send(MEDIA_REQUEST)
    assert labels(same.plan) == ["same set as before"]
    other = MEDIA_REQUEST[:1] + ["Backup Set B", "1-Backup Set B"] + MEDIA_REQUEST[3:]
    changed = feed.send(other)
    assert labels(changed.plan) == ["another set"]
    assert changed.steps[0].text == "Backup Set A then Backup Set B"


def test_streak_counts_the_status_including_this_event() -> None:
    history = Feed('rule "s" on EndScript where streak == 2 and status == "success"\n  log "x"\n')
    try:
        got = [labels(history.send(script_end("Daily Backup", c)).plan) for c in (0, 0, 0)]
        assert got == [[], ["s"], []]
    finally:
        history.close()


# ---------------------------------------------------------------------------
# throttle
# ---------------------------------------------------------------------------

THROTTLED = """\
target ops = "json://127.0.0.1:9/"
rule "script failed"
on EndScript where status == "failure"
  notify ops title "{{ script }} failed ({{ suppressed }} suppressed)"
  throttle 1h by script
"""


def test_throttle_by_script() -> None:
    feed = Feed(THROTTLED)
    try:
        first = feed.send(script_end("Daily Backup", -530), T0)
        assert labels(first.plan) == ["script failed"]
        assert first.plan.actions[0].variables["suppressed"] == 0
        assert [n.title for n in first.notifications] == ["Daily Backup failed (0 suppressed)"]

        for minutes in (10, 30, 59):
            held = feed.send(script_end("Daily Backup", -530), T0 + timedelta(minutes=minutes))
            [decision] = held.plan.decisions
            assert decision.matched and decision.reason == "throttled"
            assert held.plan.actions == [] and held.notifications == []

        # Another script is throttled on its own.
        other = feed.send(script_end("Weekly", -102), T0 + timedelta(minutes=40))
        assert labels(other.plan) == ["script failed"]

        # A success does not match at all: it is not counted as suppressed.
        feed.send(script_end("Daily Backup", 0), T0 + timedelta(minutes=59, seconds=30))

        after = feed.send(script_end("Daily Backup", -530), T0 + timedelta(hours=1, minutes=1))
        assert labels(after.plan) == ["script failed"]
        assert after.plan.actions[0].variables["suppressed"] == 3
        assert [n.title for n in after.notifications] == ["Daily Backup failed (3 suppressed)"]

        # The count starts again after acting.
        again = feed.send(script_end("Daily Backup", -530), T0 + timedelta(hours=1, minutes=5))
        assert again.plan.decisions[0].reason == "throttled"
        assert again.plan.decisions[0].suppressed == 1
        later = feed.send(script_end("Daily Backup", -530), T0 + timedelta(hours=2, minutes=2))
        assert later.plan.actions[0].variables["suppressed"] == 1
    finally:
        feed.close()


def test_throttle_without_by_covers_the_whole_rule() -> None:
    feed = Feed(THROTTLED.replace(" by script", ""))
    try:
        assert labels(feed.send(script_end("Daily Backup", -530), T0).plan) == ["script failed"]
        held = feed.send(script_end("Weekly", -102), T0 + timedelta(minutes=5))
        assert held.plan.decisions[0].reason == "throttled"
        after = feed.send(script_end("Weekly", -102), T0 + timedelta(minutes=61))
        assert after.plan.actions[0].variables["suppressed"] == 1
    finally:
        feed.close()


# ---------------------------------------------------------------------------
# Order, stop, any, aliases
# ---------------------------------------------------------------------------


def test_rules_run_in_file_name_then_file_order_and_stop_ends_them(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir(mode=0o755)
    write_rules(
        rules / "20-later.rules",
        'rule "b1" on EndScript\n  log "b1"\n'
        'rule "b2" on any\n  log "b2"\n'
        'rule "b3" on EndScript where status == "failure"\n  log "b3"\n  stop\n'
        'rule "b4" on EndScript\n  log "b4"\n',
    )
    write_rules(
        rules / "10-first.rules",
        'rule "a1" on EndScript, StartScript\n  log "a1"\n'
        'rule "a2" on any\n  log "a2"\n'
        # stop only when the rule matches
        'rule "a3" on EndScript where status == "success"\n  log "a3"\n  stop\n'
        'rule "a4" on EndScript\n  log "a4"\n',
    )
    rs = checked(check_paths([rules]))

    failed = evaluate(rs, event(END_SCRIPT_FAILED))
    order = ["a1", "a2", "a3", "a4", "b1", "b2", "b3"]
    assert [d.label for d in failed.decisions] == order  # b4 never sees it
    assert labels(failed) == ["a1", "a2", "a4", "b1", "b2", "b3"]
    assert [a.action.text.source for a in failed.actions if isinstance(a.action, Log)] == [
        "a1",
        "a2",
        "a4",
        "b1",
        "b2",
        "b3",
    ]
    assert failed.stopped_by == "b3"

    ok = evaluate(rs, event(END_SCRIPT_OK))
    assert [d.label for d in ok.decisions] == ["a1", "a2", "a3"]
    assert ok.stopped_by == "a3"
    assert isinstance(ok.actions[-1].action, Stop)

    start = evaluate(rs, event(["StartScript", "Daily Backup", "2/10/2017 15:00", "/tmp/f"]))
    assert labels(start) == ["a1", "a2", "b2"]
    assert start.stopped_by is None


def test_actions_keep_their_written_order() -> None:
    rs = ruleset(
        'target ops = "json://127.0.0.1:9/"\n'
        'on StartSource where client matches "*-laptop"\n'
        '  log "first"\n  notify ops\n  abort "{{ client }} skipped"\n  stop\n'
    )
    plan = evaluate(rs, event(START_SOURCE_LAPTOP))
    kinds = [type(a.action).__name__ for a in plan.actions]
    assert kinds == ["Log", "Notify", "Abort", "Stop"]


def test_on_any_sees_unknown_events() -> None:
    rs = ruleset(
        'rule "end" on EndScript\n  log "x"\n'
        'rule "all" on any\n  log "{{ event }} {{ args | join(\' \') }}"\n'
        'rule "odd" on any where args contains "frob"\n  log "y"\n'
        'rule "unknown only" on any where not script exists\n  log "z"\n'
    )
    unknown = event(["Frobnicate", "frob", "42"])
    assert not unknown.known
    plan = evaluate(rs, unknown)
    assert [d.label for d in plan.decisions] == ["all", "odd", "unknown only"]
    assert labels(plan) == ["all", "odd", "unknown only"]
    known = evaluate(rs, event(END_SCRIPT_OK))
    assert labels(known) == ["end", "all"]


@pytest.mark.parametrize(
    "rule_event, argv",
    [
        ("SchedStop", ["StopSched", "Daily Backup", "2/10/2017 18:00", "/tmp/f"]),
        ("SchedStop", ["SchedStop", "Daily Backup", "2/10/2017 18:00", "/tmp/f"]),
        ("StopSched", ["SchedStop", "Daily Backup", "2/10/2017 18:00", "/tmp/f"]),
        ("FatalErrorBackup", ["FatalBackupError", "Daily", "disk full", "-1", "x", "zone", "/f"]),
        ("FatalBackupError", ["FatalErrorBackup", "Daily", "disk full", "-1", "x", "zone", "/f"]),
    ],
)
def test_aliases_are_the_same_event(rule_event: str, argv: list[str]) -> None:
    rs = ruleset(f'rule "alias" on {rule_event} where script matches "Daily*"\n  log "x"\n')
    plan = evaluate(rs, event(argv))
    assert labels(plan) == ["alias"]


def test_rules_for_other_events_are_not_candidates() -> None:
    rs = ruleset('rule "src" on EndSource\n  log "x"\nrule "app" on StartApp\n  log "y"\n')
    assert evaluate(rs, event(END_SCRIPT_OK)).decisions == []
    assert labels(evaluate(rs, event(START_APP))) == ["app"]


# ---------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------


def test_explain_gives_the_first_failing_condition() -> None:
    rs = ruleset(
        'define nightly = script matches "Nightly*" or script matches "Daily*"\n'
        'rule "and" on EndScript where status == "failure" and nightly and errors > 5\n'
        '  log "x"\n'
        'rule "first" on EndScript where script == "Weekly" and errors > 5\n  log "x"\n'
        'rule "or" on EndScript where script == "x" or errors > 5\n  log "x"\n'
        'rule "single" on EndScript where error_code == 0\n  log "x"\n'
        'rule "hit" on EndScript where status == "failure"\n  log "x"\n'
    )
    plan = evaluate(rs, event(END_SCRIPT_FAILED), explain=True)
    reasons = {d.label: d.reason for d in plan.decisions}
    assert reasons == {
        "and": "errors > 5",
        "first": 'script == "Weekly"',
        "or": 'script == "x" or errors > 5',
        "single": "error_code == 0",
        "hit": None,
    }
    assert labels(plan) == ["hit"]
    # Without explain the decision carries no reason, and the outcome is the same.
    quiet = evaluate(rs, event(END_SCRIPT_FAILED))
    assert [d.reason for d in quiet.decisions] == [None] * 5
    assert labels(quiet) == ["hit"]


def test_explain_names_the_define_that_failed() -> None:
    rs = ruleset(
        'define weekly = script == "Weekly"\n'
        'rule "d" on EndScript where status == "failure" and weekly\n  log "x"\n'
    )
    plan = evaluate(rs, event(END_SCRIPT_FAILED), explain=True)
    assert plan.decisions[0].reason == "weekly"


# ---------------------------------------------------------------------------
# Compiled when needed
# ---------------------------------------------------------------------------


def test_an_event_compiles_only_the_rules_it_can_match() -> None:
    text = "".join(
        f'rule "source {i}" on StartSource where client == "c{i}" log "x"\n' for i in range(50)
    )
    rules = ruleset(text + 'rule "ended" on EndScript log "x"\nrule "all" on any log "x"\n')
    assert rules.compiled == 0
    plan = evaluate(rules, event(END_SCRIPT_OK))
    assert plan.matched == ["ended", "all"]
    assert rules.compiled == 2
    assert rules.compile_all().compiled == rules.size == 52


def test_a_rule_that_does_not_compile_is_an_error_and_the_others_run() -> None:
    """A cache written by a checker that let a regex through that RE2 now
    refuses: the rule errs when evaluated, and costs no other its action."""
    from router.engine import compile_ruleset
    from router.language.parser import parse_text

    text = (
        'rule "old" on EndScript where script =~ "Daily(?=Backup)" log "x"\n'
        'rule "fine" on EndScript log "x"\n'
    )
    rule_file, _ = parse_text(text, "old.rules")
    plan = evaluate(compile_ruleset([rule_file], {}, {}), event(END_SCRIPT_OK))
    assert plan.matched == ["fine"]
    assert len(plan.errors) == 1 and "did not compile" in plan.errors[0], plan.errors


def test_a_glob_matches_as_fnmatch_does_without_compiling_a_regex() -> None:
    """The pieces matcher (plain text and ``*``) against fnmatch's own
    regular expression, on patterns and values made of the characters that
    matter: case, ``*``, ``?``, ``[``, a slash, a newline, non-ASCII."""
    import fnmatch
    import random
    import re

    from router.language.operators import Glob

    rng = random.Random(20261128)
    alphabet = ["a", "A", "b", "B", "-", "/", "\n", "é", "K", "k", "*", "*", "?", "[a]", "ß"]
    for _ in range(20000):
        pattern = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
        value = "".join(rng.choice(alphabet[:11]) for _ in range(rng.randint(0, 7)))
        expected = re.compile(fnmatch.translate(pattern), re.IGNORECASE).match(value) is not None
        assert Glob(pattern).match(value) is expected, (pattern, value)
    assert Glob("Nightly-*").match("nightly-12") and Glob("Nightly-*")._regex is None
