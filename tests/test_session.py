"""Issue 3, "Routing": whole Retrospect sessions through the real executable.

Every test runs the installed ``retroeventhandler`` (and ``router``) as
Retrospect would: a fresh process per event, from a working directory
that has nothing to do with the router, with a bare environment (``PATH``,
``HOME`` and the documented ``ROUTER_*`` variables only). Notifications go
through Apprise to real servers on 127.0.0.1 (tests/sinks.py), programs
named in ``run`` are real programs written by the tests, and intervention
files are real files, one per event, as Retrospect passes them.

What is asserted is exact: the requests each sink received, in order; the
mails; what each intervention file holds; each exit status; the journal
(``router history --format json``); and that no secret from the target URLs
shows up in anything a person can read.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest
from helpers import (
    DELIVERY,
    HANDLER,
    REPO,
    ROUTER,
    Arg,
    Run,
    Site,
    run_process,
    write_program,
)
from sinks import HANG, OK, HttpSink, SmtpSink, free_port

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX processes, modes and argv bytes")


#: Secrets in the target URLs: none may appear anywhere a person reads.
TOKEN = "tok-4f9a1c0e7b2d"
FORM_PASSWORD = "formpw-83c2d1a9"
MAIL_PASSWORD = "mailpw-5e7b90c4"
DOWN_PASSWORD = "downpw-1d6e3f57"
SECRETS = (TOKEN, FORM_PASSWORD, MAIL_PASSWORD, DOWN_PASSWORD)

#: Injection attempts, as a Retrospect client name and a source path.
EVIL_CLIENT = "{{ 7*7 }}"
EVIL_PATH = "; rm -rf / $(id)"


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return True  # it went away between the two looks
        out = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
        return not out.stdout.strip() or out.stdout.strip().startswith("Z")
    return status.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """Wait (up to ``timeout``) for every pid to be gone; returns those still running."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if not process_gone(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def kill_leftovers(pid_file: Path) -> None:
    """End the processes a test's program started (by their recorded ids)."""
    if not pid_file.exists():
        return
    for pid in (int(p) for p in pid_file.read_text().split()):
        if not process_gone(pid):
            os.kill(pid, signal.SIGKILL)


def assert_no_secret(texts: list[str], where: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} shown in {where}: {text[:2000]}"


def assert_private(state: Path) -> None:
    """SECURITY.md: the state directory 0700, the database and every other file in it 0600."""
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert (state / "router.sqlite3").is_file()
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir() if p.is_file()}
    assert modes == dict.fromkeys(modes, 0o600)


def database_text(state: Path) -> dict[str, list[str]]:
    """Every column of every table as text, except ``outbox.url`` (the raw
    URL, kept in the private file because a retry needs it)."""
    db = sqlite3.connect(f"file:{state / 'router.sqlite3'}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        found: dict[str, list[str]] = {}
        for table in tables:
            columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
            shown = [c for c in columns if (table, c) != ("outbox", "url")]
            if not shown:
                continue
            rows = db.execute(f"SELECT {', '.join(shown)} FROM {table}").fetchall()
            for column, values in zip(shown, zip(*rows)):
                found[f"{table}.{column}"] = [str(v) for v in values]
        return found
    finally:
        db.close()


def raw_urls(state: Path) -> list[str]:
    """``outbox.url``: the URL a retry sends to, secrets and all."""
    db = sqlite3.connect(f"file:{state / 'router.sqlite3'}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT url FROM outbox ORDER BY id")]
    finally:
        db.close()


# ---------------------------------------------------------------------------
# A whole session
# ---------------------------------------------------------------------------

SESSION_RULES = """\
# Notifications: a chat webhook (json), an ops form, and mail.
target chat = "json://127.0.0.1:{http}/chat?+X-Token={token}"
target ops  = "form://ops:{form_password}@127.0.0.1:{http}/ops"
target mail = "mailto://router:{mail_password}@127.0.0.1:{smtp}?from=router@example.com&to=admin@example.com&mode=insecure"

# Quiesce the database around its backup.
rule "freeze SQL01"
on StartSource where client == "SQL01"
  run "{record}" "freeze" "{{{{ source_path }}}}" "{{{{ client }}}}" timeout 10s
      or abort "could not freeze {{{{ client }}}}, source skipped"

rule "freeze DB02"
on StartSource where client == "DB02"
  run "{fail}" "{{{{ source_path }}}}" timeout 10s
      or abort "could not freeze {{{{ client }}}}, source skipped"

rule "freeze EXCH01"
on StartSource where client == "EXCH01"
  run "{hang}" "{{{{ source_path }}}}" timeout 2s
      or abort "freezing {{{{ client }}}} timed out, source skipped"

# Policy: only known clients are backed up.
rule "unknown client"
on StartSource where client not in ["SQL01", "DB02", "EXCH01", "FS01"]
  run "{record}" "unknown" "{{{{ source_path }}}}" "{{{{ client }}}}"
  abort "{{{{ client }}}} is not a known client: {{{{ source_path }}}} skipped"
  notify chat, mail title "Skipped {{{{ client }}}}" body "Source path: {{{{ source_path }}}}"

rule "source failed"
on EndSource where status == "failure"
  notify ops title "{{{{ source }}}} failed: {{{{ error_message }}}}"
  throttle 1h by script

rule "media"
on MediaRequest
  notify chat title "Retrospect needs {{{{ member }}}} of {{{{ backup_set }}}}" type warning

rule "script failed"
on EndScript where status == "failure"
  notify chat, mail
    title "Backup {{{{ script }}}} failed"
    body  \"\"\"
      {{{{ script }}}} stopped with error {{{{ error_code }}}}: {{{{ error_message }}}}
      ({{{{ errors }}}} errors, failure {{{{ streak }}}} in a row).
      \"\"\"

rule "script warned"
on EndScript where status == "warning"
  notify ops title "{{{{ script }}}} completed with {{{{ errors }}}} errors"

rule "script recovered"
on EndScript where status == "success" and previous.status == "failure"
  notify chat, mail title "{{{{ script }}}} recovered after {{{{ previous.streak }}}} failed run(s)"

rule "script succeeded"
on EndScript where status == "success" and not (previous.status == "failure")
  notify ops title "{{{{ script }}}} succeeded"

rule "fatal"
on FatalBackupError
  notify chat, mail type failure title "Fatal error in {{{{ script }}}}: {{{{ error_message }}}}"
  abort "{{{{ error_message }}}}: reported by retro-router"

rule "log"
on any
  log "{{{{ event }}}} {{{{ args | join(' | ') }}}}"
"""

