"""Issue 8, item 5: what a newcomer tripped on, each through the real
executables. (The built-in titles and the default rules' AnomalyAlert and
PasswordEntry notices are tested with the default rules, in test_examples.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from helpers import ROUTER, Site, call, wait_until, write_program, write_rules
from sinks import ERROR, HttpSink, free_port

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX processes and signals")


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def test_the_retry_log_says_when_the_row_really_goes_again(router_at, http_sink) -> None:
    http_sink.mode = ERROR
    router = router_at(
        f'target ops = "json://{http_sink.address}/ops"\non EndScript\n  notify ops\n'
    )
    router.config.write_text(
        'rules_dir = "rules"\nstate_dir = "state"\n[delivery]\nfirst_delay = "2s"\n'
        'max_delay = "1h"\nconnect_timeout = 1\nread_timeout = 1\n'
    )
    assert router.handler("EndScript", "Daily", "0", "0", "ok").returncode == 0  # inline: 1 try
    with router.db() as db:  # two earlier handlers tried it already
        db.execute("UPDATE outbox SET attempts = 2, next_attempt = 0")
    router.start()
    line = wait_until(
        lambda: re.search(r"trying it again in (\d+) s, at (\d\d:\d\d:\d\d)", router.log()),
        "the retry log line",
        timeout=30,
    )
    with router.db() as db:
        ((attempts, next_attempt),) = db.execute("SELECT attempts, next_attempt FROM outbox")
    assert attempts == 3
    assert line.group(2) == datetime.fromtimestamp(next_attempt).strftime("%H:%M:%S")
    assert int(line.group(1)) >= 6  # the row's third failure waits 8 s, not the first's 2 s


def test_files_that_look_like_rules_and_an_empty_ruleset_are_warned_about(site: Site) -> None:
    (site.rules / "ops.rule").write_text('on EndScript\n  log "x"\n')
    (site.rules / "site.rules.txt").write_text('on EndScript\n  log "x"\n')
    (site.rules / "notes.txt").write_text("not rules\n")
    done = site.router("check", "--format", "json")
    assert done.code == 0
    problems = {(Path(p["path"]).name, p["code"]) for p in json.loads(done.out)}
    assert problems == {
        ("rules", "no-rules"),
        ("ops.rule", "not-loaded"),
        ("site.rules.txt", "not-loaded"),
    }
    text = site.router("check")
    assert "'ops.rule' is not loaded: only files named *.rules are" in text.out
    assert "rename it to ops.rules to load it" in text.out


def test_check_and_the_service_count_rules_alike(router_at) -> None:
    port = free_port()
    router = router_at(
        'target ops = "json://127.0.0.1:9/x"\non EndScript\n  notify ops\n'
        "expect EndScript every 1d\n  notify ops\n",
        settings=f'listen = "127.0.0.1:{port}"',
    ).start()
    status, health = call(port, "GET", "/healthz")
    assert status == 200 and health["ruleset"]["rules"] == 2
    check = subprocess.run(
        [*ROUTER, "check"], env=router.env, cwd=router.root, capture_output=True, text=True
    )
    assert "1 file(s), 2 rule(s)" in check.stdout


def test_healthz_says_degraded_while_the_rule_files_are_broken(router_at) -> None:
    port = free_port()
    rules = 'target ops = "json://127.0.0.1:9/x"\non EndScript\n  notify ops\n'
    router = router_at(rules, settings=f'listen = "127.0.0.1:{port}"').start()
    status, health = call(port, "GET", "/healthz")
    assert (status, health["status"], health["problems"]) == (200, "ok", [])
    write_rules(router.root / "rules" / "test.rules", rules + "on EndScript where and\n")
    wait_until(lambda: call(port, "GET", "/healthz")[0] == 503, "healthz to say degraded")
    status, health = call(port, "GET", "/healthz")
    assert health["status"] == "degraded" and health["ok"] is False
    assert health["problems"] == ["the rule files have errors; the last good rules are in force"]
    assert call(port, "GET", "/livez") == (200, {"ok": True})
    write_rules(router.root / "rules" / "test.rules", rules)
    wait_until(lambda: call(port, "GET", "/healthz")[0] == 200, "healthz to say ok again")


def test_the_admin_report_is_not_counted_as_an_event(router_at, http_sink) -> None:
    port = free_port()
    rules = 'target ops = "json://127.0.0.1:9/x"\non EndScript\n  notify ops\n'
    router = router_at(
        rules,
        settings=f'listen = "127.0.0.1:{port}"\nadmin = "json://{http_sink.address}/admin"',
    ).start()
    write_rules(router.root / "rules" / "test.rules", rules + "on EndScript where and\n")
    http_sink.wait_for(1, timeout=30)  # the broken edit, reported
    text = call(port, "GET", "/metrics")[1]
    assert 'router_events_total{event="router"}' not in text
    assert "router_admin_reports_total 1" in text.splitlines()


def test_without_the_service_a_broken_edit_is_reported_once_per_version(
    site: Site, http_sink: HttpSink
) -> None:
    site.config.write_text(
        f'admin = "json://{http_sink.address}/admin"\n' + site.config.read_text()
    )
    good = site.write_rules('on EndScript\n  log "{{ script }}"\n')
    assert site.handler("EndScript", "One", "0", "0", "ok").code == 0
    good.write_text(good.read_text() + "on EndScript where and\n")
    for script in ("Two", "Three"):  # two handlers see the same broken version
        assert site.handler("EndScript", script, "0", "0", "ok").code == 0
    (report,) = http_sink.wait_for(1)
    assert report.json["title"] == (
        "retro-router: the rules have errors; the last good rules stay in force"
    )
    assert "site.rules:3" in report.json["message"]
    good.write_text(good.read_text() + "on StartScript where or\n")  # broken differently
    assert site.handler("EndScript", "Four", "0", "0", "ok").code == 0
    assert len(http_sink.wait_for(2)) == 2
    assert [e["event"] for e in site.history()].count("router") == 2


def test_sighup_with_nothing_changed_says_so(router_at) -> None:
    router = router_at('on EndScript\n  log "x"\n').start()
    router.process.send_signal(signal.SIGHUP)
    wait_until(
        lambda: "reload asked for: the rule files are unchanged; 1 rules in force" in router.log(),
        "the SIGHUP log line",
    )


def test_check_shows_a_url_without_a_secret_as_written(site: Site) -> None:
    site.write_rules(
        'target ops = "mailto://backup-admin@example.com"\n'
        'target ops = "mailtos://user:hunter2pw@smtp.example.com?to=a@example.com"\n'
        "on EndScript\n  notify ops\n"
    )
    done = site.router("check")
    assert done.code == 1
    assert "hunter2pw" not in done.out + done.err
    assert "user:****@smtp.example.com" in done.out
    site.write_rules(
        'target ops = "mailto://backup-admin@example.com"\n'
        'target ops = "mailto://other@example.com"\non EndScript\n  notify ops\n'
    )
    done = site.router("check")
    assert '    target ops = "mailto://other@example.com"' in done.out.splitlines()


def test_history_shows_why_a_program_failed(site: Site) -> None:
    failing = write_program(
        site.root / "freeze",
        "import sys\nprint('connecting to SQL01')\n"
        "print('login failed for backup', file=sys.stderr)\nsys.exit(3)\n",
    )
    slow = write_program(site.root / "slow", "import time\ntime.sleep(30)\n")
    site.write_rules(
        f'on EndScript where script == "A"\n  run "{failing}"\n'
        f'on EndScript where script == "B"\n  run "{slow}" timeout 1s\n'
    )
    for script in ("A", "B"):
        assert site.handler("EndScript", script, "0", "0", "ok").code == 0
    lines = site.router("history").out.splitlines()
    assert f"    run (site.rules:1): failed {failing}: exit status 3" in lines
    assert "      | connecting to SQL01" in lines and "      | login failed for backup" in lines
    assert f"    run (site.rules:3): timeout {slow}: killed after 1 s" in lines
