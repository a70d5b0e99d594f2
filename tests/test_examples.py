"""The shipped rule files: ``examples/*.rules`` and ``rules/default.rules``.

Each example must check clean (warnings only for environment variables that
are not set here and for the admin's scripts, which live on the backup
server), on its own and with all the others, and must do what its header
says: ``router replay --expect`` on realistic invocations for which rules
fire, ``router test`` for what they render, and the real handler where the
effect is local (a log line, a script, an intervention file, a delivery).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional

import pytest
from helpers import HOST, router_command
from sinks import HttpSink, SmtpSink

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
DEFAULT_RULES = REPO / "rules"
HANDLER = REPO / "retroeventhandler"
EXAMPLE_FILES = sorted(p.name for p in EXAMPLES.glob("*.rules"))
#: The warnings an example may have on a machine that is not the admin's.
ALLOWED_WARNINGS = {"unset-env", "program-not-found"}
#: Every environment variable an example reads its target from.
EXAMPLE_ENV = {
    "SLACK_URL": "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
    "IFTTT_URL": "ifttt://WebHookID@retrospect_script_end",
    "BACKUP_MAIL_URL": "mailto://user:pass@smtp.example.com?to=backup-admin@example.com",
    "ESCALATION_TEAM_URL": "json://chat.example.com/hooks/backups",
    "ESCALATION_PAGER_URL": "ntfy://ntfy.example.com/backups-urgent",
    "ROUTER_NOTIFY_URL": "json://notify.example.com/retrospect",
    "SCHEDULE_ALERT_URL": "json://alerts.example.com/schedules",
    "HOLIDAY_PAGER_URL": "ntfy://ntfy.example.com/backups-pager",
    "HOLIDAY_MAIL_URL": "mailto://user:pass@smtp.example.com?to=backup-team@example.com",
}
DAILY_FAILED = ["EndScript", "Daily Backup", "0", "-530", "backup client not found"]
DAILY_OK = ["EndScript", "Daily Backup", "0", "0", "successful"]
DAILY_ERRORS = ["EndScript", "Daily Backup", "4", "0", "successful"]
SQL_START = ["StartSource", "Daily Backup", "SQL01/Data", "D:\\SQLData", "SQL01"]
SQL_END = [
    "EndSource",
    "Daily Backup",
    "SQL01/Data",
    "D:\\SQLData",
    "SQL01",
    "1572864",
    "1200",
    "95",
    "2/10/2017 01:10",
    "2/10/2017 01:12",
    "2/10/2017 01:00",
    "Backup Set A",
    "Normal",
    "Data",
    "0",
    "0",
    "successful",
]


def clean_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The environment without ROUTER_* settings or the examples' target variables."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("ROUTER_") and k not in EXAMPLE_ENV
    }
    env.update(extra or {})
    return env


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


class Site:
    """A router installation in a temporary directory: router.toml, a rules
    directory, a state directory that does not exist yet."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rules = root / "rules"
        self.state = root / "state"
        self.config = root / "router.toml"
        self.rules.mkdir()
        self.rules.chmod(0o755)
        self.config.write_text(
            'rules_dir = "rules"\nstate_dir = "state"\n'
            "[delivery]\nconnect_timeout = 2\nread_timeout = 2\ndeadline = 10\n",
            encoding="utf-8",
        )

    def env(self, extra: Optional[dict[str, str]] = None) -> dict[str, str]:
        return clean_env({"ROUTER_CONFIG": str(self.config), **(extra or {})})

    def install(self, name: str, replace: Optional[dict[str, str]] = None) -> Path:
        """Copy an example (and its templates) into the rules directory."""
        text = (EXAMPLES / name).read_text(encoding="utf-8")
        for old, new in (replace or {}).items():
            assert old in text, f"{old!r} is not in {name}"
            text = text.replace(old, new)
        return self.write(name, text)

    def write(self, name: str, text: str) -> Path:
        path = self.rules / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o755)
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)
        return path

    def router(
        self, *args: str, env: Optional[dict[str, str]] = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*router_command(), *args],
            cwd=self.root,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def handler(
        self, *args: str, env: Optional[dict[str, str]] = None
    ) -> subprocess.CompletedProcess:
        """The real handler, as Retrospect runs it (from an unrelated directory)."""
        return subprocess.run(
            [sys.executable, str(HANDLER), *args],
            cwd="/",
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=120,
        )


