"""``router events``: the catalog as admins writing rules read it.

Run as a real program (the ``router`` console script, or ``python -m
router.cli`` where it is not installed), from a foreign working directory.
The expected catalog is the one copied by hand in tests/test_events.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_events import SPEC_TABLE  # tests/ is on sys.path (pytest rootdir import mode)

from router.cli import main

NAMES = [name for _, name, _, _ in SPEC_TABLE]
FIELDS = {name: fields for _, name, fields, _ in SPEC_TABLE}
INTERVENTION = {name: effect for _, name, _, effect in SPEC_TABLE}
DERIVED = ["event", "status", "host", "received", "hour", "weekday", "args"]
_ROW = re.compile(r"^\s+(\d+)\.\s+(\w+)\s+(duration \(\w+\)|\w+)\s")


def router(*args, cwd):
    script = Path(sys.executable).parent / "router"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "router.cli"]
    result = subprocess.run(
        [*cmd, *args], capture_output=True, text=True, cwd=cwd, timeout=60, encoding="utf-8"
    )
    return result.returncode, result.stdout, result.stderr


def argument_rows(text):
    """(index, name, type label) for each line under "arguments, in order:"."""
    lines = text.splitlines()
    start = lines.index("  arguments, in order:") + 1
    rows = []
    for line in lines[start:]:
        match = _ROW.match(line)
        if not match:
            break
        rows.append((int(match[1]), match[2], match[3]))
    return rows


def expected_rows(name):
    return [
        (i, field, f"duration ({unit})" if unit else type_)
        for i, (field, type_, unit) in enumerate(FIELDS[name], 1)
    ]


def intervention_line(name):
    effect = INTERVENTION[name] or "none (this event passes no intervention file)"
    return f"  intervention: {effect}"


# ---------------------------------------------------------------------------
# as a subprocess
# ---------------------------------------------------------------------------


def test_router_events_lists_every_event_with_its_fields(tmp_path):
    code, out, err = router("events", cwd=tmp_path)
    assert (code, err) == (0, "")
    rows = [line.split(None, 2) for line in out.splitlines() if re.match(r"^\s+\d+\. ", line)]
    assert [(int(n.rstrip(".")), name) for n, name, _ in rows] == list(enumerate(NAMES, 1))
    for _, name, fields_text in rows:
        assert fields_text == ", ".join(f[0] for f in FIELDS[name])
    assert "aliases: SchedStop = StopSched, FatalErrorBackup = FatalBackupError" in out
    assert "router events NAME" in out
    for derived in DERIVED:
        assert derived in out.splitlines()[-1]


def test_router_events_endsource(tmp_path):
    code, out, err = router("events", "EndSource", cwd=tmp_path)
    assert (code, err) == (0, "")
    assert out.startswith("EndSource  (")
    assert argument_rows(out) == expected_rows("EndSource")
    assert argument_rows(out)[6] == (7, "duration", "duration (seconds)")
    assert "  derived: " + ", ".join([*DERIVED, "bytes"]) in out.splitlines()
    assert intervention_line("EndSource") in out.splitlines()


def test_router_events_resolves_an_alias(tmp_path):
    code, out, err = router("events", "FatalErrorBackup", cwd=tmp_path)
    assert (code, err) == (0, "")
    assert out.startswith("FatalBackupError  (")
    assert "  also called: FatalErrorBackup" in out.splitlines()
    assert argument_rows(out) == expected_rows("FatalBackupError")
    assert "  intervention: Retrospect's modal error dialog is suppressed" in out.splitlines()


def test_router_events_json_is_the_whole_catalog(tmp_path):
    code, out, err = router("events", "--format", "json", cwd=tmp_path)
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert isinstance(data, list)
    assert len(data) == 16
    assert [e["name"] for e in data] == NAMES
    assert [e["number"] for e in data] == list(range(1, 17))
    for entry in data:
        name = entry["name"]
        got = [(f["name"], f["type"], f.get("unit", "")) for f in entry["fields"]]
        assert got == FIELDS[name], name
        assert entry["intervention"] == INTERVENTION[name]
        assert [f["name"] for f in entry["derived"]] == DERIVED + (
            ["bytes"] if name == "EndSource" else []
        )
    by_name = {e["name"]: e for e in data}
    assert by_name["StopSched"]["aliases"] == ["SchedStop"]
    assert by_name["FatalBackupError"]["aliases"] == ["FatalErrorBackup"]
    assert by_name["NextExec"]["optional_from"] == 2
    assert by_name["MediaRequest"]["fields"][3]["unit"] == "minutes"


def test_router_events_one_event_as_json(tmp_path):
    code, out, err = router("events", "SchedStop", "--format", "json", cwd=tmp_path)
    assert (code, err) == (0, "")
    entry = json.loads(out)
    assert entry["name"] == "StopSched"
    assert [f["name"] for f in entry["fields"]] == ["script", "date", "intervention_file"]
    assert entry["intervention"] == "the script keeps running past its stop time"


def test_router_events_unknown_name_exits_2(tmp_path):
    code, out, err = router("events", "Nope", cwd=tmp_path)
    assert code == 2
    assert out == ""
    assert "unknown event 'Nope'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "typo, meant",
    [
        ("EndSorce", "EndSource"),
        ("FatalErrorBakup", "FatalBackupError"),
        ("nextexe", "NextExec"),
        ("TimedOutMedia", "TimedOutMediaRequest"),
    ],
)
def test_router_events_typo_gets_a_suggestion(typo, meant, tmp_path):
    code, out, err = router("events", typo, cwd=tmp_path)
    assert code == 2
    assert out == ""
    assert f"unknown event {typo!r} (did you mean '{meant}'?)" in err


def test_router_events_bad_format_is_a_usage_error(tmp_path):
    code, out, err = router("events", "--format", "xml", cwd=tmp_path)
    assert code == 2
    assert out == ""
    assert "invalid choice" in err


# ---------------------------------------------------------------------------
# every event, in-process (cheap enough for all 16)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_router_events_name_shows_fields_types_and_intervention(name, capsys):
    assert main(["events", name]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"{name}  (")
    assert argument_rows(out) == expected_rows(name)
    assert intervention_line(name) in out.splitlines()


@pytest.mark.parametrize(
    "given, canonical",
    [("schedstop", "StopSched"), ("ENDSOURCE", "EndSource"), ("anomalyalert", "AnomalyAlert")],
)
def test_router_events_name_ignores_case(given, canonical, capsys):
    assert main(["events", given]) == 0
    assert capsys.readouterr().out.startswith(f"{canonical}  (")


@pytest.mark.parametrize("name", NAMES)
def test_router_events_name_json(name, capsys):
    assert main(["events", name, "--format", "json"]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry["name"] == name
    assert [(f["name"], f["type"], f.get("unit", "")) for f in entry["fields"]] == FIELDS[name]