RECORD_PROGRAM = """\
import json, os, sys
with open({log!r}, "a", encoding="utf-8") as out:
    env = {{k: v for k, v in os.environ.items() if k.startswith("RETRO_")}}
    out.write(json.dumps({{"argv": sys.argv[1:], "env": env}}) + "\\n")
"""

FAIL_PROGRAM = """\
import sys
print("cannot freeze", sys.argv[1])
sys.exit(1)
"""

# Starts a grandchild in its own process group, records both pids, then hangs.
HANG_PROGRAM = """\
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open({pids!r}, "w") as out:
    out.write(f"{{os.getpid()}} {{child.pid}}\\n")
time.sleep(30)
"""

IF = object()  # stands for "a fresh intervention file" in the session table


@dataclass
class Step:
    """One handler invocation and exactly what it must do."""

    argv: list[Any]
    exit: int = 0
    #: What the intervention file holds afterwards ("" = untouched).
    intervention: str = ""
    #: New requests at the HTTP sink: (path, title, type).
    http: tuple[tuple[str, str, str], ...] = ()
    #: New mails: subjects.
    mail: tuple[str, ...] = ()
    #: Rules that acted (journal decisions: matched and not held back).
    acted: tuple[str, ...] = ("log",)
    #: The local steps' outcomes, in order (kind, outcome).
    steps: tuple[tuple[str, str], ...] = (("log", "ok"),)


def end_source(source: str, client: str, path: str, code: int, message: str) -> list[str]:
    return [
        "EndSource", "Nightly", source, path, client, "1048576", "1200", "95",
        "2/10/2017 15:40", "2/10/2017 15:42", "2/10/2017 15:39", "Backup Set A", "Normal",
        "", "0", str(code), message,
    ]  # fmt: skip


