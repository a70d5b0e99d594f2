"""Our Jinja filters, the template analysis router check relies on, rendering,
and the built-in messages for every Retrospect event."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from router.catalog import CATALOG, EVENTS
from router.events import event_from_argv
from router.templates import (
    MESSAGES_DIR,
    TEMPLATES,
    Rendered,
    datetime_filter,
    duration_filter,
    environment,
    event_variables,
    filesize_filter,
    message_file,
    render,
    render_message,
    render_title,
    template_refs,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (90, "1 minute 30 seconds"),
        (7500, "2 hours 5 minutes"),
        (timedelta(hours=2, minutes=5, seconds=9), "2 hours 5 minutes"),
        (timedelta(days=1, hours=3), "1 day 3 hours"),
        (timedelta(minutes=-5), "-5 minutes"),
        ("12x", "12x"),  # a raw string that did not parse is shown as it came
    ],
)
def test_duration_filter(value, text: str) -> None:
    assert duration_filter(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (512, "512 bytes"),
        (1536, "1.5 KB"),
        (20 * 1024**2, "20 MB"),
        (int(1.5 * 1024**3), "1.5 GB"),
        (3 * 1024**4, "3 TB"),
        ("n/a", "n/a"),
    ],
)
def test_filesize_filter(value, text: str) -> None:
    assert filesize_filter(value) == text


def test_datetime_filter_default_and_pattern() -> None:
    moment = datetime(2016, 11, 21, 18, 6)
    assert datetime_filter(moment) == "2016-11-21 18:06"
    assert datetime_filter(moment, "%d.%m.%Y") == "21.11.2016"
    assert datetime_filter("13/45/2016") == "13/45/2016"


def test_event_values_are_data_not_template_source() -> None:
    rendered = environment().from_string("client {{ client }}").render(client="{{ 7*7 }}")
    assert rendered == "client {{ 7*7 }}"


def test_sandbox_blocks_attribute_escapes() -> None:
    from jinja2.exceptions import SecurityError

    template = environment().from_string("{{ x.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(SecurityError):
        template.render(x="")


def test_refs_list_variables_filters_tests_and_lines() -> None:
    refs = template_refs(
        "{{ script }}\n{% for e in events %}{{ e.client | upper }}{{ loop.index }}{% endfor %}\n"
        "{{ previous.status }} {{ size | filesize }}{% if errors is defined %}{% endif %}"
    )
    assert refs.syntax_error is None
    assert ("script", 1) in refs.variables
    assert ("events", 2) in refs.variables
    names = {name for name, _ in refs.variables}
    assert "e" not in names and "loop" not in names  # bound by the template itself
    assert "errors" not in names  # guarded by `is defined`
    assert ("previous", "status", 3) in refs.attributes
    assert ("upper", 2) in refs.filters and ("filesize", 3) in refs.filters
    assert ("defined", 3) in refs.tests


def test_refs_report_syntax_error_line() -> None:
    refs = template_refs("line one\nline two {{ oops\n")
    assert refs.syntax_error is not None
    assert refs.syntax_error[0] == 2


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------

RECEIVED = datetime(2017, 2, 10, 15, 40)
IFILE = "/tmp/retrospect-intervention.txt"

#: Retrospect-shaped argv for every event, as its example handlers show them.
SAMPLE_ARGV: dict[str, list[str]] = {
    "StartApp": ["2/10/2017 15:39", "true", IFILE],
    "EndApp": ["2/10/2017 18:06"],
    "StartBackupServer": ["2/10/2017 15:39", IFILE],
    "StopBackupServer": ["2/10/2017 18:06"],
    "StartScript": ["Daily Backup", "2/10/2017 15:39", IFILE],
    "EndScript": ["Daily Backup", "0", "-530", "backup client not found"],
    "StartSource": ["Daily Backup", "My Computer/Mac HD", "/Volumes/Mac HD", "My Computer", IFILE],
    "EndSource": [
        "Daily Backup",
        "ws-12/C:",
        "C:\\",
        "ws-12",
        "2000000",
        "12345",
        "312",
        "2/10/2017 15:39",
        "2/10/2017 15:44",
        "2/10/2017 15:30",
        "Backup Set A",
        "Normal",
        "C:",
        "0",
        "0",
        "successful",
    ],
    "MediaRequest": ["Backup Set A", "1-Backup Set A", "false", "10", IFILE],
    "TimedOutMediaRequest": ["Backup Set A", "1-Backup Set A", "true", "60", IFILE],
    "ScriptCheckFailed": [
        "Daily Backup",
        "2/11/2017 01:00",
        "no backup set media",
        "-1017",
        "insufficient permissions",
    ],
    "NextExec": ["Daily Backup", "2/11/2017 01:00"],
    "StopSched": ["Daily Backup", "2/11/2017 06:00", IFILE],
    "PasswordEntry": ["Backup Set A", "2", "-1017", "insufficient permissions"],
    "FatalBackupError": [
        "Daily Backup",
        "writing to backup set",
        "-102",
        "trouble communicating",
        "Backup",
        IFILE,
    ],
    "AnomalyAlert": [
        "Daily Backup",
        "ws-12/C:",
        "C:\\",
        "ws-12",
        "All Files",
        "10000",
        "4550",
        "45.5",
        IFILE,
    ],
}

#: Facts each default message must carry, title first, then the body.
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "StartApp": (
        ["backup01", "automatically"],
        ["2017-02-10 15:39"],
    ),
    "EndApp": (["quit", "backup01"], ["2017-02-10 18:06"]),
    "StartBackupServer": (["Proactive Backup", "backup01"], ["2017-02-10 15:39"]),
    "StopBackupServer": (["Proactive Backup stopped", "backup01"], ["2017-02-10 18:06"]),
    "StartScript": (
        ["'Daily Backup'", "starting", "2017-02-10 15:39"],
        ["Script: Daily Backup"],
    ),
    "EndScript": (
        ["Backup 'Daily Backup' failed: error -530 (backup client not found)"],
        ["Result: failed: error -530 (backup client not found)", "Non-fatal errors: 0"],
    ),
    "StartSource": (
        ["'My Computer/Mac HD'", "starting", "Daily Backup"],
        ["Path: /Volumes/Mac HD", "Client: My Computer"],
    ),
    "EndSource": (
        ["Source 'ws-12/C:' succeeded: 1.9 GB, 12,345 files, 5 minutes 12 seconds"],
        [
            "Script: Daily Backup",
            "Path: C:\\",
            "Client: ws-12",
            "Copied: 1.9 GB (2000000 KB), 12,345 files",
            "Duration: 5 minutes 12 seconds",
            "Source started: 2017-02-10 15:39",
            "Source ended: 2017-02-10 15:44",
            "Script started: 2017-02-10 15:30",
            "Backup set: Backup Set A",
            "Action: Normal",
            "Parent volume: C:",
        ],
    ),
    "MediaRequest": (
        ["needs media", "'1-Backup Set A'", "backup set 'Backup Set A'", "10 minutes"],
        ["Known member: no, new media"],
    ),
    "TimedOutMediaRequest": (
        ["timed out", "1 hour", "'1-Backup Set A'", "'Backup Set A'"],
        ["Known member: yes"],
    ),
    "ScriptCheckFailed": (
        ["'Daily Backup'", "will not be able to run", "2017-02-11 01:00", "no backup set media"],
        ["Error: -1017 (insufficient permissions)"],
    ),
    "NextExec": (["'Daily Backup'", "next runs", "2017-02-11 01:00"], ["Next run: 2017-02-11"]),
    "StopSched": (
        ["'Daily Backup'", "scheduled stop", "2017-02-11 06:00"],
        ["Scheduled stop: 2017-02-11 06:00"],
    ),
    "PasswordEntry": (
        ["'Backup Set A'", "failed: error -1017 (insufficient permissions)"],
        ["Attempts: 2"],
    ),
    "FatalBackupError": (
        ["'Daily Backup'", "error -102 (trouble communicating)"],
        ["What failed: writing to backup set", "Where: Backup"],
    ),
    "AnomalyAlert": (
        ["'ws-12/C:'", "45.5% of files changed"],
        ["Selector: All Files", "Files watched: 10000", "Files changed: 4550", "C:\\"],
    ),
}


def _variables(argv: list[str], **extra) -> dict:
    event = event_from_argv(argv, host="backup01", received=RECEIVED)
    return event_variables(event.fields, {}, extra)


def _render_default(argv: list[str], **extra) -> tuple[Rendered, Rendered]:
    variables = _variables(argv, **extra)
    return (
        render_message(argv[0], "title", variables),
        render_message(argv[0], "body", variables),
    )


def test_every_catalog_event_has_a_message_file() -> None:
    files = {path.name for path in Path(MESSAGES_DIR).glob("*.j2")}
    events = {f"{spec.name}.j2" for spec in CATALOG}
    assert events <= files and set(SAMPLE_ARGV) == {spec.name for spec in CATALOG}
    assert files - events == {"_common.j2", "_unknown.j2", "_expect.j2", "_digest.j2"}


@pytest.mark.parametrize("name", list(SAMPLE_ARGV))
def test_default_message_states_the_facts(name: str) -> None:
    argv = [name, *SAMPLE_ARGV[name]]
    assert len(argv) - 1 == len(EVENTS[name].fields) or name == "NextExec"
    title, body = _render_default(argv)
    assert title.error is None and body.error is None
    assert "\n" not in title.text
    in_title, in_body = EXPECTED[name]
    for fact in in_title:
        assert fact in title.text, (fact, title.text)
    for fact in in_body:
        assert fact in body.text, (fact, body.text)
    assert "Host: backup01, received 2017-02-10 15:40" in body.text
    assert "None" not in title.text + body.text
    assert "{{" not in body.text and "{%" not in body.text
    # Facts about the event, not documentation: what an abort would do is in docs/.
    assert "If a rule" not in body.text


@pytest.mark.parametrize(
    ("argv", "title"),
    [
        (
            ["EndScript", "Daily", "0", "-530", "backup client not found"],
            "Backup 'Daily' failed: error -530 (backup client not found)",
        ),
        (["EndScript", "Daily", "3", "0", "successful"], "Backup 'Daily' completed with 3 errors"),
        (["EndScript", "Daily", "1", "0", "successful"], "Backup 'Daily' completed with 1 error"),
        (["EndScript", "Daily", "0", "0", "successful"], "Backup 'Daily' succeeded"),
    ],
)
def test_end_script_status_words(argv: list[str], title: str) -> None:
    rendered, _ = _render_default(argv)
    assert rendered.text == title


def test_end_source_failure_names_the_client_and_error() -> None:
    argv = ["EndSource", "Daily", "Mac HD", "/Volumes/Mac HD", "ws-12", "0", "0", "0"]
    argv += ["2/10/2017 15:39", "2/10/2017 15:39", "2/10/2017 15:30", "Set A", "Normal", "Mac HD"]
    argv += ["0", "-530", "backup client not found"]
    title, body = _render_default(argv)
    assert (
        title.text == "Source 'Mac HD' on client ws-12 failed: error -530 (backup client not found)"
    )
    assert "Result: failed: error -530 (backup client not found)" in body.text


def test_footer_reports_history_throttling_and_rule() -> None:
    event = event_from_argv(
        ["EndScript", "Daily", "0", "-530", "backup client not found"],
        host="backup01",
        received=RECEIVED,
    )
    fields = dict(event.fields, streak=3)
    variables = event_variables(
        fields, {"status": "success", "streak": 5}, {"rule": "script failed", "suppressed": 2}
    )
    body = render_message("EndScript", "body", variables)
    assert "Status: failure (3 in a row)" in body.text
    assert "Previous EndScript: success (5 in a row)" in body.text
    assert "2 more like this were suppressed" in body.text
    assert "Rule: script failed" in body.text


@pytest.mark.parametrize("name", list(SAMPLE_ARGV))
def test_default_message_with_no_arguments(name: str) -> None:
    title, body = _render_default([name])
    assert title.error is None and body.error is None
    assert title.text.strip() and body.text.strip()
    assert "None" not in title.text + body.text
    assert "''" not in title.text  # no empty quoted names
    assert "Host: backup01" in body.text
    if EVENTS[name].min_args:
        assert f"Retrospect sent 0 of the {len(EVENTS[name].fields)} arguments" in body.text


def test_end_script_with_no_arguments_does_not_claim_success() -> None:
    title, _ = _render_default(["EndScript"])
    assert "succeeded" not in title.text
    assert "finished" in title.text


@pytest.mark.parametrize("name", list(SAMPLE_ARGV))
def test_default_message_with_garbage_numbers_and_dates(name: str) -> None:
    argv = [name]
    for spec in EVENTS[name].fields:
        argv.append("n/a" if spec.type not in ("str", "path") else "x")
    title, body = _render_default(argv)
    assert title.error is None and body.error is None
    assert "None" not in title.text + body.text
    assert "\n" not in title.text


def test_garbage_values_are_shown_as_received() -> None:
    argv = ["EndSource", "Daily", "ws-12/C:", "C:\\", "ws-12", "lots", "many", "long", "yesterday"]
    title, body = _render_default(argv)
    assert body.error is None
    assert "lots KB" in title.text and "many files" in title.text
    assert "Duration: long" in body.text
    assert "Source started: yesterday" in body.text


def test_unknown_event_shows_name_and_raw_args() -> None:
    assert message_file("NoSuchEvent") == "_unknown.j2"
    title, body = _render_default(["NoSuchEvent", "alpha", "{{ 7*7 }}"])
    assert title.error is None and body.error is None
    assert "NoSuchEvent" in title.text and "backup01" in title.text
    assert "1. alpha" in body.text
    assert "2. {{ 7*7 }}" in body.text
    bare_title, bare_body = _render_default(["NoSuchEvent"])
    assert "no arguments" in bare_body.text and "None" not in bare_body.text


def test_default_message_resolves_aliases() -> None:
    assert message_file("SchedStop") == "StopSched.j2"
    assert message_file("endscript") == "EndScript.j2"


@pytest.mark.parametrize(
    ("source", "variables", "error_part"),
    [
        ("total {{ 1/0 }}", {}, "ZeroDivisionError"),
        ("{{ x.__class__.__mro__ }}", {"x": "text"}, "SecurityError"),
        ("{{ missing.__class__ }}", {}, "SecurityError"),
        ("{{ missing + 1 }}", {}, "'missing' is undefined"),
        ("line one\n{{ oops", {}, "syntax error at line 2"),
        ("{{ kb | filesize(2) }}", {"kb": 1}, "TypeError"),
    ],
)
def test_template_error_keeps_the_message(source: str, variables: dict, error_part: str) -> None:
    rendered = render(source, variables)
    assert rendered.error is not None and error_part in rendered.error
    assert "\n" not in rendered.error
    assert rendered.text == f"{source}\n[template error: {rendered.error}]"


def test_title_error_fallback_stays_one_line() -> None:
    rendered = render_title("Backup {{ 1/0 }}", {})
    assert rendered.error is not None
    assert rendered.text == f"Backup {{{{ 1/0 }}}} [template error: {rendered.error}]"


def test_missing_variables_render_empty() -> None:
    rendered = render(
        "[{{ nope }}|{{ previous.status }}|{{ a.b.c }}|{{ none }}]", {"previous": {}, "none": None}
    )
    assert rendered == Rendered(text="[|||]", error=None)


def test_event_values_render_literally_in_defaults() -> None:
    argv = ["StartSource", "Daily", "{{ 7*7 }}/C:", "; rm -rf / $(id)", "{{ 7*7 }}", IFILE]
    title, body = _render_default(argv)
    assert title.error is None and body.error is None
    assert "{{ 7*7 }}" in title.text and "49" not in title.text
    assert "Client: {{ 7*7 }}" in body.text
    assert "Path: ; rm -rf / $(id)" in body.text
    assert render("{{ client }}", {"client": "{% for x in y %}"}).text == "{% for x in y %}"


def test_compile_cache_returns_the_same_template() -> None:
    source = "cached {{ script }} " + str(id(object()))
    first = TEMPLATES.compile(source)
    assert TEMPLATES.compile(source) is first
    assert TEMPLATES.compile(source + " ") is not first
    assert first.render(script="Daily").startswith("cached Daily")


def test_event_variables() -> None:
    event = event_from_argv(["EndSource", "Daily", "Mac HD"], host="h", received=RECEIVED)
    previous = {"status": "failure"}
    variables = event_variables(event.fields, previous, {"rule": "r", "suppressed": 4})
    assert variables["script"] == "Daily" and variables["event"] == "EndSource"
    assert variables["host"] == "h" and variables["weekday"] == "fri"
    assert variables["streak"] == 1  # the first of its streak when no history says otherwise
    assert variables["previous"] == previous and variables["previous"] is not previous
    assert variables["rule"] == "r" and variables["suppressed"] == 4
    none = event_variables(event.fields, {}, {})
    assert none["previous"] == {}
    kept = event_variables(dict(event.fields, streak=7), {}, {})
    assert kept["streak"] == 7