def check(*paths: str, env: Optional[dict[str, str]] = None) -> tuple[int, list[dict]]:
    done = subprocess.run(
        [*router_command(), "check", "--format", "json", *paths],
        cwd=REPO,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, json.loads(done.stdout)


def replay(site: Site, rules: str, invocations: str, expect: str) -> subprocess.CompletedProcess:
    """``router replay --rules examples/RULES FILE --expect FILE``."""
    lines = site.root / "invocations.txt"
    lines.write_text(textwrap.dedent(invocations), encoding="utf-8")
    expected = site.root / "expected.txt"
    expected.write_text(textwrap.dedent(expect), encoding="utf-8")
    return site.router(
        "replay", "--rules", str(EXAMPLES / rules), str(lines), "--expect", str(expected)
    )


def assert_replayed(done: subprocess.CompletedProcess) -> list[str]:
    assert done.returncode == 0, done.stdout + done.stderr
    assert "EXPECTED" not in done.stdout
    return done.stdout.splitlines()


# ---------------------------------------------------------------------------
# router check
# ---------------------------------------------------------------------------


def test_every_example_handler_has_a_rule_file() -> None:
    assert set(EXAMPLE_FILES) >= {
        "log-every-event.rules",
        "slack.rules",
        "ifttt.rules",
        "email.rules",
        "quiesce-database.rules",
        "quiesce-exchange.rules",
        "escalation.rules",
        "schedules.rules",
        "holidays.rules",
    }
    for name in EXAMPLE_FILES:
        first = (EXAMPLES / name).read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# "), f"{name} starts without a header comment"


def test_defaults_and_examples_check_together_with_allowed_warnings_only() -> None:
    status, problems = check("rules", "examples")
    assert status == 0, problems
    assert [p for p in problems if p["severity"] == "error"] == []
    assert {p["code"] for p in problems} <= ALLOWED_WARNINGS, problems
    unset = {p["message"].split()[2] for p in problems if p["code"] == "unset-env"}
    assert unset == set(EXAMPLE_ENV)
    files = {Path(p["path"]).name for p in problems}
    assert "log-every-event.rules" not in files  # nothing to warn about there


def test_with_the_variables_set_only_the_admins_scripts_are_missing() -> None:
    status, problems = check("rules", "examples", env=EXAMPLE_ENV)
    assert status == 0, problems
    assert {p["code"] for p in problems} == {"program-not-found"}
    assert {Path(p["path"]).name for p in problems} == {
        "quiesce-database.rules",
        "quiesce-exchange.rules",
    }


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_each_example_checks_clean_on_its_own(name: str) -> None:
    """An admin copies one file: it must not need another (no unused or unknown names)."""
    status, problems = check(f"examples/{name}")
    assert status == 0, problems
    assert {p["code"] for p in problems} <= ALLOWED_WARNINGS, problems


def test_default_rules_warn_only_about_the_unset_notify_url() -> None:
    status, problems = check("rules")
    assert status == 0
    assert [(p["code"], p["message"]) for p in problems] == [
        ("unset-env", "environment variable ROUTER_NOTIFY_URL is not set here")
    ]
    status, problems = check("rules", env={"ROUTER_NOTIFY_URL": "json://localhost/x"})
    assert (status, problems) == (0, [])


# ---------------------------------------------------------------------------
# The default rules
# ---------------------------------------------------------------------------


def test_default_rules_tell_one_story_per_run(site: Site) -> None:
    """One notice per failed run, when it ends (not one per event of it), none
    for a clean run; media once per run; the rest as before."""
    source_ok = (
        'EndSource "Daily Backup" "SQL01/Data" D: SQL01 0 0 3 "" "" "" Set Normal Data'
        " 0 0 successful"
    )
    source_failed = (
        'EndSource "Daily Backup" "SQL01/Data" D: SQL01 0 0 3 "" "" "" Set Normal Data'
        ' 0 -1017 "insufficient permissions"'
    )
    start = 'StartScript "Daily Backup" "3/1/2024 1:00" /tmp/i'
    media = 'MediaRequest "Set A" "1-Set A" true 5 /tmp/i'
    lines = [
        # A clean run: nothing.
        ("@2024-03-01T01:00 " + start, "-"),
        (source_ok, "-"),
        ('EndScript "Daily Backup" 0 0 successful', "-"),
        # A failed run: a failed source, a fatal error, media asked for three
        # times; one notice for media, one for the run when it ends.
        (start, "-"),
        (source_failed, "-"),
        ('FatalBackupError "Daily Backup" "disk full" -1101 "disk full" zone /tmp/i', "-"),
        (media, "default: media needed"),
        (media, "-"),
        (media, "-"),
        ('EndScript "Daily Backup" 1 -1101 "disk full"', "default: run failed"),
        # A run that ended with errors, and one that failed with no source.
        (start, "-"),
        ('EndScript "Daily Backup" 2 0 successful', "default: run failed"),
        (start, "-"),
        ('EndScript "Daily Backup" 0 -530 "backup client not found"', "default: run failed"),
        # A client engine's run: its source pair.
        (" ".join(f'"{a}"' for a in ["StartSource", *SQL_END[1:5], "/tmp/i"]), "-"),
        (source_failed, "default: run failed"),
        (
            'ScriptCheckFailed "Daily Backup" "3/2/2024 1:00" "no media" -1 "no media"',
            ("default: script check failed"),
        ),
        (
            'TimedOutMediaRequest "Set A" "1-Set A" true 60 /tmp/i',
            ("default: media request timed out"),
        ),
        ('PasswordEntry "Set A" 1 0 successful', "-"),
        ('PasswordEntry "Set A" 3 -1 "wrong password"', "default: password entry failed"),
        (
            'AnomalyAlert "Daily Backup" "SQL01/Data" D: SQL01 sel 100 40 40.0 /tmp/i',
            ("default: anomaly"),
        ),
        # Too few arguments: no script, so no run; still a notice.
        ("EndScript", "default: script ended outside a run"),
    ]
    invocations = "".join(line + "\n" for line, _ in lines)
    expected = [
        "default: log every event" + ("" if fired == "-" else ", " + fired) for _, fired in lines
    ]
    invocations_file = site.root / "invocations.txt"
    invocations_file.write_text(invocations, encoding="utf-8")
    done = site.router("replay", "--rules", str(DEFAULT_RULES), str(invocations_file))
    assert done.returncode == 0, done.stderr
    fired = [line.split(": ", 2)[2] for line in done.stdout.splitlines()]
    assert fired == expected


def test_default_rules_notify_only_once_the_url_is_set(site: Site, http_sink: HttpSink) -> None:
    """And the built-in titles read well, even for an EndScript without arguments."""
    shutil.copy(DEFAULT_RULES / "default.rules", site.rules / "default.rules")
    (site.rules / "default.rules").chmod(0o644)

    done = site.handler(*DAILY_FAILED)
    assert done.returncode == 0, done.stderr
    history = site.router("history", "--format", "json")
    (entry,) = json.loads(history.stdout)
    assert any("ROUTER_NOTIFY_URL is not set" in e for e in entry["errors"]), entry
    assert site.router("outbox").stdout.strip() == "the outbox is empty"
    log = (site.state / "events.log").read_text(encoding="utf-8")
    assert "EndScript Daily Backup 0 -530 backup client not found" in log

    url = f"json://{http_sink.address}/notify, json://{http_sink.address}/second"
    done = site.handler(*DAILY_FAILED, env={"ROUTER_NOTIFY_URL": url})
    assert done.returncode == 0, done.stderr
    first, second = http_sink.wait_for(2)
    assert sorted([first.path, second.path]) == ["/notify", "/second"]
    assert first.json["title"] == f"Daily Backup failed on {HOST}"
    assert "Retrospect said: backup client not found (-530)" in first.json["message"]
    assert first.json["type"] == "failure"

    done = site.handler(*DAILY_OK, env={"ROUTER_NOTIFY_URL": url})
    assert done.returncode == 0, done.stderr
    assert len(http_sink.requests) == 2  # a success notifies nobody
    assert len((site.state / "events.log").read_text(encoding="utf-8").splitlines()) == 3

    done = site.handler("EndScript", env={"ROUTER_NOTIFY_URL": url})
    assert done.returncode == 0, done.stderr
    assert http_sink.wait_for(3)[2].json["title"] == (
        "A backup script finished (Retrospect sent no result)"
    )


# ---------------------------------------------------------------------------
# log-every-event
# ---------------------------------------------------------------------------


def test_log_every_event_appends_one_line_per_event(site: Site) -> None:
    log = site.root / "retrospect-events.log"
    site.install("log-every-event.rules", {"/var/log/retrospect-events.log": str(log)})
    assert site.handler("StartApp", "2/10/2017 15:39", "true", str(site.root / "i")).returncode == 0
    assert site.handler(*DAILY_FAILED).returncode == 0
    assert site.handler("SomeNewEvent", "x y").returncode == 0
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert lines[0].endswith(f"StartApp 2/10/2017 15:39 true {site.root / 'i'}")
    assert lines[1].endswith("EndScript Daily Backup 0 -530 backup client not found")
    assert lines[2].endswith("SomeNewEvent x y")
    assert not (site.root / "i").exists()  # logging never aborts


# ---------------------------------------------------------------------------
# slack
# ---------------------------------------------------------------------------


def test_slack_fires_on_failures_and_warnings_of_scripts_and_sources(site: Site) -> None:
    end_source = (
        'EndSource "Daily Backup" "SQL01/Data" "D:\\\\" SQL01 2048 10 95 "2/10/2017 1:10"'
        ' "2/10/2017 1:12" "2/10/2017 1:00" "Set A" Normal Data'
    )
    lines = assert_replayed(
        replay(
            site,
            "slack.rules",
            f"""\
            StartScript "Daily Backup" "2/10/2017 1:00" /tmp/i
            {end_source} 0 0 successful
            {end_source} 3 0 successful
            {end_source} 0 -1017 "insufficient permissions"
            EndScript "Daily Backup" 0 0 successful
            EndScript "Daily Backup" 3 0 successful
            EndScript "Daily Backup" 0 -530 "backup client not found"
            """,
            """\
            -
            -
            slack: source finished with errors
            slack: source failed
            -
            slack: script finished with errors
            slack: script failed
            """,
        )
    )
    assert len(lines) == 7


def test_slack_titles_say_what_happened(site: Site) -> None:
    done = site.router("test", "--rules", str(EXAMPLES / "slack.rules"), *DAILY_FAILED)
    assert done.returncode == 0, done.stderr
    assert "title: Backup script Daily Backup failed on " in done.stdout
    assert "body:  Error -530: backup client not found (0 other errors)." in done.stdout
    done = site.router("test", "--rules", str(EXAMPLES / "slack.rules"), *SQL_END[:14], "7", "0")
    assert "title: SQL01/Data: 7 errors in Daily Backup" in done.stdout
    assert "body:  1200 files, 1.5 GB in 1 minute 35 seconds to Backup Set A." in done.stdout


# ---------------------------------------------------------------------------
# ifttt
# ---------------------------------------------------------------------------


def test_ifttt_fires_at_every_script_end(site: Site) -> None:
    assert_replayed(
        replay(
            site,
            "ifttt.rules",
            """\
            StartScript "Daily Backup" "2/10/2017 1:00" /tmp/i
            EndScript "Daily Backup" 0 0 successful
            EndScript "Daily Backup" 0 -530 "backup client not found"
            EndSource "Daily Backup" "SQL01/Data"
            """,
            """\
            -
            ifttt: script finished
            ifttt: script finished
            -
            """,
        )
    )
    done = site.router("test", "--rules", str(EXAMPLES / "ifttt.rules"), *DAILY_OK)
    assert "to ifttt (no URL: see the errors below) [success, text]" in done.stdout
    assert "title: Daily Backup\n" in done.stdout
    assert "body:  success: 0 errors, successful" in done.stdout


# ---------------------------------------------------------------------------
# email
# ---------------------------------------------------------------------------


def test_email_summarises_bad_script_ends_and_asks_for_media(site: Site) -> None:
    assert_replayed(
        replay(
            site,
            "email.rules",
            """\
            EndScript "Daily Backup" 0 0 successful
            EndScript "Daily Backup" 2 0 successful
            StartScript "Daily Backup" "3/1/2024 1:00" /tmp/i
            MediaRequest "Set A" "1-Set A" false 0 /tmp/i
            MediaRequest "Set A" "1-Set A" false 5 /tmp/i
            MediaRequest "Set A" "1-Set A" false 10 /tmp/i
            TimedOutMediaRequest "Set A" "1-Set A" false 60 /tmp/i
            EndScript "Daily Backup" 0 -530 "backup client not found"
            """,
            """\
            -
            email: script summary
            -
            email: media request
            -
            -
            email: media request timed out
            email: script summary
            """,
        )
    )


def test_email_delivers_the_summary_from_its_template(site: Site, smtp_sink: SmtpSink) -> None:
    site.install("email.rules")
    shutil.copytree(EXAMPLES / "templates", site.rules / "templates")
    mail_url = (
        f"mailto://user:secretpw@127.0.0.1:{smtp_sink.port}"
        "?from=router@example.com&to=backup-admin@example.com&mode=insecure"
    )
    env = {"BACKUP_MAIL_URL": mail_url}
    assert site.handler(*DAILY_OK, env=env).returncode == 0
    start = ("StartScript", "Daily Backup", "2/10/2017 01:00", str(site.root / "i"))
    assert site.handler(*start, env=env).returncode == 0
    assert site.handler(*SQL_END, env=env).returncode == 0
    assert site.handler(*DAILY_FAILED, env=env).returncode == 0
    media_request = ("MediaRequest", "Set A", "1-Set A", "true", "5", str(site.root / "i"))
    assert site.handler(*media_request, env=env).returncode == 0
    summary, media = smtp_sink.wait_for(2)
    assert summary.subject == "[Retrospect] Daily Backup: failed"
    text = summary.text()
    assert "Script:   Daily Backup" in text
    assert "Result:   failure, error -530 (backup client not found)" in text
    assert "Sources (1, 0 failed):" in text and "SQL01/Data: success, 1.5 GB" in text
    assert "The previous run of this script ended with status success" in text
    assert media.subject == "[Retrospect] needs media: 1-Set A of Set A"
    assert 'waiting for member "1-Set A" of backup' in media.text()
    assert "It has waited 5 minutes so far." in media.text()
    assert len(smtp_sink.messages) == 2  # the successful run sent nothing


# ---------------------------------------------------------------------------
# quiesce-database and quiesce-exchange
# ---------------------------------------------------------------------------


def test_quiesce_database_freezes_sql01_only(site: Site) -> None:
    assert_replayed(
        replay(
            site,
            "quiesce-database.rules",
            f"""\
            StartSource "Daily Backup" "SQL01/Data" "D:\\\\SQLData" SQL01 /tmp/i
            StartSource "Daily Backup" "FILES01/C:" "C:\\\\" FILES01 /tmp/i
            {" ".join(f'"{a}"' for a in SQL_END).replace(chr(92), chr(92) * 2)}
            EndScript "Daily Backup" 0 0 successful
            """,
            """\
            quiesce-database: freeze
            -
            quiesce-database: thaw
            -
            """,
        )
    )
    done = site.router(
        "test", "--rules", str(EXAMPLES / "quiesce-database.rules"), *SQL_START, "/tmp/i"
    )
    assert "run /usr/local/sbin/sql-freeze 'D:\\SQLData' (timeout 120 s)" in done.stdout
    assert (
        "or abort: 'could not freeze the database on SQL01: SQL01/Data skipped' into /tmp/i"
        in done.stdout
    )


def fake_script(path: Path, exit_code: int) -> Path:
    """A stand-in for the admin's script: records its argv and RETRO_CLIENT."""
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(path) + '.calls'!r}, 'a') as out:\n"
        "    out.write(json.dumps([sys.argv[1:], os.environ.get('RETRO_CLIENT')]) + '\\n')\n"
        f"sys.exit({exit_code})\n",
        encoding="utf-8",
    )
    path.chmod(0o755)
    return path