SESSION = [
    Step(["StartApp", "2/10/2017 15:39", "true", IF]),
    Step(["StartScript", "Nightly", "2/10/2017 15:39", IF]),
    Step(
        ["StartSource", "Nightly", "SQL01/Data", "/Volumes/Data", "SQL01", IF],
        acted=("freeze SQL01", "log"),
        steps=(("run", "ok"), ("log", "ok")),
    ),
    Step(
        ["StartSource", "Nightly", f"{EVIL_CLIENT}/Macintosh HD", EVIL_PATH, EVIL_CLIENT, IF],
        exit=1,
        intervention=f"{EVIL_CLIENT} is not a known client: {EVIL_PATH} skipped\n",
        http=(("/chat", f"Skipped {EVIL_CLIENT}", "info"),),
        mail=(f"Skipped {EVIL_CLIENT}",),
        acted=("unknown client", "log"),
        steps=(("run", "ok"), ("abort", "ok"), ("log", "ok")),
    ),
    Step(
        ["StartSource", "Nightly", "DB02/Data", "/Volumes/DB", "DB02", IF],
        exit=1,
        intervention="could not freeze DB02, source skipped\n",
        acted=("freeze DB02", "log"),
        steps=(("run", "failed"), ("abort", "ok"), ("log", "ok")),
    ),
    Step(
        ["StartSource", "Nightly", "EXCH01/Mail", "/Volumes/Mail", "EXCH01", IF],
        exit=1,
        intervention="freezing EXCH01 timed out, source skipped\n",
        acted=("freeze EXCH01", "log"),
        steps=(("run", "timeout"), ("abort", "ok"), ("log", "ok")),
    ),
    Step(end_source("SQL01/Data", "SQL01", "/Volumes/Data", 0, "successful")),
    Step(
        ["StartSource", "Nightly", "SQL01/Logs", "/Volumes/Logs", "SQL01", IF],
        acted=("freeze SQL01", "log"),
        steps=(("run", "ok"), ("log", "ok")),
    ),
    Step(
        end_source("SQL01/Logs", "SQL01", "/Volumes/Logs", -530, "backup client not found"),
        http=(("/ops", "SQL01/Logs failed: backup client not found", "failure"),),
        acted=("source failed", "log"),
    ),
    Step(
        ["MediaRequest", "Backup Set A", "2-Backup Set A", "true", "5", IF],
        http=(("/chat", "Retrospect needs 2-Backup Set A of Backup Set A", "warning"),),
        acted=("media", "log"),
    ),
    Step(["StartSource", "Nightly", "FS01/Share", "/srv/share", "FS01", IF]),
    # Fails too, within the hour: held back by the throttle.
    Step(end_source("FS01/Share", "FS01", "/srv/share", -530, "backup client not found")),
    Step(
        ["EndScript", "Nightly", "2", "-530", "backup client not found"],
        http=(("/chat", "Backup Nightly failed", "failure"),),
        mail=("Backup Nightly failed",),
        acted=("script failed", "log"),
    ),
    Step(["StartScript", "Nightly", "2/10/2017 16:30", IF]),
    Step(
        ["EndScript", "Nightly", "0", "0", "successful"],
        http=(("/chat", "Nightly recovered after 1 failed run(s)", "success"),),
        mail=("Nightly recovered after 1 failed run(s)",),
        acted=("script recovered", "log"),
    ),
    Step(["StartScript", "Daily", "2/10/2017 17:00", IF]),
    Step(
        ["EndScript", "Daily", "3", "0", "successful"],
        http=(("/ops", "Daily completed with 3 errors", "warning"),),
        acted=("script warned", "log"),
    ),
    Step(["StartScript", "Weekly", "2/10/2017 17:10", IF]),
    Step(
        ["EndScript", "Weekly", "0", "0", "successful"],
        http=(("/ops", "Weekly succeeded", "success"),),
        acted=("script succeeded", "log"),
    ),
    Step(["StartScript", "Archive", "2/10/2017 17:20", IF]),
    Step(
        [
            "FatalBackupError",
            "Archive",
            "Media full",
            "-1017",
            "insufficient permissions",
            "eng",
            IF,
        ],
        exit=1,
        intervention="insufficient permissions: reported by retro-router\n",
        http=(("/chat", "Fatal error in Archive: insufficient permissions", "failure"),),
        mail=("Fatal error in Archive: insufficient permissions",),
        acted=("fatal", "log"),
        steps=(("abort", "ok"), ("log", "ok")),
    ),
    Step(
        ["EndScript", "Archive", "0", "-1017", "insufficient permissions"],
        http=(("/chat", "Backup Archive failed", "failure"),),
        mail=("Backup Archive failed",),
        acted=("script failed", "log"),
    ),
    Step(["EndApp", "2/10/2017 18:00"]),
]


def http_seen(request: Any) -> tuple[str, str, str]:
    payload = request.json if request.json is not None else request.form
    return request.path, payload["title"], payload["type"]


