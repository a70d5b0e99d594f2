"""The event catalog (router/catalog.py) and argv -> Event (router/events.py),
checked against Retrospect's events as docs/events.md describes them.

The expected tables below are written out by hand rather than read from
``router.catalog``, so a slip in the catalog shows up as a failing test
(tests/test_docs.py holds docs/events.md to the catalog in turn).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from router.catalog import (
    ALIASES,
    CATALOG,
    EVENTS,
    canonical_name,
    catalog_json,
    describe_catalog,
    describe_event,
    fields_of,
)
from router.events import Event, compute_status, decode_arg, event_from_argv, parse_date

REPO = Path(__file__).resolve().parent.parent
HANDLER = REPO / "retroeventhandler"
HOST = "backup-mac"
#: A Friday afternoon.
RECEIVED = datetime(2017, 2, 10, 15, 39, 27)
IFILE = "/Library/Application Support/Retrospect/intervention.txt"

# ---------------------------------------------------------------------------
# The events: number, name, fields (name, type, unit) in argument order,
# and the effect of an intervention.
# ---------------------------------------------------------------------------

_I = ("intervention_file", "path", "")
_DATE = ("date", "datetime", "")
_SCRIPT = ("script", "str", "")
_SRC = (("source", "str", ""), ("source_path", "str", ""), ("client", "str", ""))
_MEDIA = (
    ("backup_set", "str", ""),
    ("member", "str", ""),
    ("known", "bool", ""),
    ("waited", "duration", "minutes"),
    _I,
)

SPEC_TABLE = [
    (1, "StartApp", [_DATE, ("autolaunched", "bool", ""), _I], "Retrospect does not launch"),
    (2, "EndApp", [_DATE], None),
    (3, "StartBackupServer", [_DATE, _I], "Proactive Backup does not start"),
    (4, "StopBackupServer", [_DATE], None),
    (5, "StartScript", [_SCRIPT, _DATE, _I], "the script does not start"),
    (
        6,
        "EndScript",
        [_SCRIPT, ("errors", "int", ""), ("error_code", "int", ""), ("error_message", "str", "")],
        None,
    ),
    (7, "StartSource", [_SCRIPT, *_SRC, _I], "this source is skipped"),
    (
        8,
        "EndSource",
        [
            _SCRIPT,
            *_SRC,
            ("kb", "int", ""),
            ("files", "int", ""),
            ("duration", "duration", "seconds"),
            ("source_start", "datetime", ""),
            ("source_end", "datetime", ""),
            ("script_start", "datetime", ""),
            ("backup_set", "str", ""),
            ("action", "str", ""),
            ("parent_volume", "str", ""),
            ("errors", "int", ""),
            ("error_code", "int", ""),
            ("error_message", "str", ""),
        ],
        None,
    ),
    (9, "MediaRequest", list(_MEDIA), "the media request fails"),
    (10, "TimedOutMediaRequest", list(_MEDIA), "the timeout is reset: Retrospect keeps waiting"),
    (
        11,
        "ScriptCheckFailed",
        [
            _SCRIPT,
            _DATE,
            ("reason", "str", ""),
            ("error_code", "int", ""),
            ("error_message", "str", ""),
        ],
        None,
    ),
    (12, "NextExec", [_SCRIPT, _DATE, _I], "none known"),
    (13, "StopSched", [_SCRIPT, _DATE, _I], "the script keeps running past its stop time"),
    (
        14,
        "PasswordEntry",
        [
            ("subject", "str", ""),
            ("attempts", "int", ""),
            ("error_code", "int", ""),
            ("error_message", "str", ""),
        ],
        None,
    ),
    (
        15,
        "FatalBackupError",
        [
            _SCRIPT,
            ("reason", "str", ""),
            ("error_code", "int", ""),
            ("error_message", "str", ""),
            ("error_zone", "str", ""),
            _I,
        ],
        "Retrospect's modal error dialog is suppressed",
    ),
    (
        16,
        "AnomalyAlert",
        [
            _SCRIPT,
            *_SRC,
            ("selector", "str", ""),
            ("watched_files", "int", ""),
            ("changed_files", "int", ""),
            ("changed_percent", "float", ""),
            _I,
        ],
        "this source is skipped",
    ),
]
SPEC = {name: fields for _, name, fields, _ in SPEC_TABLE}
DERIVED = ["event", "status", "host", "received", "hour", "weekday", "args"]


def _ids(table):
    """The event name of each row, for test ids."""
    return [next(cell for cell in row if isinstance(cell, str)) for row in table]


# ---------------------------------------------------------------------------
# One Retrospect-shaped argv per event, with the typed value of each field in
# argument order and the status it derives (docs/events.md, "Status").
# ---------------------------------------------------------------------------

ARGV_TABLE = [
    (
        "StartApp",
        ["2/10/2017 15:39", "true", IFILE],
        [datetime(2017, 2, 10, 15, 39), True, IFILE],
        "info",
    ),
    ("EndApp", ["2/10/2017 18:02"], [datetime(2017, 2, 10, 18, 2)], "info"),
    (
        "StartBackupServer",
        ["11/21/2016 18:06", IFILE],
        [datetime(2016, 11, 21, 18, 6), IFILE],
        "info",
    ),
    ("StopBackupServer", ["2/10/2016 12:01 AM"], [datetime(2016, 2, 10, 0, 1)], "info"),
    (
        "StartScript",
        ["Nightly Backup", "12/14/99 16:32 PM", IFILE],
        ["Nightly Backup", datetime(1999, 12, 14, 16, 32), IFILE],
        "info",
    ),
    (
        "EndScript",
        ["Nightly Backup", "0", "0", "successful"],
        ["Nightly Backup", 0, 0, "successful"],
        "success",
    ),
    (
        "StartSource",
        ["Nightly Backup", "My Computer/Mac HD", "/", "My Computer", IFILE],
        ["Nightly Backup", "My Computer/Mac HD", "/", "My Computer", IFILE],
        "info",
    ),
    (
        "EndSource",
        [
            "Nightly Backup",
            "My Computer/Mac HD",
            "/",
            "My Computer",
            "1048576",
            "12345",
            "754",
            "2/10/2017 15:39",
            "2/10/2017 15:52",
            "2/10/2017 15:30",
            "Backup Set A",
            "Normal",
            "Mac HD",
            "0",
            "0",
            "successful",
        ],
        [
            "Nightly Backup",
            "My Computer/Mac HD",
            "/",
            "My Computer",
            1048576,
            12345,
            timedelta(seconds=754),
            datetime(2017, 2, 10, 15, 39),
            datetime(2017, 2, 10, 15, 52),
            datetime(2017, 2, 10, 15, 30),
            "Backup Set A",
            "Normal",
            "Mac HD",
            0,
            0,
            "successful",
        ],
        "success",
    ),
    (
        "MediaRequest",
        ["Backup Set A", "1-Backup Set A", "true", "5", IFILE],
        ["Backup Set A", "1-Backup Set A", True, timedelta(minutes=5), IFILE],
        "info",
    ),
    (
        "TimedOutMediaRequest",
        ["Tape Set B", "2-Tape Set B", "false", "60", IFILE],
        ["Tape Set B", "2-Tape Set B", False, timedelta(hours=1), IFILE],
        "warning",
    ),
    (
        "ScriptCheckFailed",
        [
            "Nightly Backup",
            "2/11/2017 1:00 AM",
            "backup client not found",
            "-530",
            "backup client not found",
        ],
        [
            "Nightly Backup",
            datetime(2017, 2, 11, 1, 0),
            "backup client not found",
            -530,
            "backup client not found",
        ],
        "warning",
    ),
    (
        "NextExec",
        ["Nightly Backup", "2/11/2017 1:00 AM", IFILE],
        ["Nightly Backup", datetime(2017, 2, 11, 1, 0), IFILE],
        "info",
    ),
    (
        "StopSched",
        ["Nightly Backup", "2/11/2017 6:00 AM", IFILE],
        ["Nightly Backup", datetime(2017, 2, 11, 6, 0), IFILE],
        "info",
    ),
    (
        "PasswordEntry",
        ["Backup Set A", "1", "0", "successful"],
        ["Backup Set A", 1, 0, "successful"],
        "info",
    ),
    (
        "FatalBackupError",
        [
            "Nightly Backup",
            "can't access backup set",
            "-102",
            "trouble communicating",
            "Backup Set A",
            IFILE,
        ],
        [
            "Nightly Backup",
            "can't access backup set",
            -102,
            "trouble communicating",
            "Backup Set A",
            IFILE,
        ],
        "failure",
    ),
    (
        "AnomalyAlert",
        [
            "Nightly Backup",
            "laptop-jane/Macintosh HD",
            "/",
            "laptop-jane",
            "All Files",
            "120000",
            "48000",
            "40.0",
            IFILE,
        ],
        [
            "Nightly Backup",
            "laptop-jane/Macintosh HD",
            "/",
            "laptop-jane",
            "All Files",
            120000,
            48000,
            40.0,
            IFILE,
        ],
        "warning",
    ),
]
ARGS_OF = {name: args for name, args, _, _ in ARGV_TABLE}

_PYTYPE = {
    "str": str,
    "path": str,
    "int": int,
    "float": float,
    "bool": bool,
    "datetime": datetime,
    "duration": timedelta,
}


def make(name, args, **kwargs):
    kwargs.setdefault("host", HOST)
    kwargs.setdefault("received", RECEIVED)
    return event_from_argv([name, *args], **kwargs)


def test_both_tables_cover_the_16_events_in_order():
    assert [row[1] for row in SPEC_TABLE] == [row[0] for row in ARGV_TABLE]
    assert len(SPEC_TABLE) == 16


# ---------------------------------------------------------------------------
# The catalog
# ---------------------------------------------------------------------------


def test_catalog_has_the_16_events_numbered_as_events_md():
    assert [(spec.number, spec.name) for spec in CATALOG] == [
        (number, name) for number, name, _, _ in SPEC_TABLE
    ]
    assert list(EVENTS) == [name for _, name, _, _ in SPEC_TABLE]
    assert all(EVENTS[spec.name] is spec for spec in CATALOG)


@pytest.mark.parametrize("number, name, fields, intervention", SPEC_TABLE, ids=_ids(SPEC_TABLE))
def test_catalog_fields_types_and_order_match_events_md(number, name, fields, intervention):
    spec = EVENTS[name]
    assert [(f.name, f.type, f.unit) for f in spec.fields] == fields
    assert spec.field_names == tuple(f[0] for f in fields)


@pytest.mark.parametrize("number, name, fields, intervention", SPEC_TABLE, ids=_ids(SPEC_TABLE))
def test_catalog_intervention_effect_matches_events_md(number, name, fields, intervention):
    spec = EVENTS[name]
    assert spec.intervention == intervention
    assert spec.has_intervention_file == ("intervention_file" in [f[0] for f in fields])


def test_only_next_exec_has_an_optional_argument():
    optional = {spec.name: spec.min_args for spec in CATALOG if spec.min_args != len(spec.fields)}
    assert optional == {"NextExec": 2}


@pytest.mark.parametrize("number, name, fields, intervention", SPEC_TABLE, ids=_ids(SPEC_TABLE))
def test_fields_of_is_own_fields_then_derived_then_history(number, name, fields, intervention):
    result = fields_of(name)
    own = [f[0] for f in fields]
    derived = DERIVED + (["bytes"] if name == "EndSource" else [])
    assert list(result) == own + derived + ["streak"]
    assert [(result[f].type, result[f].unit) for f in own] == [(t, u) for _, t, u in fields]
    assert result["received"].type == "datetime"
    assert result["hour"].type == "int"
    assert result["args"].type == "list"


def test_fields_of_bytes_is_an_endsource_int():
    assert fields_of("EndSource")["bytes"].type == "int"
    assert [spec.name for spec in CATALOG if "bytes" in fields_of(spec.name)] == ["EndSource"]


# ---------------------------------------------------------------------------
# Aliases
# ---------------------------------------------------------------------------


def test_aliases_are_exactly_the_two_of_events_md():
    assert ALIASES == {"SchedStop": "StopSched", "FatalErrorBackup": "FatalBackupError"}


@pytest.mark.parametrize(
    "given, canonical",
    [
        ("SchedStop", "StopSched"),
        ("FatalErrorBackup", "FatalBackupError"),
        ("StopSched", "StopSched"),
        ("FatalBackupError", "FatalBackupError"),
        ("schedstop", "StopSched"),
        ("FATALERRORBACKUP", "FatalBackupError"),
        ("endsource", "EndSource"),
        ("Nope", None),
        ("", None),
        ("End Source", None),
    ],
)
def test_canonical_name(given, canonical):
    assert canonical_name(given) == canonical


def test_sched_stop_alias_is_routed_as_stop_sched():
    event = make("SchedStop", ["Nightly Backup", "2/11/2017 6:00 AM", IFILE])
    assert (event.name, event.known, event.warnings) == ("StopSched", True, [])
    assert event.fields["event"] == "StopSched"
    assert event.fields["date"] == datetime(2017, 2, 11, 6, 0)
    assert event.fields["intervention_file"] == IFILE


def test_fatal_error_backup_alias_is_a_fatal_backup_error_failure():
    event = make("FatalErrorBackup", ARGS_OF["FatalBackupError"])
    assert (event.name, event.known, event.warnings) == ("FatalBackupError", True, [])
    assert event.fields["event"] == "FatalBackupError"
    assert event.fields["status"] == "failure"
    assert event.fields["error_code"] == -102
    assert event.fields["error_zone"] == "Backup Set A"


# ---------------------------------------------------------------------------
# Every event with Retrospect-shaped arguments
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, args, values, status", ARGV_TABLE, ids=_ids(ARGV_TABLE))
def test_event_fields_are_typed_in_events_md_order(name, args, values, status):
    event = make(name, args)
    assert isinstance(event, Event)
    assert event.name == name
    assert event.known is True
    assert event.warnings == []
    spec_fields = SPEC[name]
    assert len(values) == len(spec_fields) == len(args)
    own = {k: v for k, v in event.fields.items() if k not in DERIVED and k != "bytes"}
    assert list(own) == [f[0] for f in spec_fields]
    for (field_name, type_, _), expected in zip(spec_fields, values):
        value = event.fields[field_name]
        assert type(value) is _PYTYPE[type_], field_name
        assert value == expected, field_name
        assert field_name in event
        assert event.get(field_name) == expected


@pytest.mark.parametrize("name, args, values, status", ARGV_TABLE, ids=_ids(ARGV_TABLE))
def test_event_derived_fields(name, args, values, status):
    event = make(name, args)
    fields = event.fields
    assert fields["event"] == name
    assert fields["status"] == status
    assert fields["host"] == HOST
    assert fields["received"] == RECEIVED
    assert fields["hour"] == 15
    assert fields["weekday"] == "fri"
    assert fields["args"] == args
    assert event.args == args
    assert all(type(a) is str for a in fields["args"])
    if name == "EndSource":
        assert fields["bytes"] == 1048576 * 1024
    else:
        assert "bytes" not in event


def test_endsource_bytes_is_kb_times_1024():
    args = list(ARGS_OF["EndSource"])
    args[4] = "3"
    assert make("EndSource", args).fields["bytes"] == 3072
    args[4] = "0"
    assert make("EndSource", args).fields["bytes"] == 0


def test_args_are_the_raw_strings_not_the_typed_values():
    event = make("EndSource", ARGS_OF["EndSource"])
    assert event.fields["args"][4] == "1048576"
    assert event.fields["args"][6] == "754"
    assert event.fields["args"][7] == "2/10/2017 15:39"
    # A copy: changing the field does not change the event's own record.
    event.fields["args"].append("x")
    assert event.args == ARGS_OF["EndSource"]


def test_string_fields_are_kept_verbatim():
    args = ["  Nightly Backup ", "My Computer/Mac HD", "/Volumes/Mac HD/", "My Computer", IFILE]
    event = make("StartSource", args)
    assert event.fields["script"] == "  Nightly Backup "
    assert event.fields["source_path"] == "/Volumes/Mac HD/"


@pytest.mark.parametrize(
    "name, args, field_name, expected",
    [
        ("MediaRequest", ["Set", "1-Set", "TRUE", "0", IFILE], "known", True),
        ("MediaRequest", ["Set", "1-Set", "False", "0", IFILE], "known", False),
        ("StartApp", ["2/10/2017 15:39", "yes", IFILE], "autolaunched", True),
        ("StartApp", ["2/10/2017 15:39", "0", IFILE], "autolaunched", False),
        ("MediaRequest", ["Set", "1-Set", "true", "2.5", IFILE], "waited", timedelta(seconds=150)),
        ("MediaRequest", ["Set", "1-Set", "true", "0", IFILE], "waited", timedelta(0)),
        ("AnomalyAlert", [*ARGS_OF["AnomalyAlert"][:7], "12.5%", IFILE], "changed_percent", 12.5),
        ("AnomalyAlert", [*ARGS_OF["AnomalyAlert"][:7], "12,5", IFILE], "changed_percent", 12.5),
        ("AnomalyAlert", [*ARGS_OF["AnomalyAlert"][:7], "100", IFILE], "changed_percent", 100.0),
        ("EndScript", ["Nightly Backup", " 3 ", "-1017", "insufficient permissions"], "errors", 3),
        (
            "EndScript",
            ["Nightly Backup", "0", "-1017", "insufficient permissions"],
            "error_code",
            -1017,
        ),
    ],
)
def test_value_spellings(name, args, field_name, expected):
    event = make(name, args)
    assert event.warnings == []
    assert event.fields[field_name] == expected
    assert type(event.fields[field_name]) is type(expected)


def test_endsource_duration_is_seconds_and_waited_is_minutes():
    source = make("EndSource", ARGS_OF["EndSource"]).fields["duration"]
    media = make("MediaRequest", ["Set", "1-Set", "true", "754", IFILE]).fields["waited"]
    assert source == timedelta(minutes=12, seconds=34)
    assert media == timedelta(hours=12, minutes=34)


# ---------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------


def _endsource(errors, code, message):
    args = list(ARGS_OF["EndSource"])
    args[13:16] = [errors, code, message]
    return args


STATUS_TABLE = [
    ("EndScript", ["Nightly Backup", "0", "0", "successful"], "success"),
    ("EndScript", ["Nightly Backup", "2", "0", "successful"], "warning"),
    ("EndScript", ["Nightly Backup", "0", "-530", "backup client not found"], "failure"),
    ("EndScript", ["Nightly Backup", "4", "-1017", "insufficient permissions"], "failure"),
    ("EndSource", _endsource("0", "0", "successful"), "success"),
    ("EndSource", _endsource("1", "0", "successful"), "warning"),
    ("EndSource", _endsource("0", "-102", "trouble communicating"), "failure"),
    ("EndSource", _endsource("7", "-530", "backup client not found"), "failure"),
    ("FatalBackupError", ARGS_OF["FatalBackupError"], "failure"),
    (
        "FatalBackupError",
        ["Nightly Backup", "stopped", "0", "successful", "engine", IFILE],
        "failure",
    ),
    ("ScriptCheckFailed", ARGS_OF["ScriptCheckFailed"], "warning"),
    ("TimedOutMediaRequest", ARGS_OF["TimedOutMediaRequest"], "warning"),
    ("AnomalyAlert", ARGS_OF["AnomalyAlert"], "warning"),
    ("PasswordEntry", ["Backup Set A", "3", "-1017", "insufficient permissions"], "warning"),
    ("PasswordEntry", ["Backup Set A", "1", "0", "successful"], "info"),
    ("MediaRequest", ARGS_OF["MediaRequest"], "info"),
    ("StartScript", ARGS_OF["StartScript"], "info"),
    ("StartSource", ARGS_OF["StartSource"], "info"),
    ("NextExec", ARGS_OF["NextExec"], "info"),
]


@pytest.mark.parametrize(
    "name, args, status",
    STATUS_TABLE,
    ids=[f"{name}-{status}-{i}" for i, (name, _, status) in enumerate(STATUS_TABLE)],
)
def test_status_rules_of_events_md(name, args, status):
    event = make(name, args)
    assert event.warnings == []
    assert event.fields["status"] == status


@pytest.mark.parametrize(
    "name, values, status",
    [
        ("EndScript", {"errors": 0, "error_code": 0}, "success"),
        ("EndScript", {"errors": 1, "error_code": 0}, "warning"),
        ("EndScript", {"errors": 1, "error_code": -530}, "failure"),
        ("EndSource", {"errors": 0, "error_code": 5}, "failure"),
        # No usable error code: the message decides, and without one it is a warning.
        ("EndScript", {"errors": 0, "error_code": "x", "error_message": "disk full"}, "failure"),
        ("EndScript", {"errors": 0, "error_code": "x", "error_message": "successful"}, "success"),
        ("EndScript", {"errors": 0}, "warning"),
        ("EndSource", {}, "warning"),
        ("FatalBackupError", {}, "failure"),
        ("ScriptCheckFailed", {"error_code": 0}, "warning"),
        ("TimedOutMediaRequest", {}, "warning"),
        ("AnomalyAlert", {}, "warning"),
        ("PasswordEntry", {"error_code": -1017}, "warning"),
        ("PasswordEntry", {"error_code": 0}, "info"),
        ("StartApp", {}, "info"),
        ("StopSched", {"error_code": -530}, "info"),
        ("SomethingNew", {"error_code": -530}, "info"),
    ],
)
def test_compute_status(name, values, status):
    assert compute_status(name, values) == status


# ---------------------------------------------------------------------------
# host, received, hour, weekday
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "received, hour, weekday",
    [
        (datetime(2017, 2, 6, 0, 0), 0, "mon"),
        (datetime(2017, 2, 7, 1, 30), 1, "tue"),
        (datetime(2017, 2, 8, 9, 59), 9, "wed"),
        (datetime(2017, 2, 9, 12, 0), 12, "thu"),
        (datetime(2017, 2, 10, 15, 39), 15, "fri"),
        (datetime(2017, 2, 11, 22, 5), 22, "sat"),
        (datetime(2017, 2, 12, 23, 59, 59), 23, "sun"),
    ],
)
def test_hour_and_weekday_come_from_received(received, hour, weekday):
    event = make("EndApp", ["2/10/2017 18:02"], received=received)
    assert event.fields["received"] == received
    assert (event.fields["hour"], event.fields["weekday"]) == (hour, weekday)


def test_received_defaults_to_now_and_host_to_this_machine():
    before = datetime.now()
    event = event_from_argv(["EndApp", "2/10/2017 18:02"])
    after = datetime.now()
    assert before <= event.fields["received"] <= after
    assert event.fields["hour"] == event.fields["received"].hour
    assert event.fields["host"] == socket.gethostname()


# ---------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, order, expected",
    [
        # The samples of docs/events.md ("Dates"), month-first by default
        ("2/10/2017 15:39", "mdy", datetime(2017, 2, 10, 15, 39)),
        ("11/21/2016 18:06", "mdy", datetime(2016, 11, 21, 18, 6)),
        ("2/10/2016 12:01 AM", "mdy", datetime(2016, 2, 10, 0, 1)),
        ("12/14/99 16:32 PM", "mdy", datetime(1999, 12, 14, 16, 32)),
        # the setting decides only the ambiguous case
        ("2/10/2017 15:39", "dmy", datetime(2017, 10, 2, 15, 39)),
        ("11/21/2016 18:06", "dmy", datetime(2016, 11, 21, 18, 6)),
        # day-first parses when it is the only reading, under either order
        ("21/11/2016 18:06", "mdy", datetime(2016, 11, 21, 18, 6)),
        ("21/11/2016 18:06", "dmy", datetime(2016, 11, 21, 18, 6)),
        ("21.11.2016 18:06", "mdy", datetime(2016, 11, 21, 18, 6)),
        ("10.02.2017 15:39", "dmy", datetime(2017, 2, 10, 15, 39)),
        ("13-01-2017 08:00", "mdy", datetime(2017, 1, 13, 8, 0)),
        # ISO, under any order
        ("2016-11-21 18:06", "mdy", datetime(2016, 11, 21, 18, 6)),
        ("2016-11-21 18:06", "dmy", datetime(2016, 11, 21, 18, 6)),
        ("2016-11-21T18:06:30", "mdy", datetime(2016, 11, 21, 18, 6, 30)),
        ("2016-11-21T18:06:30.250", "mdy", datetime(2016, 11, 21, 18, 6, 30)),
        ("2016-11-21", "dmy", datetime(2016, 11, 21)),
        ("2016/11/21 18:06", "mdy", datetime(2016, 11, 21, 18, 6)),
        # year-first with a two-digit year only under ymd
        ("16/11/21", "ymd", datetime(2016, 11, 21)),
        ("16/11/21", "mdy", datetime(2021, 11, 16)),
        ("2/10/2017 15:39", "ymd", datetime(2017, 2, 10, 15, 39)),
        # 12-hour clock
        ("2/10/2016 12:01 PM", "mdy", datetime(2016, 2, 10, 12, 1)),
        ("2/10/2016 1:05 PM", "mdy", datetime(2016, 2, 10, 13, 5)),
        ("2/10/2016 11:59 pm", "mdy", datetime(2016, 2, 10, 23, 59)),
        ("2/10/2016 9:15 a.m.", "mdy", datetime(2016, 2, 10, 9, 15)),
        ("2/10/2016 9:15AM", "mdy", datetime(2016, 2, 10, 9, 15)),
        ("2/10/2016, 12:01\u202fAM", "mdy", datetime(2016, 2, 10, 0, 1)),  # macOS 13+ ICU
        # a 24-hour clock with a stray suffix is left alone
        ("12/14/99 16:32 PM", "dmy", datetime(1999, 12, 14, 16, 32)),
        ("12/14/99 0:32 AM", "mdy", datetime(1999, 12, 14, 0, 32)),
        # two-digit years: POSIX pivot at 69
        ("2/10/17 15:39", "mdy", datetime(2017, 2, 10, 15, 39)),
        ("1/1/00 00:00", "mdy", datetime(2000, 1, 1)),
        ("1/1/68", "mdy", datetime(2068, 1, 1)),
        ("1/1/69", "mdy", datetime(1969, 1, 1)),
        # seconds, no time, stray whitespace
        ("2/10/2017 15:39:05", "mdy", datetime(2017, 2, 10, 15, 39, 5)),
        ("2/10/2017", "mdy", datetime(2017, 2, 10)),
        ("  2/10/2017 15:39 ", "mdy", datetime(2017, 2, 10, 15, 39)),
    ],
)
def test_parse_date(text, order, expected):
    assert parse_date(text, order) == expected


def test_parse_date_defaults_to_month_first():
    assert parse_date("2/10/2017 15:39") == datetime(2017, 2, 10, 15, 39)
    assert parse_date("3/4/2017") == datetime(2017, 3, 4)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "yesterday",
        "Friday, February 10, 2017",
        "13/13/2016 18:06",  # neither order gives a month
        "2/30/2017 10:00",  # no 30 February, either way round
        "2/10/2017 25:00",
        "2/10/2017 15:60",
        "2/10/2017 15",
        "2/10",
        "2016-13-01 10:00",
        "2016-11-21 18:06 UTC",
        "2/10/2017 15:39 XM",
        "0/0/0000",
    ],
)
def test_parse_date_returns_none_when_nothing_fits(text):
    assert parse_date(text) is None
    assert parse_date(text, "dmy") is None


@pytest.mark.parametrize(
    "order, expected",
    [
        ("mdy", datetime(2017, 2, 10, 15, 39)),
        ("dmy", datetime(2017, 10, 2, 15, 39)),
    ],
)
def test_date_order_reaches_every_date_field(order, expected):
    event = make("EndSource", ARGS_OF["EndSource"], date_order=order)
    assert event.fields["source_start"] == expected
    assert (
        make("NextExec", ["Nightly", "2/10/2017 15:39"], date_order=order).fields["date"]
        == expected
    )


def test_unparseable_date_kept_as_raw_string_with_a_warning():
    event = make("StartScript", ["Nightly Backup", "Freitag, 10. Februar 2017", IFILE])
    assert event.fields["date"] == "Freitag, 10. Februar 2017"
    assert event.fields["script"] == "Nightly Backup"
    assert event.fields["intervention_file"] == IFILE
    assert len(event.warnings) == 1
    assert "date" in event.warnings[0]
    assert "Freitag, 10. Februar 2017" in event.warnings[0]
    assert event.known is True


# ---------------------------------------------------------------------------
# The robustness contract
# ---------------------------------------------------------------------------


def _run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, timeout=60, **kwargs)


def _bare_env():
    """What Retrospect gives the handler: little more than a PATH (here one
    that finds the interpreter running the tests first)."""
    return {"PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/bin", "/bin"])}


def _console_script(name):
    script = Path(sys.executable).parent / name
    if not script.exists():
        pytest.skip(f"{name} console script not installed beside {sys.executable}")
    return script


def test_handler_executable_is_executable():
    assert HANDLER.is_file()
    assert os.access(HANDLER, os.X_OK)


@pytest.mark.parametrize("which", ["checkout", "console-script"])
def test_no_arguments_prints_usage_and_exits_0(which, tmp_path):
    program = HANDLER if which == "checkout" else _console_script("retroeventhandler")
    result = _run([str(program)], cwd=tmp_path, env=_bare_env())
    assert result.returncode == 0
    assert result.stderr == b""
    out = result.stdout.decode()
    assert out.lower().startswith("usage:")
    assert "retroeventhandler EVENT" in out


@pytest.mark.parametrize("which", ["checkout", "console-script"])
def test_handler_with_invalid_utf8_arguments_exits_0_without_traceback(which, tmp_path):
    program = HANDLER if which == "checkout" else _console_script("retroeventhandler")
    argv = [
        str(program).encode(),
        b"EndSource",
        "Sauvegarde réseau".encode("cp1252"),
        b"Caf\xe9 Server/Disque \xe0 moi",
        b"C:\\",
        b"Caf\xe9 Server",
        b"1024",
        b"10",
        b"\xff\xfe",
        b"10/02/2017 15:39",
    ]
    result = _run(argv, cwd=tmp_path, env=_bare_env())
    assert result.returncode == 0
    assert b"Traceback" not in result.stderr
    assert result.stderr == b""


def test_real_argv_with_cp1252_bytes_decodes_to_replacement_characters(tmp_path):
    """Python hands undecodable argv bytes over as surrogate escapes; the
    event gets U+FFFD in their place, and printing it works."""
    code = (
        "import sys\n"
        "from router.events import event_from_argv\n"
        "e = event_from_argv(sys.argv[1:], host='h')\n"
        "print(e.fields['source']); print(e.fields['args'][1]); print(e.warnings)\n"
    )
    env = dict(_bare_env(), PYTHONUTF8="1", PYTHONIOENCODING="utf-8", PYTHONPATH=str(REPO))
    argv = [sys.executable.encode(), b"-c", code.encode(), b"StartSource", b"Nightly"]
    argv += [b"Caf\xe9 Server/Mac HD", b"/", b"Caf\xe9 Server", IFILE.encode()]
    result = _run(argv, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode("utf-8").splitlines() == [
        "Caf\ufffd Server/Mac HD",
        "Caf\ufffd Server/Mac HD",
        "[]",
    ]


def test_empty_argv_is_left_to_the_handler():
    # The handler prints its usage before building an event.
    with pytest.raises(ValueError):
        event_from_argv([])


@pytest.mark.parametrize(
    "argv",
    [
        ["BackupVerified", "Nightly Backup", "2/10/2017 15:39", "ok"],
        ["RetroUpdate"],
        ["End Source", "x"],
        ["", "x", "y"],
    ],
)
def test_unknown_event_is_accepted_with_its_args(argv):
    event = make(argv[0], argv[1:])
    assert event.known is False
    assert event.name == argv[0]
    assert event.args == argv[1:]
    assert event.fields["args"] == argv[1:]
    assert event.fields["event"] == argv[0]
    assert event.fields["status"] == "info"
    assert event.fields["host"] == HOST
    assert event.fields["weekday"] == "fri"
    assert set(event.fields) == set(DERIVED)
    assert len(event.warnings) == 1
    assert repr(argv[0]) in event.warnings[0]


def test_unknown_event_does_not_borrow_fields_from_a_known_one():
    # Arguments of an unknown event are never mapped onto names.
    event = make("EndScriptV2", ["Nightly Backup", "0", "-530", "backup client not found"])
    assert "error_code" not in event
    assert event.fields["status"] == "info"


@pytest.mark.parametrize("name, args, values, status", ARGV_TABLE, ids=_ids(ARGV_TABLE))
def test_one_argument_short_leaves_the_last_field_absent_with_a_warning(name, args, values, status):
    spec_fields = [f[0] for f in SPEC[name]]
    event = make(name, args[:-1])
    missing = spec_fields[-1]
    assert missing not in event
    assert event.get(missing) is None
    for field_name, expected in zip(spec_fields[:-1], values[:-1]):
        assert event.fields[field_name] == expected
    assert event.args == args[:-1]
    if name == "NextExec":
        assert event.warnings == []  # its intervention file is optional
    else:
        assert len(event.warnings) == 1
        assert missing in event.warnings[0]


@pytest.mark.parametrize("name", [row[0] for row in ARGV_TABLE])
def test_no_arguments_at_all_for_a_known_event(name):
    event = make(name, [])
    assert event.known is True
    assert set(event.fields) == set(DERIVED)
    assert event.fields["args"] == []
    assert len(event.warnings) == 1
    assert all(f[0] in event.warnings[0] for f in SPEC[name][: EVENTS[name].min_args])


def test_missing_fields_listed_in_the_warning():
    event = make("EndScript", ["Nightly Backup"])
    assert event.fields["script"] == "Nightly Backup"
    for absent in ("errors", "error_code", "error_message"):
        assert absent not in event
    assert len(event.warnings) == 1
    assert "errors, error_code, error_message" in event.warnings[0]


def test_endsource_without_kb_has_no_bytes():
    event = make("EndSource", ARGS_OF["EndSource"][:4])
    assert "kb" not in event
    assert "bytes" not in event
    assert len(event.warnings) == 1


def test_next_exec_without_its_intervention_file_has_no_warning():
    event = make("NextExec", ["Nightly Backup", "2/11/2017 1:00 AM"])
    assert event.warnings == []
    assert event.fields["date"] == datetime(2017, 2, 11, 1, 0)
    assert "intervention_file" not in event


def test_next_exec_without_its_date_is_short():
    event = make("NextExec", ["Nightly Backup"])
    assert "date" not in event
    assert len(event.warnings) == 1
    assert "date" in event.warnings[0]
    assert "intervention_file" not in event.warnings[0]


@pytest.mark.parametrize("name, args, values, status", ARGV_TABLE, ids=_ids(ARGV_TABLE))
def test_extra_arguments_are_kept_in_args_with_a_warning(name, args, values, status):
    extra = ["extra one", "2/10/2017 15:39"]
    event = make(name, [*args, *extra])
    assert event.args == [*args, *extra]
    assert event.fields["args"] == [*args, *extra]
    assert event.fields["status"] == status
    for (field_name, _, _), expected in zip(SPEC[name], values):
        assert event.fields[field_name] == expected
    own = [k for k in event.fields if k not in DERIVED and k != "bytes"]
    assert own == [f[0] for f in SPEC[name]]
    assert len(event.warnings) == 1
    assert "extra" in event.warnings[0]


def _with(name, index, raw):
    args = list(ARGS_OF[name])
    args[index] = raw
    return args


BAD_VALUES = [
    ("EndScript", 1, "errors", "none"),
    ("EndScript", 2, "error_code", "-530x"),
    ("EndScript", 2, "error_code", "0.0"),
    ("EndSource", 4, "kb", "1,048,576"),
    ("EndSource", 4, "kb", "9" * 19),  # beyond a 64-bit integer
    ("EndSource", 4, "kb", "1" * 4300),  # Python would refuse to print kb * 1024
    ("EndSource", 5, "files", "-" + "9" * 19),
    ("EndSource", 5, "files", ""),
    ("EndSource", 6, "duration", "12 min"),
    ("EndSource", 6, "duration", "inf"),
    ("EndSource", 6, "duration", "nan"),
    ("EndSource", 6, "duration", "1e20"),
    ("EndSource", 7, "source_start", "gestern"),
    ("EndSource", 9, "script_start", "2/10/2017 25:61"),
    ("MediaRequest", 2, "known", "maybe"),
    ("MediaRequest", 3, "waited", "five"),
    ("TimedOutMediaRequest", 3, "waited", "-inf"),
    ("AnomalyAlert", 7, "changed_percent", "forty"),
    ("AnomalyAlert", 7, "changed_percent", "nan"),
    ("AnomalyAlert", 5, "watched_files", "120 000"),
    ("PasswordEntry", 1, "attempts", "three"),
    ("StartApp", 0, "date", "Friday"),
    ("StartApp", 1, "autolaunched", ""),
]


@pytest.mark.parametrize(
    "name, index, field_name, raw",
    BAD_VALUES,
    ids=[f"{n}-{f}-{r[:24]!r}" for n, _, f, r in BAD_VALUES],
)
def test_value_that_does_not_parse_is_kept_raw_with_a_warning(name, index, field_name, raw):
    args = _with(name, index, raw)
    event = make(name, args)
    assert event.fields[field_name] == raw
    assert type(event.fields[field_name]) is str
    assert event.args == args
    assert len(event.warnings) == 1
    assert field_name in event.warnings[0]
    assert repr(raw) in event.warnings[0]
    # the other fields are unaffected
    _, _, values, _ = next(row for row in ARGV_TABLE if row[0] == name)
    for i, ((other, _, _), expected) in enumerate(zip(SPEC[name], values)):
        if i != index:
            assert event.fields[other] == expected


def test_an_int_of_18_digits_is_still_an_int():
    event = make("EndSource", _with("EndSource", 4, "9" * 18))
    assert event.fields["kb"] == int("9" * 18)
    assert event.fields["bytes"] == int("9" * 18) * 1024
    assert event.warnings == []


def test_several_bad_values_give_one_warning_each():
    args = _with("EndSource", 4, "lots")
    args[6] = "long"
    args[8] = "later"
    event = make("EndSource", args)
    assert [w.split(":")[0] for w in event.warnings] == ["kb", "duration", "source_end"]
    assert "bytes" not in event


@pytest.mark.parametrize(
    "arg, expected",
    [
        (b"Caf\xe9", "Caf\ufffd"),  # cp1252 bytes
        ("Café".encode("cp1252"), "Caf\ufffd"),
        (b"Caf\xe9".decode("utf-8", "surrogateescape"), "Caf\ufffd"),  # like os.fsdecode
        ("Café".encode(), "Café"),
        ("Café", "Café"),
        ("", ""),
        (b"", ""),
        (b"\x81\x8d\x8f\x90\x9d", "\ufffd" * 5),  # undefined in cp1252 too
        (bytearray(b"Mac HD\xa0"), "Mac HD\ufffd"),
        ("\ud800", "\ufffd"),  # an unpaired UTF-16 half, as Windows can pass
        ("Caf\udce9\udfff", "Caf\ufffd\ufffd"),
        ("日本語のバックアップ", "日本語のバックアップ"),
    ],
)
def test_decode_arg_replaces_what_is_not_utf8(arg, expected):
    result = decode_arg(arg)
    assert result == expected
    result.encode("utf-8")  # always writable to a UTF-8 journal


def test_event_from_bytes_argv_decodes_with_replacement():
    argv = [b"StartSource", "Sauvegarde réseau".encode("cp1252"), b"Caf\xe9 Server/Mac HD"]
    argv += [b"/", b"Caf\xe9 Server", IFILE.encode()]
    event = event_from_argv(argv, host=HOST, received=RECEIVED)
    assert event.name == "StartSource"
    assert event.warnings == []
    assert event.fields["script"] == "Sauvegarde r\ufffdseau"
    assert event.fields["source"] == "Caf\ufffd Server/Mac HD"
    assert event.fields["intervention_file"] == IFILE
    assert event.args[1] == "Caf\ufffd Server/Mac HD"
    json.dumps(event.fields, default=str).encode("utf-8")


def test_event_from_surrogate_escaped_argv_decodes_with_replacement():
    argv = [
        "EndScript",
        b"Sauvegarde r\xe9seau".decode("utf-8", "surrogateescape"),
        "0",
        "-1017",
        b"acc\xe8s refus\xe9".decode("utf-8", "surrogateescape"),
    ]
    event = event_from_argv(argv, host=HOST, received=RECEIVED)
    assert event.fields["script"] == "Sauvegarde r\ufffdseau"
    assert event.fields["error_message"] == "acc\ufffds refus\ufffd"
    assert event.fields["status"] == "failure"
    assert all("\ufffd" in a for a in (event.args[0], event.args[3]))


def test_undecodable_event_name_is_an_unknown_event():
    event = event_from_argv([b"EndSour\xe7e", b"x"], host=HOST, received=RECEIVED)
    assert event.known is False
    assert event.name == "EndSour\ufffde"
    assert event.args == ["x"]


@pytest.mark.parametrize(
    "argv",
    [
        ["EndSource", "\x00", "", " ", "-", "\udcff" * 3, "9" * 5000, "-0", "+1", "1e999"],
        ["MediaRequest", "", "", "", "", "", "", ""],
        ["AnomalyAlert", *(["-1e400"] * 9)],
        ["StartApp", "99/99/9999 99:99 PM", "TRUE ", "\n"],
        ["EndSource", *(["\ud800"] * 16)],
    ],
)
def test_garbage_never_raises_and_every_argument_is_kept(argv):
    event = make(argv[0], argv[1:])
    assert event.known is True
    assert len(event.args) == len(argv) - 1
    assert event.warnings
    for value in event.fields["args"]:
        value.encode("utf-8")


# ---------------------------------------------------------------------------
# Describing the catalog (the text and JSON ``router events`` prints)
# ---------------------------------------------------------------------------


def test_catalog_json_round_trips_and_matches_events_md():
    data = json.loads(json.dumps(catalog_json()))
    assert len(data) == 16
    for entry, (number, name, fields, intervention) in zip(data, SPEC_TABLE):
        assert (entry["number"], entry["name"]) == (number, name)
        assert [(f["name"], f["type"], f.get("unit", "")) for f in entry["fields"]] == fields
        assert entry["intervention"] == intervention
        derived = [f["name"] for f in entry["derived"]]
        assert derived == DERIVED + (["bytes"] if name == "EndSource" else [])
        assert entry["optional_from"] == (2 if name == "NextExec" else None)
        assert all(f["doc"] for f in entry["fields"])
    aliases = {e["name"]: e["aliases"] for e in data if e["aliases"]}
    assert aliases == {"StopSched": ["SchedStop"], "FatalBackupError": ["FatalErrorBackup"]}


@pytest.mark.parametrize("number, name, fields, intervention", SPEC_TABLE, ids=_ids(SPEC_TABLE))
def test_describe_event_lists_fields_in_order_with_types(number, name, fields, intervention):
    text = describe_event(EVENTS[name])
    lines = text.splitlines()
    assert lines[0].startswith(name + "  (")
    start = lines.index("  arguments, in order:") + 1
    rows = lines[start : start + len(fields)]
    for index, (row, (field_name, type_, unit)) in enumerate(zip(rows, fields), 1):
        label = f"duration ({unit})" if unit else type_
        parts = row.split()
        assert parts[0] == f"{index}."
        assert parts[1] == field_name
        assert " ".join(parts[2 : 2 + len(label.split())]) == label
    assert lines[start + len(fields)].startswith("  derived: ")
    expected = intervention or "none (this event passes no intervention file)"
    assert f"  intervention: {expected}" in lines


def test_describe_event_marks_optional_and_aliases():
    next_exec = describe_event(EVENTS["NextExec"]).splitlines()
    assert [line for line in next_exec if "(optional)" in line] == [
        line for line in next_exec if "intervention_file" in line
    ]
    assert "also called: FatalErrorBackup" in describe_event(EVENTS["FatalBackupError"])
    assert "also called: SchedStop" in describe_event(EVENTS["StopSched"])
    assert "also called" not in describe_event(EVENTS["EndSource"])
    derived = [
        line for line in describe_event(EVENTS["EndSource"]).splitlines() if "derived:" in line
    ]
    assert derived == ["  derived: event, status, host, received, hour, weekday, args, bytes"]


def test_describe_catalog_has_every_event_with_its_fields():
    lines = describe_catalog().splitlines()
    for number, name, fields, _ in SPEC_TABLE:
        row = next(line for line in lines if line.split()[1:2] == [name])
        assert row.split()[0] == f"{number}."
        assert row.split(None, 2)[2] == ", ".join(f[0] for f in fields)
    assert "aliases: SchedStop = StopSched, FatalErrorBackup = FatalBackupError" in lines