def calls(script: Path) -> list[list]:
    record = Path(str(script) + ".calls")
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("freeze_works", [True, False])
def test_quiesce_database_runs_the_scripts_or_skips_the_source(
    site: Site, freeze_works: bool
) -> None:
    freeze = fake_script(site.root / "sql-freeze", 0 if freeze_works else 3)
    thaw = fake_script(site.root / "sql-thaw", 0)
    site.install(
        "quiesce-database.rules",
        {"/usr/local/sbin/sql-freeze": str(freeze), "/usr/local/sbin/sql-thaw": str(thaw)},
    )
    intervention = site.root / "intervention.txt"
    started = site.handler(*SQL_START, str(intervention))
    assert calls(freeze) == [[["D:\\SQLData"], "SQL01"]], started.stderr + started.stdout
    if freeze_works:
        assert started.returncode == 0, started.stderr
        assert not intervention.exists()
    else:
        assert started.returncode == 1  # as Retrospect's samples: the source is skipped
        assert intervention.read_text(encoding="utf-8") == (
            "could not freeze the database on SQL01: SQL01/Data skipped\n"
        )
    assert calls(thaw) == []
    assert site.handler(*SQL_END).returncode == 0
    assert calls(thaw) == [[["D:\\SQLData"], "SQL01"]]
    other = site.handler("StartSource", "Daily Backup", "FILES01/C:", "C:\\", "FILES01", "/tmp/i")
    assert other.returncode == 0
    assert len(calls(freeze)) == 1  # another client is not frozen