def test_a_whole_session(site: Site, http_sink: HttpSink, smtp_sink: SmtpSink) -> None:
    record_log = site.root / "record.jsonl"
    pid_file = site.root / "hang.pids"
    programs = site.root / "programs"
    programs.mkdir(mode=0o700)
    record = write_program(programs / "record", RECORD_PROGRAM.format(log=str(record_log)))
    fail = write_program(programs / "fail", FAIL_PROGRAM)
    hang = write_program(programs / "hang", HANG_PROGRAM.format(pids=str(pid_file)))
    site.write_rules(
        SESSION_RULES.format(
            http=http_sink.port,
            smtp=smtp_sink.port,
            token=TOKEN,
            form_password=FORM_PASSWORD,
            mail_password=MAIL_PASSWORD,
            record=record,
            fail=fail,
            hang=hang,
        )
    )
    checked = site.router("check", "--strict")
    assert checked.code == 0, checked.out + checked.err

    files: list[Optional[Path]] = []
    http_count = mail_count = 0
    try:
        for number, step in enumerate(SESSION, 1):
            file = site.intervention_file(step.argv[0]) if IF in step.argv else None
            files.append(file)
            argv = [file if a is IF else a for a in step.argv]
            result = site.handler(*argv)
            what = f"step {number}: {step.argv[:5]}"
            assert (result.code, result.out, result.err) == (step.exit, "", ""), what
            if file is not None:
                assert file.read_text(encoding="utf-8") == step.intervention, what
            if step.argv[0] == "StartSource" and "EXCH01" in step.argv:
                # The hung program was given 2 s; its whole process group is killed.
                assert result.seconds < 10, what
                pids = [int(p) for p in pid_file.read_text().split()]
                assert len(pids) == 2
                assert wait_gone(pids) == [], f"{what}: still running: {pids}"
            # Each handler delivers before it exits: what it sent has arrived, and no more.
            http_count += len(step.http)
            mail_count += len(step.mail)
            arrived = http_sink.wait_for(http_count, timeout=10)
            assert len(http_sink.requests) == http_count, what
            assert tuple(http_seen(r) for r in arrived[http_count - len(step.http) :]) == (
                step.http
            ), what
            mails = smtp_sink.wait_for(mail_count, timeout=10)
            assert len(smtp_sink.messages) == mail_count, what
            assert tuple(m.subject for m in mails[mail_count - len(step.mail) :]) == step.mail
    finally:
        kill_leftovers(pid_file)

    # The HTTP requests in full: where they went, what they carried.
    requests = http_sink.requests
    assert [r.method for r in requests] == ["POST"] * len(requests)
    for request in requests:
        if request.path == "/chat":
            assert request.headers["X-Token"] == TOKEN
            assert request.json is not None
        else:
            assert request.form, request.headers
    skipped = requests[0]
    assert skipped.json["title"] == "Skipped {{ 7*7 }}"
    assert skipped.json["message"] == "Source path: ; rm -rf / $(id)"
    failed = next(r for r in requests if r.json and r.json["title"] == "Backup Nightly failed")
    assert failed.json["message"] == (
        "Nightly stopped with error -530: backup client not found\n(2 errors, failure 1 in a row)."
    )

    # The mails: to the configured recipient, from the router, with their bodies.
    mails = smtp_sink.messages
    assert all(m.rcpt_tos == ["admin@example.com"] for m in mails)
    assert all(m.mail_from == "router@example.com" for m in mails)
    assert "Source path: ; rm -rf / $(id)" in mails[0].text()
    assert "Nightly stopped with error -530: backup client not found" in mails[1].text()
    assert {login for login in smtp_sink.logins} == {("router", MAIL_PASSWORD)}

    # The programs saw the values literally, one argv element each, and every field as RETRO_*.
    records = [json.loads(line) for line in record_log.read_text(encoding="utf-8").splitlines()]
    assert [r["argv"] for r in records] == [
        ["freeze", "/Volumes/Data", "SQL01"],
        ["unknown", EVIL_PATH, EVIL_CLIENT],
        ["freeze", "/Volumes/Logs", "SQL01"],
    ]
    evil_env = records[1]["env"]
    assert evil_env["RETRO_CLIENT"] == EVIL_CLIENT
    assert evil_env["RETRO_SOURCE_PATH"] == EVIL_PATH
    assert evil_env["RETRO_SOURCE"] == f"{EVIL_CLIENT}/Macintosh HD"
    assert evil_env["RETRO_SCRIPT"] == "Nightly"
    assert evil_env["RETRO_EVENT"] == "StartSource"
    assert evil_env["RETRO_STATUS"] == "info"
    assert evil_env["RETRO_INTERVENTION_FILE"] == str(files[3])

    # The journal: one entry per invocation, in order, with what each did.
    history = site.history()
    assert [e["event"] for e in history] == [s.argv[0] for s in SESSION]
    for number, (entry, step, file) in enumerate(zip(history, SESSION, files), 1):
        expected_args = [str(file) if a is IF else a for a in step.argv[1:]]
        assert entry["args"] == expected_args, number
        assert entry["warnings"] == [], number
        assert entry["errors"] == [], number
        acted = [d["label"] for d in entry["decisions"] if d.get("matched") and d["reason"] is None]
        assert acted == list(step.acted), number
        assert [(s["kind"], s["outcome"]) for s in entry["steps"]] == list(step.steps), number
    held_back = history[11]["decisions"]
    matched = [d for d in held_back if d.get("matched")]
    assert [(d["label"], d["reason"], d.get("suppressed", 0)) for d in matched] == [
        ("source failed", "throttled", 1),
        ("log", None, 0),
    ]
    db02_run = history[4]["steps"][0]
    assert (db02_run["exit_code"], db02_run["output"]) == (1, "cannot freeze /Volumes/DB\n")
    exch_run = history[5]["steps"][0]
    assert 2 <= exch_run["seconds"] < 10
    assert history[3]["fields"]["client"] == EVIL_CLIENT
    assert history[3]["steps"][1]["text"] == files[3].read_text(encoding="utf-8").rstrip("\n")

    # Every notification is marked sent; nothing is left to retry.
    lines = site.outbox_lines()
    assert len(lines) == len(requests) + len(mails) == 14
    assert all("[sent]" in line for line in lines), lines

    # The event log: one line per event, values as they came.
    log_lines = (site.state / "events.log").read_text(encoding="utf-8").splitlines()
    assert len(log_lines) == len(SESSION)
    assert log_lines[3] == (
        f"StartSource Nightly | {EVIL_CLIENT}/Macintosh HD | {EVIL_PATH} | {EVIL_CLIENT}"
        f" | {files[3]}"
    )

    # No secret anywhere a person reads it.
    text_history = site.router("history", "--limit", "1000")
    assert text_history.code == 0
    assert_no_secret(site.outputs, "command output")
    assert_no_secret(log_lines, "the event log")
    stored = database_text(site.state)
    assert {"events.args", "events.errors", "events.steps", "outbox.url_masked"} <= set(stored)
    for column, values in stored.items():
        assert_no_secret(values, f"the database column {column}")
    urls = raw_urls(site.state)  # kept, for retries only
    assert [sum(secret in url for url in urls) for secret in SECRETS] == [6, 3, 5, 0]
    assert_private(site.state)
    # The working directory and the home directory were not touched.
    assert list(site.cwd.iterdir()) == []
    assert list(site.home.iterdir()) == []


# ---------------------------------------------------------------------------
# run: programs that leave something behind
# ---------------------------------------------------------------------------

# Starts a daemon that leaves the process group and keeps the output open.
DAEMON_PROGRAM = """\
import os, subprocess, sys, time
daemon = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(20)"], start_new_session=True
)
with open({pids!r}, "a") as out:
    out.write(f"{{daemon.pid}}\\n")
print("started")
if sys.argv[1] == "hang":
    time.sleep(30)
"""


