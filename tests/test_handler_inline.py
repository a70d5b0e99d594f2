"""The inline handler's promises that the session tests do not pin down:
a broken template never loses its notification, and a broken rule edit never
replaces the last good ruleset, through the real executable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import write_rules

REPO = Path(__file__).resolve().parent.parent


def run_handler(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "ROUTER_RULES_DIR": str(tmp_path / "rules"),
        "ROUTER_STATE_DIR": str(tmp_path / "state"),
    }
    return subprocess.run(
        [sys.executable, str(REPO / "retroeventhandler"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def history(tmp_path: Path) -> list:
    done = subprocess.run(
        [sys.executable, "-m", "router.cli", "history", "--format", "json"],
        env={**os.environ, "ROUTER_STATE_DIR": str(tmp_path / "state")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def test_a_template_error_at_run_time_still_sends_the_notification(tmp_path, http_sink) -> None:
    write_rules(
        tmp_path / "rules" / "ops.rules",
        f'target ops = "json://{http_sink.address}/hook"\n'
        "on EndScript\n"
        '  notify ops title "{{ script }}: {{ errors / 0 }}" body "{{ error_message }}"\n',
    )
    done = run_handler(tmp_path, "EndScript", "Daily", "3", "0", "successful")
    assert done.returncode == 0 and done.stderr == ""
    (request,) = http_sink.wait_for(1)
    title = request.json["title"]
    assert "{{ script }}: {{ errors / 0 }}" in title  # the raw template goes out...
    assert "division by zero" in title  # ...with the error
    assert request.json["message"] == "successful"  # the body rendered normally
    (entry,) = history(tmp_path)
    assert any("division by zero" in error for error in entry["errors"])  # and it is journaled


def test_a_broken_edit_keeps_the_last_good_rules_and_says_why(tmp_path, http_sink) -> None:
    rules = write_rules(
        tmp_path / "rules" / "ops.rules",
        f'target ops = "json://{http_sink.address}/hook"\n'
        'on EndScript notify ops title "good rules: {{ script }}"\n',
    )
    assert run_handler(tmp_path, "EndScript", "Daily", "0", "0", "successful").returncode == 0
    http_sink.wait_for(1)

    rules.write_text(rules.read_text() + "on EndScript where errors > and notify ops\n")
    done = run_handler(tmp_path, "EndScript", "Weekly", "0", "0", "successful")
    assert done.returncode == 0
    assert "last good ruleset stays in force" in done.stderr
    assert "ops.rules:3" in done.stderr
    requests = http_sink.wait_for(2)
    assert requests[1].json["title"] == "good rules: Weekly"
    broken_entry = history(tmp_path)[0]
    assert any("ops.rules:3" in error for error in broken_entry["errors"])

    rules.write_text(
        f'target ops = "json://{http_sink.address}/hook"\n'
        'on EndScript notify ops title "fixed rules: {{ script }}"\n'
    )
    done = run_handler(tmp_path, "EndScript", "Monthly", "0", "0", "successful")
    assert done.returncode == 0 and done.stderr == ""
    assert http_sink.wait_for(3)[2].json["title"] == "fixed rules: Monthly"