def test_quiesce_exchange_stops_and_starts_the_service(site: Site) -> None:
    assert_replayed(
        replay(
            site,
            "quiesce-exchange.rules",
            """\
            StartSource "Daily Backup" "EXCH01/C:" "C:\\\\" EXCH01 /tmp/i
            EndSource "Daily Backup" "EXCH01/C:" "C:\\\\" EXCH01
            StartSource "Daily Backup" "SQL01/C:" "C:\\\\" SQL01 /tmp/i
            """,
            """\
            quiesce-exchange: stop service
            quiesce-exchange: start service
            -
            """,
        )
    )
    service = fake_script(site.root / "exchange-service", 1)
    site.install("quiesce-exchange.rules", {"/usr/local/sbin/exchange-service": str(service)})
    intervention = site.root / "intervention.txt"
    done = site.handler(
        "StartSource", "Daily Backup", "EXCH01/C:", "C:\\", "EXCH01", str(intervention)
    )
    assert done.returncode == 1
    assert intervention.read_text(encoding="utf-8") == (
        "could not stop MSExchangeIS on EXCH01: EXCH01/C: skipped\n"
    )
    assert site.handler("EndSource", "Daily Backup", "EXCH01/C:", "C:\\", "EXCH01").returncode == 0
    assert calls(service) == [
        [["stop", "MSExchangeIS", "EXCH01"], "EXCH01"],
        [["start", "MSExchangeIS", "EXCH01"], "EXCH01"],
    ]