def test_run_programs_that_leave_a_daemon_behind_or_are_missing(site: Site) -> None:
    pid_file = site.root / "daemon.pids"
    program = write_program(site.root / "start-service", DAEMON_PROGRAM.format(pids=str(pid_file)))
    missing = site.root / "not-installed"
    site.write_rules(
        f"""\
        on StartSource where client == "SVC"
          run "{program}" "exit" timeout 5s or abort "could not start the service"
        on StartSource where client == "HUNG"
          run "{program}" "hang" timeout 2s or abort "the service start hung"
        on StartSource where client == "GONE"
          run "{missing}" or abort "no freeze program"
        """
    )
    try:
        started = site.intervention_file("StartSource")
        result = site.handler("StartSource", "Nightly", "SVC/Data", "/data", "SVC", started)
        assert (result.code, result.out, result.err) == (0, "", "")
        assert started.read_text() == ""
        assert result.seconds < 4, "the handler waited for the daemon"

        hung = site.intervention_file("StartSource")
        result = site.handler("StartSource", "Nightly", "HUNG/Data", "/data", "HUNG", hung)
        assert (result.code, result.out, result.err) == (1, "", "")
        assert hung.read_text() == "the service start hung\n"
        assert result.seconds < 8, "the handler waited for the daemon after the timeout"

        gone = site.intervention_file("StartSource")
        result = site.handler("StartSource", "Nightly", "GONE/Data", "/data", "GONE", gone)
        assert (result.code, result.out, result.err) == (1, "", "")
        assert gone.read_text() == "no freeze program\n"
    finally:
        kill_leftovers(pid_file)
    first, second, third = site.history()
    assert first["steps"][0]["outcome"] == "ok"
    assert first["steps"][0]["output"] == "started\n"
    assert [s["outcome"] for s in second["steps"]] == ["timeout", "ok"]
    assert [s["outcome"] for s in third["steps"]] == ["error", "ok"]
    assert third["steps"][0]["error"].startswith("cannot start: ")


# ---------------------------------------------------------------------------
# Target down, then back
# ---------------------------------------------------------------------------


def test_target_down_rows_stay_pending_and_retry_delivers_each_once(site: Site) -> None:
    port = free_port()
    url = f"json://admin:{DOWN_PASSWORD}@127.0.0.1:{port}/down?+X-Token={TOKEN}"
    site.write_rules(
        """\
        target down = env("RETRO_DOWN_URL")
        rule "ended"
        on EndScript
          notify down title "{{ script }}: {{ status }}"
        """
    )
    secret_env = {"RETRO_DOWN_URL": url}
    for script, code in (("Alpha", "0"), ("Beta", "-530"), ("Gamma", "0")):
        result = site.handler("EndScript", script, "0", code, "x", env=secret_env)
        assert (result.code, result.out, result.err) == (0, "", "")
        assert result.seconds < 10

    pending = site.outbox_lines()
    assert len(pending) == 3
    for line in pending:
        assert "[pending, next try" in line, line
        assert "attempts 1" in line, line
        assert f"json://admin:****@127.0.0.1:{port}/down?+X-Token=****" in line, line
    listing = site.router("outbox").out
    errors = [line for line in listing.splitlines() if "last error:" in line]
    assert len(errors) == 3 and all(e.strip() != "last error:" for e in errors)
    stored = database_text(site.state)
    assert len([e for e in stored["outbox.last_error"] if e.startswith("A Connection error")]) == 3
    for column, values in stored.items():
        assert_no_secret(values, f"the database column {column}")
    assert raw_urls(site.state) == [url] * 3  # what the retry sends to, without the env

    sink = HttpSink()
    sink.port = port
    sink.start()
    try:
        retried = site.router("outbox", "retry", "--all")  # no RETRO_DOWN_URL: the row keeps it
        assert (retried.code, retried.err) == (0, ""), retried
        assert retried.out.strip() == "retried 3: 3 sent, 0 failed, 0 dead, 0 left for later"
        arrived = sink.wait_for(3, timeout=10)
        assert len(sink.requests) == 3
        assert [r.json["title"] for r in arrived] == [
            "Alpha: success",
            "Beta: failure",
            "Gamma: success",
        ]
        assert all(r.headers["X-Token"] == TOKEN for r in arrived)
        assert all("[sent]" in line for line in site.outbox_lines())

        again = site.router("outbox", "retry", "--all")
        assert (again.code, again.out.strip(), again.err) == (0, "nothing to retry", "")
        assert len(sink.requests) == 3
    finally:
        sink.stop()

    assert_no_secret(site.outputs, "command output")
    for column, values in database_text(site.state).items():
        assert_no_secret(values, f"the database column {column}")
    assert_private(site.state)


# ---------------------------------------------------------------------------
# The robustness contract (docs/events.md)
# ---------------------------------------------------------------------------

ROBUSTNESS_RULES = """\
rule "log"
on any
  log "{{ event }} {{ args | join('|') }}"

rule "errors counted"
on EndScript where errors >= 0
  log "{{ script }}: {{ errors }} errors" to "counted.log"

rule "dated start"
on StartScript where date > "1/1/2000"
  abort "{{ script }} may not start"
"""


