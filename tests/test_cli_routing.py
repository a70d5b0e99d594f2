"""``router test``, ``router replay``, ``router history`` and ``router outbox``
as an admin runs them: real subprocesses, real rule files, a real state
directory filled by the real ``retroeventhandler``, real HTTP deliveries to
the ``http_sink`` fixture.

The dry runs (test, replay) must show everything and do nothing: no
notification arrives, no program runs, no file is written, the state
directory is not created or changed. Each of those tests also runs the same
thing for real (the handler), so a dry run that stopped being dry, or a
control that stopped working, fails the test.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

import pytest
from helpers import HOST, router_command
from sinks import HttpSink

REPO = Path(__file__).resolve().parent.parent
HANDLER = REPO / "retroeventhandler"
PASSWORD = "hunter2pass"
DAILY_FAILED = ["EndScript", "Daily Backup", "0", "-530", "backup client not found"]


class Site:
    """A router installation in a temporary directory: router.toml, a rules
    directory, and a state directory that does not exist until a handler runs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rules = root / "rules"
        self.state = root / "state"
        self.rules.mkdir()
        self.rules.chmod(0o755)
        self.config = self.write_config()

    def write_config(self, name: str = "router.toml", delivery: str = "") -> Path:
        path = self.root / name
        path.write_text(
            'rules_dir = "rules"\nstate_dir = "state"\n'
            "[delivery]\nconnect_timeout = 2\nread_timeout = 2\ndeadline = 10\n" + delivery,
            encoding="utf-8",
        )
        return path

    def write_rules(self, text: str, name: str = "site.rules") -> Path:
        path = self.rules / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        path.chmod(0o644)
        return path

    def env(self, config: Optional[Path], extra: Optional[dict[str, str]]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
        env.pop("HOOK_URL", None)
        env["ROUTER_CONFIG"] = str(config or self.config)
        env.update(extra or {})
        return env

    def router(
        self,
        *args: str,
        env: Optional[dict[str, str]] = None,
        config: Optional[Path] = None,
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*router_command(), *args],
            cwd=self.root,
            env=self.env(config, env),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def handler(
        self,
        *args: str,
        env: Optional[dict[str, str]] = None,
        config: Optional[Path] = None,
    ) -> subprocess.CompletedProcess:
        """The real ./retroeventhandler, started as Retrospect does (cwd elsewhere)."""
        return subprocess.run(
            [sys.executable, str(HANDLER), *args],
            cwd="/",
            env=self.env(config, env),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def snapshot(self) -> dict[str, tuple[int, int, str]]:
        """Every file in the state directory: mode, mtime (ns) and content hash."""
        found = {}
        for path in sorted(self.state.rglob("*")):
            info = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            found[str(path.relative_to(self.state))] = (info.st_mode, info.st_mtime_ns, digest)
        return found


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def section(output: str, name: str) -> list[str]:
    """The indented lines under ``name:`` in ``router test``'s report."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(name + ":"))
    body = []
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            break
        body.append(line)
    return body


# ---------------------------------------------------------------------------
# router test
# ---------------------------------------------------------------------------

TEST_RULES = """\
target hook = "json://admin:{password}@{sink}/hook"

rule "daily failed"
on EndScript where script matches "Daily*" and status == "failure"
  notify hook title "{{{{ script }}}} failed: {{{{ error_message }}}}" type warning
  run "{python}" "-c" "import pathlib; pathlib.Path(r'{marker}').write_text('ran')" timeout 30s
      or log "the marker could not be written"
  log "{{{{ script }}}} {{{{ status }}}}" to "{custom_log}"

rule "nightly only"
on EndScript where script matches "Nightly*"
  notify hook

rule "errors and failure"
on EndScript where errors > 0 and status == "failure"
  notify hook

rule "skip sql"
on StartSource where client == "SQL01"
  abort "{{{{ client }}}} is skipped"
"""


def write_test_rules(site: Site, sink: HttpSink) -> tuple[Path, Path]:
    marker = site.root / "marker.txt"
    custom_log = site.root / "custom.log"
    site.write_rules(
        TEST_RULES.format(
            password=PASSWORD,
            sink=sink.address,
            python=sys.executable,
            marker=marker,
            custom_log=custom_log,
        )
    )
    return marker, custom_log


def test_router_test_shows_everything_and_does_nothing(site: Site, http_sink: HttpSink) -> None:
    marker, custom_log = write_test_rules(site, http_sink)
    done = site.router("test", *DAILY_FAILED)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert PASSWORD not in out + done.stderr

    # The parsed event, each field with its type.
    assert out.splitlines()[:2] == [
        "(a dry run: nothing is sent, run, written or recorded)",
        "event: EndScript",
    ]
    fields = {
        line.split()[0]: line.split(None, 2)[1:]
        for line in section(out, "event")
        if not line.strip().startswith("warning")
    }
    assert fields["script"] == ["str", "'Daily Backup'"]
    assert fields["errors"] == ["int", "0"]
    assert fields["error_code"] == ["int", "-530"]
    assert fields["error_message"] == ["str", "'backup client not found'"]
    assert fields["status"] == ["str", "'failure'"]
    assert fields["received"][0] == "datetime"
    assert fields["weekday"][0] == "str"
    assert fields["streak"] == ["int", "1"]

    # Every rule written for this event: matched, or the first condition that failed.
    assert section(out, "rules") == [
        "  daily failed: matched",
        '  nightly only: no: script matches "Nightly*"',
        "  errors and failure: no: errors > 0",
    ]

    # The rendered notification, its target masked.
    notes = section(out, "notifications")
    assert notes[0] == (
        f"  to hook (json://admin:****@{http_sink.address}/hook) [warning, text] from daily failed"
    )
    assert notes[1] == "    title: Daily Backup failed: backup client not found"
    assert notes[2].startswith("    body:  ")

    # The steps that would run, in order, with the run's fallback.
    steps = section(out, "steps")
    assert steps[0].startswith(f"  run {sys.executable} -c ")
    assert steps[0].endswith("(timeout 30 s) from daily failed")
    assert (
        steps[1] == "    or log to the event log: the marker could not be written from daily failed"
    )
    assert steps[2] == f"  log to {custom_log}: Daily Backup failure from daily failed"

    # ... and none of it happened.
    assert http_sink.requests == []
    assert not marker.exists()
    assert not custom_log.exists()
    assert not site.state.exists()

    # The control: the real handler does all of it with the same rules.
    real = site.handler(*DAILY_FAILED)
    assert real.returncode == 0, real.stderr
    (request,) = http_sink.wait_for(1)
    assert request.json["title"] == "Daily Backup failed: backup client not found"
    assert marker.read_text(encoding="utf-8") == "ran"
    assert custom_log.read_text(encoding="utf-8") == "Daily Backup failure\n"
    assert site.state.is_dir()


def test_router_test_reads_history_but_leaves_the_state_untouched(
    site: Site, http_sink: HttpSink
) -> None:
    marker, custom_log = write_test_rules(site, http_sink)
    assert site.handler(*DAILY_FAILED).returncode == 0
    http_sink.wait_for(1)
    marker.unlink()
    before = site.snapshot()
    assert "router.sqlite3" in before

    done = site.router("test", *DAILY_FAILED)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^  streak\s+int\s+2$", done.stdout, re.M)  # the journal was read
    assert site.snapshot() == before
    assert len(http_sink.requests) == 1
    assert not marker.exists()
    assert custom_log.read_text(encoding="utf-8") == "Daily Backup failure\n"  # one line only


def test_router_test_shows_an_abort_without_writing_the_intervention_file(
    site: Site, http_sink: HttpSink
) -> None:
    write_test_rules(site, http_sink)
    intervention = site.root / "intervention"
    event = ["StartSource", "Daily Backup", "SQL01/Data", "D:\\", "SQL01", str(intervention)]
    done = site.router("test", *event)
    assert done.returncode == 0, done.stderr
    assert section(done.stdout, "rules") == ["  skip sql: matched"]
    assert "notifications: none" in done.stdout
    assert section(done.stdout, "steps") == [
        f"  abort: 'SQL01 is skipped' into {intervention} (exit status 1) from skip sql"
    ]
    assert not intervention.exists()
    assert not site.state.exists()

    real = site.handler(*event)
    assert real.returncode == 1
    assert intervention.read_text(encoding="utf-8") == "SQL01 is skipped\n"


def test_router_test_explains_an_event_no_rule_is_written_for(site: Site) -> None:
    site.write_rules('on EndScript\n  log "x"\n')
    done = site.router("test", "PasswordEntry", "Backup Set A", "2", "-1017")
    assert done.returncode == 0, done.stderr
    assert section(done.stdout, "rules") == ["  (no rule is written for this event)"]
    assert re.search(r"^  attempts\s+int\s+2$", done.stdout, re.M)
    assert "  warning: " in done.stdout  # error_message is missing
    assert "notifications: none" in done.stdout
    assert "steps: none" in done.stdout


def test_router_test_refuses_broken_rules(site: Site) -> None:
    site.write_rules('on EndScript where script_name == "Daily"\n  log "x"\n')
    done = site.router("test", *DAILY_FAILED)
    assert done.returncode == 1
    assert "unknown field 'script_name'" in done.stderr
    assert "router test: the rules have errors" in done.stderr
    assert done.stdout == ""


def test_router_test_takes_rules_from_the_command_line(site: Site, tmp_path: Path) -> None:
    site.write_rules('on EndScript\n  log "from the rules dir"\n')
    other = tmp_path / "other.rules"
    other.write_text('rule "elsewhere"\non EndScript\n  log "elsewhere"\n', encoding="utf-8")
    other.chmod(0o644)
    done = site.router("test", "--rules", str(other), *DAILY_FAILED)
    assert done.returncode == 0, done.stderr
    assert section(done.stdout, "rules") == ["  elsewhere: matched"]


# ---------------------------------------------------------------------------
# router replay
# ---------------------------------------------------------------------------

REPLAY_RULES = """\
target hook = "json://admin:{password}@{sink}/hook"

rule "failed"
on EndScript where status == "failure"
  notify hook
  throttle 1h by script

rule "again"
on EndScript where status == "failure" and streak >= 2
  log "{{{{ script }}}} failed {{{{ streak }}}} times"

rule "recovered"
on EndScript where status == "success" and previous.status == "failure"
  log "{{{{ script }}}} recovered after {{{{ previous.streak }}}}"

rule "night"
on StartScript where script == "Nightly" and hour < 6
  log "night"
"""

MAC_HANDLER = "/Library/Application Support/Retrospect/RetroEventHandler"
FAILED_ARGS = '"Daily Backup" 0 -530 "backup client not found"'
REPLAY_FILE = f"""\
# Retrospect's invocations, as a handler that logged its argv saw them.
"{MAC_HANDLER}" StartScript "Daily Backup" "3/1/2024 1:00" /tmp/i

@2024-03-01T01:00:00 EndScript {FAILED_ARGS}
@2024-03-01T01:30:00 '{MAC_HANDLER}' EndScript {FAILED_ARGS}
   # an indented comment
@2024-03-01T02:10:00 EndScript {FAILED_ARGS}
@2024-03-01T02:20:00 EndScript "Weekly Backup" 0 -1017 "insufficient permissions"
@2024-03-01T03:00:00 EndScript "Daily Backup" 0 0 successful
@2024-03-01T03:05:00 StartScript Nightly "3/1/2024 3:05" /tmp/i
@2024-03-01T09:05:00 StartScript Nightly "3/1/2024 9:05" /tmp/i
"""

REPLAY_OUTPUT = [
    "line 2: StartScript: -",
    "line 4: EndScript: failed",
    "line 5: EndScript: again",
    "line 7: EndScript: failed, again",
    "line 8: EndScript: failed",
    "line 9: EndScript: recovered",
    "line 10: StartScript: night",
    "line 11: StartScript: -",
]

EXPECT = """\
-
failed
again
failed, again
failed
recovered
night
-
"""


@pytest.fixture
def replay_site(site: Site, http_sink: HttpSink) -> Site:
    site.write_rules(REPLAY_RULES.format(password=PASSWORD, sink=http_sink.address))
    (site.root / "events.txt").write_text(REPLAY_FILE, encoding="utf-8")
    return site


def test_replay_prints_the_rules_each_line_fires(replay_site: Site, http_sink: HttpSink) -> None:
    done = replay_site.router("replay", "events.txt")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == REPLAY_OUTPUT
    # A dry run: nothing was sent, logged or kept.
    assert http_sink.requests == []
    assert not replay_site.state.exists()
    assert list(replay_site.root.glob("*.log")) == []


def test_replay_expect_passes_and_a_wrong_expectation_fails(replay_site: Site) -> None:
    expect = replay_site.root / "events.expect"
    expect.write_text("# the rules each line fires\n\n" + EXPECT, encoding="utf-8")
    done = replay_site.router("replay", "events.txt", "--expect", str(expect))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "EXPECTED" not in done.stdout

    # Line 5 (the second failure within the hour) is throttled: expecting it to notify is wrong.
    wrong = EXPECT.replace("\nagain\n", "\nfailed\n", 1)
    expect.write_text(wrong, encoding="utf-8")
    done = replay_site.router("replay", "events.txt", "--expect", str(expect))
    assert done.returncode == 1
    assert "line 5: EndScript: again   EXPECTED: failed" in done.stdout.splitlines()
    assert [line for line in done.stdout.splitlines() if "EXPECTED" in line] == [
        "line 5: EndScript: again   EXPECTED: failed"
    ]
    assert "1 line(s) differ" in done.stderr

    # An expectation file with a line too few is an error, not a pass.
    expect.write_text("\n".join(EXPECT.splitlines()[:-1]) + "\n")
    done = replay_site.router("replay", "events.txt", "--expect", str(expect))
    assert done.returncode == 1
    assert "has 7 lines for 8 invocations" in done.stderr


def test_replay_save_expect_writes_a_file_that_then_passes(replay_site: Site) -> None:
    saved = replay_site.root / "saved.expect"
    done = replay_site.router("replay", "events.txt", "--save-expect", str(saved))
    assert done.returncode == 0, done.stderr
    assert saved.read_text(encoding="utf-8") == EXPECT
    done = replay_site.router("replay", "events.txt", "--expect", str(saved))
    assert done.returncode == 0, done.stdout + done.stderr


def test_replay_with_broken_rules_or_a_missing_file(replay_site: Site) -> None:
    done = replay_site.router("replay", "no-such-file.txt")
    assert done.returncode == 2
    assert "no-such-file.txt" in done.stderr
    replay_site.write_rules('on EndScrip\n  log "x"\n', name="zz-broken.rules")
    done = replay_site.router("replay", "events.txt")
    assert done.returncode == 1
    assert "unknown event 'EndScrip'" in done.stderr


# ---------------------------------------------------------------------------
# router history and router outbox, on a state directory the handler filled
# ---------------------------------------------------------------------------

OUTBOX_RULES = """\
target hook = env("HOOK_URL")

rule "script failed"
on EndScript where status == "failure"
  notify hook title "{{ script }} failed"
"""


def outbox_lines(site: Site, *args: str) -> list[str]:
    done = site.router("outbox", *args)
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    return done.stdout.splitlines()


def test_history_and_outbox_on_a_real_state_dir(site: Site, http_sink: HttpSink) -> None:
    site.write_rules(OUTBOX_RULES)
    # Every row gets an age past max_age at its first failure: it goes straight to the dead letters.
    impatient = site.write_config("impatient.toml", "max_age = 0.000001\n")
    assert site.router("history").stdout.startswith("no journal yet in ")
    assert site.router("outbox").stdout.startswith("no outbox yet in ")

    hook = {"HOOK_URL": f"json://admin:{PASSWORD}@{http_sink.address}/hook"}
    masked = f"json://admin:****@{http_sink.address}/hook"
    http_sink.stop()  # its port is now closed: deliveries fail with "connection refused"

    assert site.handler(*DAILY_FAILED, env=hook).returncode == 0
    weekly = ["EndScript", "Weekly Backup", "0", "-1017", "insufficient permissions"]
    assert site.handler(*weekly, env=hook, config=impatient).returncode == 0
    start = ["StartScript", "Daily Backup", "3/1/2024 1:00", str(site.root / "i")]
    assert site.handler(*start, env=hook).returncode == 0

    # history: oldest first, with the rules that acted.
    done = site.router("history")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("#")]
    assert [re.sub(r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", " TIME ", line) for line in lines] == [
        f"#1 TIME EndScript [failure] {HOST} / Daily Backup: rules script failed",
        f"#2 TIME EndScript [failure] {HOST} / Weekly Backup: rules script failed",
        f"#3 TIME StartScript [info] {HOST} / Daily Backup: rules -",
    ]
    assert PASSWORD not in done.stdout
    only = site.router("history", "--event", "StartScript").stdout.splitlines()
    assert [line.split()[0] for line in only if line.startswith("#")] == ["#3"]
    latest = site.router("history", "--limit", "1").stdout.splitlines()
    assert [line.split()[0] for line in latest if line.startswith("#")] == ["#3"]
    rows = json.loads(site.router("history", "--format", "json").stdout)
    assert [row["id"] for row in rows] == [3, 2, 1]
    assert rows[2]["fields"]["error_code"] == -530
    assert rows[2]["args"] == DAILY_FAILED[1:]
    assert [d["label"] for d in rows[2]["decisions"] if d.get("matched")] == ["script failed"]

    # outbox: one row waiting for its next try, one dead letter; secrets masked.
    lines = outbox_lines(site)
    assert lines[0].startswith("#1 [pending, next try ")
    assert lines[0].endswith(f"] hook {masked} attempts 1")
    assert lines[1] == "    Daily Backup failed  (rule script failed, event #1)"
    assert lines[2].startswith("    last error: ")
    assert lines[3] == f"#2 [dead] hook {masked} attempts 1"
    assert lines[4] == "    Weekly Backup failed  (rule script failed, event #2)"
    assert outbox_lines(site, "--dead")[0] == f"#2 [dead] hook {masked} attempts 1"
    assert not any(line.startswith("#1") for line in outbox_lines(site, "--dead"))

    # A retry while the target is still down fails and counts the attempt.
    done = site.router("outbox", "retry", "1")
    assert done.returncode == 1
    assert done.stdout.strip() == "retried 1: 0 sent, 1 failed, 0 dead, 0 left for later"
    assert outbox_lines(site)[0].endswith("attempts 2")

    # The target is back (same port): retry the dead letter, then everything.
    http_sink.start()
    done = site.router("outbox", "retry", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "retried 1: 1 sent, 0 failed, 0 dead, 0 left for later"
    (first,) = http_sink.wait_for(1)
    assert first.json["title"] == "Weekly Backup failed"
    assert outbox_lines(site, "--dead") == ["no dead letters"]

    done = site.router("outbox", "retry", "--all")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "retried 1: 1 sent, 0 failed, 0 dead, 0 left for later"
    assert http_sink.wait_for(2)[1].json["title"] == "Daily Backup failed"
    assert [line for line in outbox_lines(site) if line.startswith("#")] == [
        f"#1 [sent] hook {masked} attempts 3",
        f"#2 [sent] hook {masked} attempts 2",
    ]

    # Nothing left: --all has nothing to do, a sent row cannot be retried, usage errors.
    done = site.router("outbox", "retry", "--all")
    assert (done.returncode, done.stdout.strip()) == (0, "nothing to retry")
    done = site.router("outbox", "retry", "1")
    assert (done.returncode, done.stdout.strip()) == (1, "no pending or dead row #1")
    assert site.router("outbox", "retry").returncode == 2
    assert site.router("outbox", "retry", "1", "--all").returncode == 2
    assert len(http_sink.requests) == 2


#: What an old or hand-edited journal row may hold, column by column (issue
#: 7, item 11: a steps report without ``rule`` broke ``router history``
#: until the row expired).
ODD_COLUMNS = [
    ("steps", '[{"kind": "run", "outcome": "ok"}]'),
    ("steps", "not json at all"),
    ("steps", '{"kind": "log"}'),
    ("steps", '[1, "x", null, {}]'),
    ("steps", "5"),
    ("decisions", '[{"label": "r"}, {"matched": true}, null, "odd"]'),
    ("decisions", "nope"),
    ("warnings", '{"a": 1}'),
    ("errors", "broken ["),
    ("fields", "nope"),
    ("fields", '{"when": {"$datetime": "yesterday"}, "took": {"$seconds": "x"}}'),
    ("args", "7"),
    ("received", "the day before"),
]


def test_the_journal_keeps_the_rules_that_matched_and_counts_the_rest(site: Site) -> None:
    """A journal row does not grow with the ruleset: 300 rules that do not
    match are one count, and router test still explains each of them."""
    others = "".join(
        f'rule "other {i}" on EndScript where script == "Script {i}" log "{{{{ event }}}}"\n'
        for i in range(300)
    )
    site.write_rules(f'rule "failed" on EndScript where errors > 0 log "failed"\n{others}')
    assert site.handler("EndScript", "Daily Backup", "2", "0", "ok").returncode == 0

    (row,) = json.loads(site.router("history", "--format", "json").stdout)
    assert row["decisions"] == [
        {"label": "failed", "matched": True, "reason": None},
        {"unmatched": 300},
    ]
    assert len(json.dumps(row)) < 1536
    assert "rules failed" in site.router("history").stdout

    done = site.router("test", "--format", "json", "EndScript", "Daily Backup", "2", "0", "ok")
    report = json.loads(done.stdout)
    assert len(report["rules"]) == 301, sorted(report)


def test_history_shows_old_and_odd_rows_instead_of_failing(site: Site) -> None:
    from datetime import datetime

    from router.store import JournalEntry, Store

    with Store.open(site.state) as store:
        for column, value in ODD_COLUMNS:
            entry = JournalEntry(
                datetime(2024, 5, 1, 3), "EndScript", column, "info", 1, "h", {}, []
            )
            event_id, _ = store.record(entry)
            store.db.run(f"UPDATE events SET {column} = ? WHERE id = ?", (value, event_id))
    home = {"HOME": str(site.root)}
    done = site.router("history", "--limit", "100", env=home)
    assert (done.returncode, done.stderr) == (0, "")
    assert len([line for line in done.stdout.splitlines() if line.startswith("#")]) == 13
    assert "    run: ok" in done.stdout.splitlines()  # the report without a rule
    assert "    step: 'not json at all'" in done.stdout.splitlines()  # shown as it is
    assert "    error: broken [" in done.stdout.splitlines()
    done = site.router("history", "--limit", "100", "--format", "json", env=home)
    assert (done.returncode, done.stderr) == (0, "")
    rows = list(reversed(json.loads(done.stdout)))  # in ODD_COLUMNS' order
    assert [row["identity"] for row in rows] == [column for column, _ in ODD_COLUMNS]
    assert rows[1]["steps"] == ["not json at all"]
    assert rows[5]["decisions"] == [{"label": "r"}, {"matched": True}, None, "odd"]
    assert rows[6]["decisions"] == ["nope"]
    assert rows[9]["fields"] == {}
    assert rows[10]["fields"] == {"when": {"$datetime": "yesterday"}, "took": {"$seconds": "x"}}
    assert rows[11]["args"] == [7]
    assert rows[12]["received"].startswith("1970-01-01")  # unreadable: shown as the epoch