# ---------------------------------------------------------------------------
# escalation
# ---------------------------------------------------------------------------

ESCALATION_REPLAY = """\
# Daily Backup fails four times, then succeeds; Weekly fails once in between.
@2024-03-01T01:00 EndScript "Daily Backup" 0 -530 "backup client not found"
@2024-03-01T01:20 EndScript "Daily Backup" 0 -530 "backup client not found"
@2024-03-01T01:30 EndScript "Weekly Backup" 0 -102 "trouble communicating"
@2024-03-01T01:40 EndScript "Daily Backup" 0 -530 "backup client not found"
@2024-03-01T02:10 EndScript "Daily Backup" 0 -530 "backup client not found"
@2024-03-01T02:30 EndScript "Daily Backup" 0 0 successful
@2024-03-01T03:30 EndScript "Daily Backup" 0 0 successful
"""


def test_escalation_throttles_escalates_and_recovers(site: Site) -> None:
    assert_replayed(
        replay(
            site,
            "escalation.rules",
            ESCALATION_REPLAY,
            """\
            escalation: script failed
            -
            escalation: script failed
            escalation: page
            escalation: script failed, escalation: page
            escalation: recovered
            -
            """,
        )
    )


def test_escalation_messages_count_what_was_held_back() -> None:
    """Rendered messages along the same sequence (the library, for the received times)."""
    from router.checker import check_paths
    from router.dispatch import process
    from router.events import event_from_argv
    from router.loader import build_ruleset
    from router.store import Store

    result = check_paths([EXAMPLES / "escalation.rules"])
    assert result.errors == []
    ruleset = build_ruleset(result)
    start = datetime(2024, 3, 1, 1, 0)
    sent: list[list[tuple[str, str, str, str]]] = []
    with Store.in_memory() as store:
        for minutes, argv in [
            (0, DAILY_FAILED),
            (20, DAILY_FAILED),
            (40, DAILY_FAILED),
            (70, DAILY_FAILED),
            (90, DAILY_OK),
        ]:
            event = event_from_argv(argv, received=start + timedelta(minutes=minutes))
            outcome = process(event, ruleset, store, origin="replay")
            sent.append(
                [(n.target, n.type, n.title, n.body.strip()) for n in outcome.notifications]
            )
    failed = "Daily Backup failed: backup client not found"
    body = "Daily Backup stopped with error -530 on "
    assert [[(t, k, title) for t, k, title, _ in notes] for notes in sent] == [
        [("escalation_team", "failure", failed)],
        [],
        [("escalation_pager", "failure", "Daily Backup has failed 3 times in a row")],
        [
            ("escalation_team", "failure", failed),
            ("escalation_pager", "failure", "Daily Backup has failed 4 times in a row"),
        ],
        [("escalation_team", "success", "Daily Backup recovered after 4 failed run(s)")],
    ]
    assert sent[0][0][3].startswith(body) and "held back" not in sent[0][0][3]
    assert sent[3][0][3].startswith(body)
    assert sent[3][0][3].endswith(
        "2 more failure(s) of this script were held back since the last notice."
    )