FATAL_ARGS = ["Nightly", "disk", "-102", "trouble communicating", "engine"]
#: script, source, source_path, client as a Windows engine in a French locale sends them.
CP1252_ARGS = [b"Caf\xe9", b"Caf\xe9/Donn\xe9es", b"C:\\Donn\xe9es", b"PC-\xe9t\xe9"]
CP1252_TEXT = ["Caf\ufffd", "Caf\ufffd/Donn\ufffdes", "C:\\Donn\ufffdes", "PC-\ufffdt\ufffd"]


def test_robustness_contract(site: Site) -> None:
    site.write_rules(ROBUSTNESS_RULES)

    usage = site.handler()
    assert (usage.code, usage.err) == (0, "")
    assert usage.out.startswith("usage: retroeventhandler EVENT [ARG ...]")
    assert not (site.state / "router.sqlite3").exists(), "no arguments: nothing to journal"

    control_file = site.intervention_file("StartScript")
    bad_date_file = site.intervention_file("StartScript")
    fatal_file = site.intervention_file("FatalErrorBackup")
    bytes_file = site.intervention_file("StartSource")
    cases: list[tuple[list[Arg], int]] = [
        (["StartScript", "Nightly", "2/10/2017 15:39", control_file], 1),  # control
        (["SomethingNew", "a", "b c"], 0),  # unknown event
        ([""], 0),  # an empty event name
        (["FatalErrorBackup", *FATAL_ARGS, fatal_file], 0),  # an alias
        (["EndScript", "Nightly"], 0),  # too few
        (["EndScript", "Nightly", "0", "0", "successful"], 0),  # control
        (["EndApp", "2/10/2017 15:39", "extra", "more"], 0),  # too many
        (["EndScript", "Nightly", "many", "-5x", "failed"], 0),  # numbers that do not parse
        (["StartScript", "Nightly", "the day after", bad_date_file], 0),  # a date that does not
        (["StartScript", "Nightly", "2/10/2017 15:39"], 0),  # no intervention file to abort in
        ([b"StartSource", *CP1252_ARGS, bytes(bytes_file)], 0),  # Windows-1252 bytes
    ]
    for argv, code in cases:
        result = site.handler(*argv)
        assert (result.code, result.out, result.err) == (code, "", ""), argv

    assert control_file.read_text() == "Nightly may not start\n"
    assert bad_date_file.read_text() == ""
    assert fatal_file.read_text() == ""
    assert bytes_file.read_text() == ""

    history = site.history()
    assert [e["event"] for e in history] == [
        "StartScript",
        "SomethingNew",
        "",
        "FatalBackupError",
        "EndScript",
        "EndScript",
        "EndApp",
        "EndScript",
        "StartScript",
        "StartScript",
        "StartSource",
    ]
    control, unknown, empty, alias, few, ok, many, numbers, date, no_file, cp1252 = history

    def acted(entry: dict[str, Any]) -> list[str]:
        return [d["label"] for d in entry["decisions"] if d.get("matched") and d["reason"] is None]

    assert control["warnings"] == [] and acted(control) == ["log", "dated start"]
    assert unknown["args"] == ["a", "b c"]
    assert any("unknown event 'SomethingNew'" in w for w in unknown["warnings"])
    assert acted(unknown) == ["log"]
    assert empty["args"] == [] and empty["warnings"]
    assert alias["warnings"] == [] and alias["fields"]["error_code"] == -102
    assert alias["args"][-1] == str(fatal_file)

    assert "errors" not in few["fields"] and "error_code" not in few["fields"]
    assert few["warnings"] == [
        "EndScript expects 4 arguments, got 1; missing: errors, error_code, error_message"
    ]
    assert acted(few) == ["log"], "a rule testing a missing field does not match"
    assert acted(ok) == ["log", "errors counted"]

    assert many["args"] == ["2/10/2017 15:39", "extra", "more"]
    assert len(many["warnings"]) == 1 and "extra ones are kept in args" in many["warnings"][0]

    assert numbers["fields"]["errors"] == "many" and numbers["fields"]["error_code"] == "-5x"
    assert len(numbers["warnings"]) == 2
    assert acted(numbers) == ["log"]

    assert date["fields"]["date"] == "the day after" and len(date["warnings"]) == 1
    assert acted(date) == ["log"], "a date kept as text does not compare as a date"

    assert acted(no_file) == ["log", "dated start"]
    abort_step = next(s for s in no_file["steps"] if s["kind"] == "abort")
    assert abort_step["outcome"] == "error"
    assert any("intervention_file" in w for w in no_file["warnings"])

    assert cp1252["args"] == [*CP1252_TEXT, str(bytes_file)]
    assert cp1252["fields"]["client"] == "PC-\ufffdt\ufffd"
    assert cp1252["warnings"] == []

    log_lines = (site.state / "events.log").read_text(encoding="utf-8").splitlines()
    assert len(log_lines) == len(cases)
    assert log_lines[1] == "SomethingNew a|b c"
    assert log_lines[-1].startswith("StartSource Caf\ufffd|Caf\ufffd/Donn\ufffdes|")
    counted = (site.rules / "counted.log").read_text(encoding="utf-8").splitlines()
    assert counted == ["Nightly: 0 errors"]


# ---------------------------------------------------------------------------
# Where the handler finds its configuration (docs/operating.md)
# ---------------------------------------------------------------------------


