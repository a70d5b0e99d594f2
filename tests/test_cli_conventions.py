"""Issue 8, item 4: the router's commands behave like a well-made CLI:
--version, --format json on every command that prints records, history's
filters, "did you mean" for an unknown event name, shell completion, exit
statuses in --help, and no traceback when the reader of a pipe goes away."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from helpers import HOST, ROUTER, Site

from router import __version__

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX shells and pipes")

RULES = (
    'target ops = "json://127.0.0.1:9/ops"\n'
    'rule "failed" on EndScript where status == "failure"\n  notify ops\n'
    'rule "digest" on EndSource where errors > 0\n  notify ops\n  digest 1h by client\n'
    'expect EndScript where script == "Daily" every 1d\n  notify ops\n'
)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    made = Site(tmp_path)
    made.write_rules(RULES)
    return made


def journal(site: Site, entries: list[tuple[str, dict, str]]) -> None:
    """Journal entries directly: (event, fields, received)."""
    from router.store import JournalEntry, Store

    with Store.open(site.state) as store:
        for name, fields, received in entries:
            store.record(
                JournalEntry(
                    datetime.fromisoformat(received),
                    name,
                    str(fields.get("script", name)),
                    str(fields.get("status", "info")),
                    1,
                    str(fields.get("host", "backup01")),
                    fields,
                    [],
                )
            )


def test_version_and_exit_statuses_in_help(site: Site) -> None:
    assert site.router("--version").out.strip() == f"retro-router {__version__}"
    help_text = site.router("--help").out
    assert "exit status:" in help_text
    for status in ("0 ", "1 ", "2 ", "141"):
        assert f"\n  {status}" in help_text


def test_every_command_that_prints_records_speaks_json(site: Site) -> None:
    failed = ["EndScript", "Daily", "0", "-530", "backup client not found"]
    assert site.handler(*failed).code == 0
    (site.cwd / "day.replay").write_text(" ".join(f'"{a}"' for a in failed) + "\n")
    for command in (
        ["check", "--format", "json"],
        ["events", "--format", "json"],
        ["events", "EndScript", "--format", "json"],
        ["test", "--format", "json", *failed],
        ["replay", "--format", "json", "day.replay"],
        ["history", "--format", "json"],
        ["outbox", "--format", "json"],
    ):
        done = site.router(*command)
        assert done.code == 0, (command, done.err)
        json.loads(done.out)  # the whole output is one JSON document
    report = json.loads(site.router("test", "--format", "json", *failed).out)
    assert report["event"]["fields"]["error_code"] == {"type": "int", "value": -530}
    assert [r["rule"] for r in report["rules"] if r["matched"]] == ["failed"]
    (expectation,) = report["expectations"]
    assert (expectation["rule"], expectation["key"]) == ("site.rules:7", f"{HOST} / Daily")
    assert set(expectation["next"]) == {"expected", "deadline"}  # a day after the event
    received = report["event"]["fields"]["received"]["value"]
    assert expectation["next"]["expected"][:10] > received[:10]
    assert report["notifications"][0]["urls"] == ["json://127.0.0.1:9/ops"]
    (row,) = json.loads(site.router("outbox", "--format", "json").out)
    assert (row["state"], row["url"], row["rule"]) == (
        "pending",
        "json://127.0.0.1:9/ops",
        "failed",
    )


def test_router_test_explains_a_digest_and_an_expectation(site: Site) -> None:
    end_source = ["EndSource", "Daily", "ws/C:", "C:", "ws", "1", "1", "1", "", "", ""]
    done = site.router("test", *end_source, "Set", "Normal", "C:", "2", "0", "successful")
    assert (
        "  digest: matched: its notification to ops waits in a digest (1 hour, key 'ws'),"
        " sent as one when the window closes"
    ) in done.out
    assert "notifications: none now" in done.out
    assert "(a dry run: nothing is sent, run, written or recorded)" in done.out
    done = site.router("test", "EndScript", "Daily", "0", "0", "successful")
    window = f"  site.rules:7: expects this event: its window ({HOST} / Daily) starts again"
    assert window in done.out


def test_history_filters(site: Site) -> None:
    journal(
        site,
        [
            ("EndScript", {"script": "Daily", "status": "failure"}, "2024-05-01T03:00:00"),
            (
                "EndSource",
                {"script": "Daily", "client": "ws-1", "status": "success"},
                "2024-05-01T03:10:00",
            ),
            (
                "EndScript",
                {"script": "Weekly", "status": "success", "host": "b2"},
                "2024-05-02T03:00:00",
            ),
        ],
    )

    def shown(*options: str) -> list[str]:
        done = site.router("history", "--format", "json", *options)
        assert done.code == 0, done.err
        return [f"{e['event']}/{e['fields'].get('script')}" for e in reversed(json.loads(done.out))]

    assert shown("--event", "EndScript") == ["EndScript/Daily", "EndScript/Weekly"]
    assert shown("--script", "Daily") == ["EndScript/Daily", "EndSource/Daily"]
    assert shown("--client", "ws-1") == ["EndSource/Daily"]
    assert shown("--host", "b2") == ["EndScript/Weekly"]
    assert shown("--status", "failure") == ["EndScript/Daily"]
    assert shown("--since", "2024-05-01 03:05") == ["EndSource/Daily", "EndScript/Weekly"]
    assert shown("--since", "1h") == []  # nothing in the last hour
    done = site.router("history", "--since", "yesterdayish")
    assert done.code == 2 and "neither a time" in done.err


@pytest.mark.parametrize("command", [["test", "EndScrpt", "x"], ["history", "--event", "EndScrpt"]])
def test_an_unknown_event_name_gets_did_you_mean(site: Site, command: list[str]) -> None:
    done = site.router(*command)
    assert done.code == 2
    assert "unknown event 'EndScrpt' (did you mean 'EndScript'?)" in done.err


def test_a_closed_pipe_ends_quietly(site: Site) -> None:
    journal(
        site, [("EndScript", {"script": f"S{n}" * 40}, "2024-05-01T03:00:00") for n in range(400)]
    )
    for command in (
        ["history", "--limit", "1000"],
        ["history", "--format", "json", "--limit", "1000"],
    ):
        process = subprocess.Popen(
            [*ROUTER, *command],
            env=site.env,
            cwd=site.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None and process.stdout.read(10)
        process.stdout.close()  # as head does after its first line
        _, err = process.communicate(timeout=60)
        assert process.returncode == 141 and err == b"", err


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion(site: Site, shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (CI installs it)")
    script = site.root / f"router.{shell}"
    script.write_text(site.router("completion", shell).out)
    if shell == "fish":
        probe = (
            f"source {script}; complete -C 'router te'; complete -C 'router history --event Fat'"
        )
    else:
        array = "emulate sh -c '{}'" if shell == "zsh" else "{}"
        call = 'COMP_WORDS=({}); COMP_CWORD={}; _router_complete; echo "${{COMPREPLY[*]}}"'
        probe = f"source {script}; " + "; ".join(
            array.format(call.format(words, len(words.split()) - 1))
            for words in ("router te", "router history --event Fat")
        )
    done = subprocess.run([shell, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()[0], done.stdout.splitlines()[-1]
    assert first.split("\t")[0].split()[0] == "test" or "test" in first.split()
    assert "FatalBackupError" in done.stdout and "FatalErrorBackup" in second