# ---------------------------------------------------------------------------
# The README's examples stay true
# ---------------------------------------------------------------------------


def readme() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


def test_the_readme_points_at_the_docs_that_hold_the_router_toml_reference() -> None:
    """The settings are documented once, in docs/operating.md (whose block
    test_docs loads with every key); the README sends readers there."""
    assert "docs/operating.md" in readme() and "router init" in readme()


def test_the_readme_replay_example_does_what_it_shows(site: Site) -> None:
    text = readme()
    replay_lines = text.split("$ cat daily.replay\n", 1)[1].split("\n$ ", 1)[0]
    shown = text.split("--save-expect daily.expect\n", 1)[1].split("\n$ ", 1)[0]
    (site.root / "daily.replay").write_text(replay_lines + "\n", encoding="utf-8")
    done = site.router(
        "replay",
        "--rules",
        str(EXAMPLES / "escalation.rules"),
        "daily.replay",
        "--save-expect",
        "daily.expect",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == shown.splitlines()
    done = site.router(
        "replay",
        "--rules",
        str(EXAMPLES / "escalation.rules"),
        "daily.replay",
        "--expect",
        "daily.expect",
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_router_init_writes_a_router_toml_with_every_key(tmp_path) -> None:
    """The commented router.toml `router init` writes documents every key:
    with its commented-out lines switched on, it loads, with every key set."""
    import re

    from helpers import every_config_key, toml_keys

    from router import config
    from router.init import config_text, layout

    where = layout(prefix=str(tmp_path))
    text = config_text(where)
    assert toml_keys(text) == every_config_key()
    where.config.write_text(re.sub(r"(?m)^# (\w+ = )", r"\1", text), encoding="utf-8")
    loaded = config.load(str(where.config))
    assert loaded.warnings == []
    assert (loaded.rules_dir, loaded.state_dir) == (tmp_path / "rules", tmp_path / "state")
    assert loaded.date_order == "mdy" and loaded.retention == 90 * 86400
    assert loaded.run_env == ("ORACLE_HOME",)
    assert loaded.delivery == config.Delivery.defaults()  # the values shown are the defaults'


# ---------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------


def test_schedules_proves_a_missed_weeknight_and_a_hung_run_on_a_simulated_clock(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Times are the router's local time (UTC here): 02:00 Paris is 01:00."""
    monkeypatch.setenv("TZ", "UTC")
    assert_replayed(
        replay(
            site,
            "schedules.rules",
            """\
            @2026-11-30T12:00
            @2026-12-01T01:00 StartScript Nightly "12/1/2026 1:00" /tmp/i
            @2026-12-01T03:00 EndScript Nightly 0 0 successful
            @2026-12-02T01:00 StartScript Nightly "12/2/2026 1:00" /tmp/i
            @2026-12-02T06:00
            @2026-12-02T14:00
            """,
            """\
            -
            -
            -
            -
            schedules: nightly missed
            schedules: hung
            """,
        )
    )


# ---------------------------------------------------------------------------
# holidays
# ---------------------------------------------------------------------------


def _end_source(client: str, code: str, message: str) -> list[str]:
    return [
        "EndSource", "Nightly", f"{client}/C", "C:\\", client, "1024", "10", "5",
        "12/24/2026 02:00", "12/24/2026 02:05", "12/24/2026 02:00", "Set A", "Normal",
        "Data", "1" if code != "0" else "0", code, message,
    ]  # fmt: skip


def test_holidays_mutes_the_pager_and_the_laptop_on_leave_with_silences(
    site: Site, http_sink: HttpSink
) -> None:
    """The header's two silences, added with the real CLI: a failed run
    reaches the mailing list and not the pager; the laptop on leave is not
    reported; the journal says which silence muted what."""
    pager, mail = f"json://{http_sink.address}/pager", f"json://{http_sink.address}/mail"
    env = {"HOLIDAY_PAGER_URL": pager, "HOLIDAY_MAIL_URL": mail}
    site.install("holidays.rules")
    for condition, comment in (
        ('target == "holidays_pager"', "holidays: mail only"),
        ('client == "LAPTOP-7"', "Ann on leave"),
    ):
        added = site.router("silence", "add", condition, "--for", "1h", "--comment", comment)
        assert added.returncode == 0, added.stderr
    for argv in (
        ["StartScript", "Nightly", "12/24/2026 2:00", "/tmp/i"],
        _end_source("LAPTOP-7", "-1028", "client not visible on network"),
        _end_source("WS-12", "-519", "network communication failed"),
        ["EndScript", "Nightly", "2", "-519", "network communication failed"],
    ):
        done = site.handler(*argv, env=env)
        assert done.returncode == 0, done.stderr
    got = http_sink.wait_for(2)
    assert sorted(r.path for r in got) == ["/mail", "/mail"]
    titles = sorted(r.json["title"] for r in got)
    assert titles == ["Nightly failed on " + HOST, "WS-12 was not backed up by Nightly"]
    history = json.loads(site.router("history", "--format", "json").stdout)
    silenced = sorted(
        (d["label"], m["target"], m["silence"])
        for entry in history
        for d in entry["decisions"]
        for m in d.get("silenced", [])
    )
    assert silenced == [
        ("holidays: run failed", "holidays_pager", 1),
        ("holidays: source failed", "holidays_mail", 2),
    ]
    listed = site.router("silence", "list").stdout
    assert "holidays: mail only" in listed and "Ann on leave" in listed


# ---------------------------------------------------------------------------
# monitoring: the Prometheus alert rules and the Grafana dashboard
# ---------------------------------------------------------------------------

MONITORING = EXAMPLES / "monitoring"
#: Every metric the router exports: its own and every backup's.
METRICS = {
    "retrospect_script_last_run_timestamp_seconds",
    "retrospect_script_last_success_timestamp_seconds",
    "retrospect_script_last_run_status",
    "retrospect_script_last_run_duration_seconds",
    "retrospect_script_last_run_errors",
    "retrospect_source_last_success_timestamp_seconds",
    "retrospect_source_last_bytes",
    "retrospect_expect_overdue",
    "retrospect_runs_total",
    "router_ruleset_last_reload_successful",
}


def _metric_names(expression: str) -> set[str]:
    import re

    return set(re.findall(r"\b(?:retrospect|router)_[a-z_]+\b", expression))


def test_the_alert_rules_and_dashboard_name_only_metrics_the_router_exports() -> None:
    """Each name checked against the metrics tests/test_status.py parses."""
    from router import status
    from router.checker import check_text
    from router.dispatch import process
    from router.events import event_from_argv
    from router.loader import build_ruleset
    from router.store import Store

    ruleset = build_ruleset(check_text('expect EndScript every 1d\n  log "late"\n'))
    with Store.in_memory() as store:
        for argv in (["StartScript", "N", "", ""], SQL_END, ["EndScript", "N", "0", "0", "ok"]):
            process(event_from_argv(argv), ruleset, store)
        store.state.arm_expects([("expect", "x")], 0.0)
        seen = status.gather(store, ruleset, {"ok": True, "rules": 1, "errors": []}, 86400.0)
        text = status.prometheus(seen)
    exported = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert exported == {name for name in METRICS if name.startswith("retrospect_")}
    exported.add("router_ruleset_last_reload_successful")
    alerts = (MONITORING / "prometheus-alerts.yml").read_text(encoding="utf-8")
    expressions = [line.split("expr:", 1)[1] for line in alerts.splitlines() if "expr:" in line]
    assert len(expressions) == 5
    for expression in expressions:
        assert _metric_names(expression) and _metric_names(expression) <= exported, expression
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text(encoding="utf-8"))
    targets = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(targets) == len(dashboard["panels"]) >= 8
    for expression in targets:
        assert _metric_names(expression) and _metric_names(expression) <= exported, expression
    assert {name for e in targets + expressions for name in _metric_names(e)} >= exported - {
        "retrospect_script_last_run_timestamp_seconds"
    }