def test_the_working_directory_and_the_environment_are_not_consulted(
    site: Site, tmp_path: Path
) -> None:
    # A decoy installation in the working directory and in the environment.
    decoy_rules = site.cwd / "rules"
    decoy_rules.mkdir(mode=0o700)
    (decoy_rules / "decoy.rules").write_text('on StartScript\n  abort "decoy rules"\n')
    (decoy_rules / "decoy.rules").chmod(0o600)
    (site.cwd / "router.toml").write_text('rules_dir = "rules"\nstate_dir = "decoy-state"\n')
    before = sorted(p.name for p in site.cwd.rglob("*"))
    site.write_rules('on StartScript\n  abort "the configured rules"\n')

    file = site.intervention_file("StartScript")
    noise = {"RETRO_RULES": str(decoy_rules), "XDG_DATA_HOME": str(site.cwd), "PWD": "/"}
    result = site.handler("StartScript", "Nightly", "2/10/2017 15:39", file, env=noise)
    assert (result.code, result.out, result.err) == (1, "", "")
    assert file.read_text() == "the configured rules\n"
    assert sorted(p.name for p in site.cwd.rglob("*")) == before
    assert (site.state / "router.sqlite3").is_file()
    assert [e["event"] for e in site.history()] == ["StartScript"]


def _install_beside(root: Path, message: str) -> Path:
    """A copy of the top-level ``retroeventhandler`` with a router.toml beside it
    naming its rules and state relative to itself."""
    install = root / "install"
    install.mkdir(mode=0o700)
    handler = install / "retroeventhandler"
    shutil.copy2(REPO / "retroeventhandler", handler)
    (install / "router.toml").write_text(
        'rules_dir = "rules"\nstate_dir = "state"\n' + DELIVERY, encoding="utf-8"
    )
    rules = install / "rules"
    rules.mkdir(mode=0o700)
    (rules / "beside.rules").write_text(f'on StartScript\n  abort "{message}"\n')
    (rules / "beside.rules").chmod(0o600)
    return handler


@pytest.mark.config_discovery
def test_router_toml_beside_the_resolved_executable(tmp_path: Path) -> None:
    handler = _install_beside(tmp_path, "found beside the handler")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}

    def run(program: Path, file: Path, extra: Optional[dict[str, str]] = None) -> Run:
        # This interpreter runs the copy, as the installed one's shebang would.
        command: list[Arg] = [sys.executable, program, "StartScript", "Nightly", "2/10/2017", file]
        return run_process(command, cwd=cwd, env={**env, **(extra or {})})

    file = tmp_path / "if-1"
    file.write_text("")
    result = run(handler, file)
    assert (result.code, result.out, result.err) == (1, "", "")
    assert file.read_text() == "found beside the handler\n"
    assert (handler.parent / "state" / "router.sqlite3").is_file()
    assert_private(handler.parent / "state")

    # Retrospect's fixed location, linked to the installed handler: the
    # router.toml beside the *resolved* executable counts, not one beside the link.
    retrospect = tmp_path / "Retrospect"
    retrospect.mkdir()
    link = retrospect / "RetroEventHandler"
    link.symlink_to(handler)
    (retrospect / "router.toml").write_text('rules_dir = "nowhere"\nstate_dir = "nowhere"\n')
    file = tmp_path / "if-2"
    file.write_text("")
    result = run(link, file)
    assert (result.code, result.out, result.err) == (1, "", "")
    assert file.read_text() == "found beside the handler\n"
    assert not (retrospect / "nowhere").exists()

    # The documented environment overrides still apply over the file.
    other_rules = tmp_path / "other-rules"
    other_rules.mkdir(mode=0o700)
    (other_rules / "o.rules").write_text('on StartScript\n  abort "overridden"\n')
    (other_rules / "o.rules").chmod(0o600)
    other_state = tmp_path / "other-state"
    file = tmp_path / "if-3"
    file.write_text("")
    overrides = {"ROUTER_RULES_DIR": str(other_rules), "ROUTER_STATE_DIR": str(other_state)}
    result = run(link, file, overrides)
    assert (result.code, result.out, result.err) == (1, "", "")
    assert file.read_text() == "overridden\n"
    assert (other_state / "router.sqlite3").is_file()

    history = run_process(
        [*ROUTER, "--config", handler.parent / "router.toml", "history", "--format", "json"],
        cwd=cwd,
        env=env,
    )
    assert history.code == 0, history.err
    assert len(json.loads(history.out)) == 2  # the first two; the third went to other-state
    assert list(cwd.iterdir()) == [] and list(home.iterdir()) == []


def test_an_event_the_journal_cannot_take_is_acted_on_kept_and_recorded_later(
    site: Site,
) -> None:
    site.write_rules('on any\n  log "{{ event }} {{ script }}"\n')
    site.state.mkdir(mode=0o700)
    database = site.state / "router.sqlite3"
    database.write_bytes(b"not a database, " * 512)  # a damaged disk
    database.chmod(0o600)
    result = site.handler("EndScript", "Nightly", "0", "0", EVIL_PATH)
    assert (result.code, result.out) == (0, "")
    assert "Traceback" not in result.err
    assert "the journal in" in result.err and "cannot be used" in result.err
    # The local step happened anyway...
    assert (site.state / "events.log").read_text(encoding="utf-8") == "EndScript Nightly\n"
    # ...and the event waits, private, in the spool.
    (kept,) = (site.state / "spool").iterdir()
    assert f"retroeventhandler: event kept in {kept};" in result.err
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert json.loads(kept.read_text(encoding="utf-8"))["entry"]["args"] == [
        "Nightly",
        "0",
        "0",
        EVIL_PATH,
    ]
    assert list(site.home.iterdir()) == [] and list(site.cwd.iterdir()) == []

    database.unlink()  # the disk is repaired: the next event records both, in order
    assert site.handler("EndScript", "Weekly", "0", "0", "successful").code == 0
    assert [(e["fields"]["script"], e["steps"][0]["outcome"]) for e in site.history()] == [
        ("Nightly", "ok"),
        ("Weekly", "ok"),
    ]
    assert list((site.state / "spool").iterdir()) == []


