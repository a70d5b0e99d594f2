"""Seeing every backup (docs/operating.md, "Seeing every backup"):
``router status`` in its three formats, ``/api/status``, ``/metrics``'s
per-backup gauges and the pages' token rule, through the real handler,
CLI and service. The page in a real browser is tests/test_status_page.py.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from helpers import HOST, Site, call, request, wait_until
from sinks import free_port

prometheus_parser = pytest.importorskip("prometheus_client.parser")

RULES = """
rule "log" on any log "{{ event }}"
expect EndScript where script == "Weekly" every 1s
  log "Weekly is late"
"""
DATE = "11/28/2026 2:00 AM"
#: A script name with every character the exposition format escapes.
ODD = 'Odd "quoted" \\ name'


def end_source(script: str, source: str, code: int, message: str, size: str = "1048576") -> list:
    client = source.split("/")[0]
    errors = "1" if code else "0"
    return [
        "EndSource", script, source, "C:", client, size, "10", "9:00", DATE, DATE, DATE,
        "Set A", "Normal", "C:", errors, str(code), message,
    ]  # fmt: skip


def backup(site: Site, script: str, sources: list[tuple[str, int, str]]) -> None:
    """One run of ``script`` through the real handler."""
    assert site.handler("StartScript", script, DATE, site.intervention_file("s")).code == 0
    failed = 0
    for source, code, message in sources:
        assert site.handler(*end_source(script, source, code, message)).code == 0
        failed += bool(code)
    code, message = (-519, "failed") if failed else (0, "successful")
    assert site.handler("EndScript", script, str(failed), str(code), message).code == 0


@pytest.fixture
def site(tmp_path: Path) -> Site:
    site = Site(tmp_path)
    site.write_rules(RULES)
    backup(site, "Nightly", [("ws1/C", 0, "successful"), ("ws2/C", -519, "network lost")])
    backup(site, "Daily", [("ws1/D", 0, "successful")])
    return site


def status_json(site: Site) -> dict[str, Any]:
    done = site.router("status", "--format", "json")
    assert done.code == 0, done.err
    return json.loads(done.out)


def test_status_puts_failures_and_overdue_first_in_80_columns(site: Site) -> None:
    # Weekly never ran: its expectation (every 1s) is overdue once a second passed.
    data = wait_until(
        lambda: (d := status_json(site))["summary"]["overdue"] == 1 and d,
        "the Weekly expectation to be overdue",
    )
    states = [(s["script"], s["state"]) for s in data["scripts"]]
    assert states == [("Nightly", "failure"), ("Weekly", "overdue"), ("Daily", "ok")]
    nightly = data["scripts"][0]
    assert nightly["host"] == HOST and nightly["last_run"]["status"] == "failure"
    assert nightly["last_run"]["failed"] == [
        {"source": "ws2/C", "client": "ws2", "error_code": -519, "error_message": "network lost"}
    ]
    assert nightly["last_success"] is None and nightly["runs"]["failure"] == 1
    daily = data["scripts"][2]
    assert daily["last_success"] is not None and daily["last_success_age_seconds"] >= 0
    assert daily["runs"] == {"success": 1, "warning": 0, "failure": 0, "incomplete": 0}
    sources = {(s["script"], s["source"]): s for s in data["sources"]}
    assert data["sources"][0]["source"] == "ws2/C"  # the failed one first
    assert sources[("Nightly", "ws2/C")]["last_success"] is None
    assert sources[("Nightly", "ws1/C")]["last_success_bytes"] == 1048576 * 1024
    assert data["rules"]["ok"] is True and data["rules"]["rules"] == 2

    text = site.router("status")
    assert text.code == 0, text.err
    lines = text.out.splitlines()
    assert max(len(line) for line in lines) <= 80, text.out
    assert "1 failed, 1 overdue" in lines[0]
    rows = [line for line in lines if line.startswith(f"{HOST} / ")]
    assert [row.split()[3] for row in rows] == ["FAILED", "OVERDUE", "ok"]
    assert "    failed: ws2/C: network lost" in text.out
    assert "  FAILED ws2: ws2/C (Nightly): last success never" in text.out


def test_prometheus_textfile_parses_and_escapes_labels(site: Site, tmp_path: Path) -> None:
    backup(site, ODD, [("ws3/C", 0, "successful")])
    textfile = tmp_path / "retrospect.prom"
    done = site.router("status", "--format", "prometheus", "--output", str(textfile))
    assert done.code == 0 and done.out == "", done.err
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644
    families = {f.name: f for f in prometheus_parser.text_string_to_metric_families(
        textfile.read_text(encoding="utf-8")
    )}  # fmt: skip
    status = {
        (s.labels["script"], s.labels["status"]): s.value
        for s in families["retrospect_script_last_run_status"].samples
    }
    assert status[("Nightly", "failure")] == 1 and status[("Nightly", "success")] == 0
    assert status[(ODD, "success")] == 1  # the odd name came back whole
    successes = {
        s.labels["script"]
        for s in families["retrospect_script_last_success_timestamp_seconds"].samples
    }
    assert successes == {"Daily", ODD}
    runs = {
        (s.labels["script"], s.labels["status"]): s.value
        for s in families["retrospect_runs"].samples
    }
    assert runs[("Nightly", "failure")] == 1 and runs[("Daily", "success")] == 1
    assert families["retrospect_runs"].type == "counter"
    sources = families["retrospect_source_last_success_timestamp_seconds"].samples
    assert {(s.labels["client"], s.labels["source"]) for s in sources} == {
        ("ws1", "ws1/C"),
        ("ws1", "ws1/D"),
        ("ws3", "ws3/C"),
    }
    sizes = {s.labels["source"]: s.value for s in families["retrospect_source_last_bytes"].samples}
    assert sizes["ws1/C"] == 1048576 * 1024
    for name in (
        "retrospect_script_last_run_timestamp_seconds",
        "retrospect_script_last_run_duration_seconds",
        "retrospect_script_last_run_errors",
        "retrospect_expect_overdue",
    ):
        assert name in families, name
    errors = {
        s.labels["script"]: s.value for s in families["retrospect_script_last_run_errors"].samples
    }
    assert errors["Nightly"] == 1  # EndScript's count, its source's error included


def test_scripts_and_clients_unseen_for_status_forget_drop_out(site: Site) -> None:
    assert {s["script"] for s in status_json(site)["scripts"]} >= {"Nightly", "Daily"}
    site.config.write_text('status_forget = "1s"\n' + site.config.read_text(), encoding="utf-8")
    # Only the expectation's script is left: it is expected, whether heard of or not.
    wait_until(
        lambda: (
            (d := status_json(site))["sources"] == []
            and [s["script"] for s in d["scripts"]] == ["Weekly"]
        ),
        "the old backups to drop out",
    )
    assert (
        "retrospect_source_last_bytes{" not in site.router("status", "--format", "prometheus").out
    )


def test_status_without_a_journal_says_so_and_creates_nothing(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.write_rules(RULES)
    done = site.router("status")
    assert done.code == 0 and "no journal yet" in done.out
    assert json.loads(site.router("status", "--format", "json").out) == {}
    assert not site.state.exists()


def test_the_service_serves_status_metrics_and_pages_behind_the_token(
    tmp_path: Path, router_at: Any
) -> None:
    port = free_port()
    router = router_at(
        RULES,
        f'listen = "127.0.0.1:{port}"\nrequire_token = true',
        env={"ROUTER_TOKEN": "s3cret-token"},
    ).start()
    bearer = {"Authorization": "Bearer s3cret-token"}
    event = {"event": "EndSource", "args": end_source("Nightly", "ws2/C", -519, "lost")[1:]}
    assert call(port, "POST", "/events", event, bearer)[0] == 200
    for path in ("/", "/api/status", "/runs?script=Nightly", "/?fragment=1"):
        status, headers, _ = request(port, "GET", path)
        assert status == 401, path
        challenges = headers.get_all("WWW-Authenticate")
        assert any(c.startswith('Basic realm="retro-router"') for c in challenges), path
    wrong = base64.b64encode(b"admin:guess").decode()
    assert call(port, "GET", "/", headers={"Authorization": f"Basic {wrong}"})[0] == 401

    # A person's browser: the token as a Basic password.
    basic = {"Authorization": "Basic " + base64.b64encode(b"me:s3cret-token").decode()}
    status, headers, page = request(port, "GET", "/", headers=basic)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'nonce-" in policy
    assert "ws2/C" in page and "<script nonce=" in page and "http" not in page.split("<body>")[0]
    status, _, body = request(port, "GET", "/?fragment=1", headers=basic)
    assert status == 200 and "<html" not in body and "ws2/C" in body
    status, _, runs = request(port, "GET", "/runs?script=Nightly", headers=bearer)
    assert status == 200 and "ws2/C: lost (-519)" in runs

    status, api = call(port, "GET", "/api/status", headers=bearer)
    assert status == 200
    assert [s["source"] for s in api["sources"]] == ["ws2/C"]

    text = call(port, "GET", "/metrics", headers=bearer)[1]
    families = {f.name: f for f in prometheus_parser.text_string_to_metric_families(text)}
    assert "router_events" in families  # the router's own, and every backup's:
    (sample,) = families["retrospect_script_last_run_status"].samples[-1:]
    assert sample.labels["script"] == "Nightly"
    assert router.stop() == 0
    assert "s3cret-token" not in router.log()


def test_an_existing_journal_is_summed_up_when_the_store_is_upgraded(site: Site) -> None:
    """Schema version 4 fills the summary rows from the runs kept so far."""
    import sqlite3

    db = site.state / "router.sqlite3"
    with sqlite3.connect(str(db)) as raw:
        raw.execute("DROP TABLE backup_scripts")
        raw.execute("DROP TABLE backup_sources")
        raw.execute("DELETE FROM schema_version WHERE version = 4")
    data = status_json(site)
    assert {s["script"]: s["state"] for s in data["scripts"] if s["script"] != "Weekly"} == {
        "Nightly": "failure",
        "Daily": "ok",
    }
    assert {s["source"] for s in data["sources"]} == {"ws1/C", "ws2/C", "ws1/D"}
    assert os.path.exists(db)


def test_status_forget_is_days_or_a_duration(tmp_path: Path) -> None:
    from router import config as settings

    for written, seconds in (("30", 30 * 86400.0), ('"12h"', 43200.0), ('"2d"', 172800.0)):
        toml = tmp_path / "router.toml"
        toml.write_text(f"status_forget = {written}\n", encoding="utf-8")
        assert settings.load(str(toml)).status_forget == seconds