def test_closed_standard_streams(site: Site) -> None:
    """A service may start the handler with no stdout or stderr at all (Python
    then has None for them): still exit 0, still journaled."""
    site.write_rules('on EndScript where errors > \n  log "broken"\n')  # errors to report

    def closed(*args: str) -> Run:
        command = ["/bin/sh", "-c", 'exec "$0" "$@" >&- 2>&-', *HANDLER, *args]
        return run_process(command, cwd=site.cwd, env=site.env)

    usage = closed()
    assert (usage.code, usage.out, usage.err) == (0, "", "")
    result = closed("EndScript", "Nightly", "0", "0", "successful")
    assert (result.code, result.out, result.err) == (0, "", "")
    (entry,) = site.history()
    assert entry["event"] == "EndScript"
    assert any("the rules have errors" in e for e in entry["errors"])


def test_a_hung_target_costs_the_handler_at_most_its_deadline(
    site: Site, http_sink: HttpSink
) -> None:
    site.write_rules(
        f"""\
        target chat = "json://127.0.0.1:{http_sink.port}/chat?+X-Token={TOKEN}"
        rule "skip"
        on StartSource where client == "LAPTOP"
          notify chat title "Skipped {{{{ client }}}}"
          abort "laptops are not backed up here"
        """
    )
    http_sink.mode = HANG
    file = site.intervention_file("StartSource")
    result = site.handler("StartSource", "Nightly", "LAPTOP/Users", "/Users", "LAPTOP", file)
    assert (result.code, result.out, result.err) == (1, "", "")
    assert file.read_text() == "laptops are not backed up here\n"
    assert result.seconds < 5 + 3, "the [delivery] deadline is 5 s"
    http_sink.wait_for(1)  # it did reach the server, which never answered
    (line,) = site.outbox_lines()
    assert "[pending, next try" in line and "attempts 1" in line
    assert "last error: timed out" in site.router("outbox").out

    http_sink.mode = OK
    retried = site.router("outbox", "retry", "--all")
    assert (retried.code, retried.err) == (0, ""), retried
    assert [r.json["title"] for r in http_sink.wait_for(2)] == ["Skipped LAPTOP"] * 2
    assert all("[sent]" in line for line in site.outbox_lines())
    assert_no_secret(site.outputs, "command output")


def test_checkout_script_runs_with_its_venv_under_a_bare_system_python(tmp_path: Path) -> None:
    """Retrospect's bare PATH finds the system python3, which lacks the
    router's dependencies; the checkout's script then re-runs itself with the
    checkout's .venv (here: a link to the venv running these tests)."""
    system_python = Path("/usr/bin/python3")
    if not system_python.exists():
        pytest.skip("no /usr/bin/python3 on this machine")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(REPO / "retroeventhandler", checkout / "retroeventhandler")
    (checkout / ".venv").symlink_to(Path(sys.prefix))
    state = tmp_path / "state"
    rules = tmp_path / "rules"
    rules.mkdir(mode=0o700)
    (rules / "log.rules").write_text("on any\n  log \"{{ event }} {{ args | join(',') }}\"\n")
    (rules / "log.rules").chmod(0o600)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "ROUTER_RULES_DIR": str(rules),
        "ROUTER_STATE_DIR": str(state),
    }
    done = subprocess.run(
        [str(system_python), str(checkout / "retroeventhandler"), "EndApp", "2/10/2017 15:39"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    assert (state / "events.log").read_text() == "EndApp 2/10/2017 15:39\n"


def test_checkout_script_under_a_too_old_python_uses_the_venv_or_says_why(tmp_path: Path) -> None:
    """An old system python3 (RHEL 7's 3.6, say) must not loop re-running
    the script or print a traceback: it hands over to the checkout's .venv,
    or says what is missing."""
    # pyenv's versions themselves (its shims need pyenv's own setup to work).
    old = next(
        (str(p) for p in sorted(Path("/root/.pyenv/versions").glob("3.8.*/bin/python"))), None
    )
    if old is None:
        pytest.skip("no Python 3.8 on this machine")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(REPO / "retroeventhandler", checkout / "retroeventhandler")
    (checkout / "router").symlink_to(REPO / "router")
    state = tmp_path / "state"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "ROUTER_STATE_DIR": str(state),
        "ROUTER_RULES_DIR": str(REPO / "rules"),
    }
    command = [old, "-I", "-S", str(checkout / "retroeventhandler"), "EndApp", "2/10/2017 15:39"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "needs Python 3.9 or newer" in done.stderr and "Traceback" not in done.stderr
    (checkout / ".venv").symlink_to(Path(sys.prefix))
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert (state / "events.log").read_text().endswith("EndApp 2/10/2017 15:39\n")
