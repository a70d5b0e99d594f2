"""Issue 4: the service (``router serve``), its ingest, the thin handler, delivery.

Real parts only: ``router serve`` runs as a subprocess with its own state
and rules directories and router.toml; the handler is the installed
``retroeventhandler`` run as Retrospect runs it (fresh process, bare
environment); notifications go through Apprise to the HTTP sink in
tests/sinks.py. Every wait is on a condition with a deadline.

``ROUTER_FULL_BURST=1`` runs the concurrency test at the issue's full
size (8 handlers x 500 events) instead of 8 x 60.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import REPO, call, router_command, wait_until, write_rules
from sinks import HANG, OK, HttpSink, free_port

from router.urls import mask_url

pytestmark = pytest.mark.skipif(os.name != "posix", reason="Unix sockets, signals, modes")

ROUTER = router_command()
BURST = 500 if os.environ.get("ROUTER_FULL_BURST") else 60


# ---------------------------------------------------------------------------
# The thin handler
# ---------------------------------------------------------------------------


def test_thin_handler_the_service_decides_and_delivers_the_handler_runs_and_aborts(
    router_at, http_sink, tmp_path
) -> None:
    record = tmp_path / "record.sh"
    record.write_text('#!/bin/sh\necho "$@ $RETRO_SCRIPT" >> "$0.out"\n')
    record.chmod(0o700)
    router = router_at(
        f'target ops = "json://{http_sink.address}/hook"\n'
        'rule "notify" on EndScript notify ops title "{{ script }}: {{ error_message }}"\n'
        'rule "quiesce" on StartScript where script == "DB"\n'
        f'  run "{record}" "freeze" "{{{{ script }}}}"\n'
        '  abort "database {{ script }} is busy"\n'
    ).start()
    intervention = tmp_path / "intervention.txt"
    done = router.handler("StartScript", "DB", "2/10/2017 15:39", str(intervention))
    assert (done.returncode, done.stderr) == (1, "")
    assert intervention.read_text() == "database DB is busy\n"
    assert Path(f"{record}.out").read_text() == "freeze DB DB\n"

    done = router.handler("EndScript", "Daily", "0", "-530", "backup client not found")
    assert (done.returncode, done.stderr) == (0, "")
    (request,) = http_sink.wait_for(1)
    assert request.json["title"] == "Daily: backup client not found"

    start, end = router.journal()
    assert (start["origin"], end["origin"]) == ("service", "service")
    assert len(start["uid"]) == 32 and start["uid"] != end["uid"]
    # The handler reported what its steps did; the service recorded it.
    assert [(s["kind"], s["outcome"]) for s in start["steps"]] == [("run", "ok"), ("abort", "ok")]
    assert wait_until(
        lambda: [row[1] for row in router.outbox()] == ["sent"], "the row marked sent", timeout=10
    )
    assert router.stop() == 0


def test_fast_path_imports_only_the_standard_library(router_at, tmp_path) -> None:
    router = router_at('rule "log" on any log "{{ event }}"\n').start()
    done = router.handler(
        "EndScript", "Daily", "0", "0", "successful", python_options=("-X", "importtime")
    )
    assert done.returncode == 0
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "router.handler" in imported  # the measurement saw the handler itself
    heavy = {"lark", "jinja2", "apprise", "watchdog", "sqlite3", "_sqlite3"}
    ours = {"router.engine", "router.dispatch", "router.store", "router.templates"}
    # (router.config is read on the fast path too: it imports os and sys only,
    # and test_config holds it to that.)
    ours |= {"router.delivery", "router.language", "router.loader", "router.events"}
    assert not imported & (heavy | ours), sorted(imported & (heavy | ours))
    assert not any(name.split(".")[0] in heavy for name in imported)
    # Of the action kinds, only the one it performed (a log step).
    kinds = {name for name in imported if name.startswith("router.actions.")}
    assert kinds == {"router.actions.base", "router.actions.log"}, sorted(kinds)
    (entry,) = router.journal()
    assert entry["origin"] == "service"  # it did take the fast path
    assert [(s["kind"], s["outcome"]) for s in entry["steps"]] == [("log", "ok")]
    assert (router.state / "events.log").read_text() == "EndScript\n"


def test_the_inline_path_with_a_cached_ruleset_imports_no_lark(router_at) -> None:
    """No service: the handler loads the cached ruleset (the first run built
    it) and never parses, so Lark is not imported, nor watchdog."""
    router = router_at('rule "log" on any log "{{ event }}"\n')  # not started
    assert router.handler("StartApp", "1/1/2024 10:00", "true").returncode == 0
    done = router.handler(
        "EndScript", "Daily", "0", "0", "successful", python_options=("-X", "importtime")
    )
    assert done.returncode == 0, done.stderr
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "router.handler.inline" in imported  # it did take the inline path
    assert not {name.split(".")[0] for name in imported} & {"lark", "watchdog"}


def test_checkout_script_takes_the_service_path_without_site_and_falls_back_once(
    router_at, tmp_path
) -> None:
    """Retrospect executes the checkout's script: its shell part starts the
    checkout's .venv Python with -I -S. With the service up the event goes
    there; with it down, the script re-runs itself with a full Python for
    the inline path, and the event is journaled once."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(REPO / "retroeventhandler", checkout / "retroeventhandler")
    (checkout / "router").symlink_to(REPO / "router")
    (checkout / ".venv").symlink_to(Path(sys.prefix))
    script = str(checkout / "retroeventhandler")
    router = router_at('rule "log" on any log "{{ event }} {{ args | join(\',\') }}"\n').start()
    env = {**router.env, "PATH": "/usr/bin:/bin"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [script, *args], cwd="/", env=env, capture_output=True, text=True, timeout=60
        )

    done = run("EndScript", "Daily", "0", "0", "successful")
    assert (done.returncode, done.stderr) == (0, "")
    assert router.stop() == 0
    done = run("EndApp", "2/10/2017 15:39")
    assert (done.returncode, done.stderr) == (0, "")
    journal = router.journal()
    assert [(e["name"], e["origin"]) for e in journal] == [
        ("EndScript", "service"),
        ("EndApp", "handler"),
    ]
    assert len({e["uid"] for e in journal}) == 2
    log = (router.state / "events.log").read_text()
    assert log == "EndScript Daily,0,0,successful\nEndApp 2/10/2017 15:39\n"
    assert run().stdout.startswith("usage: retroeventhandler")


def test_without_a_service_the_handler_goes_inline_and_a_stale_socket_is_replaced(
    router_at,
) -> None:
    router = router_at('rule "log" on any log "{{ event }} {{ args[0] }}"\n').start()
    socket_path = router.state / "router.sock"
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(router.state.stat().st_mode) == 0o700
    # A second service on the same state directory refuses to start.
    second = subprocess.run(
        [*ROUTER, "serve"], env=router.env, capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 2
    assert "another service already answers" in second.stderr

    assert router.handler("EndApp", "1/1/2024 10:00").returncode == 0
    assert router.stop() == 0
    assert not socket_path.exists()
    assert router.handler("EndApp", "1/1/2024 11:00").returncode == 0

    router.start()
    assert router.stop(signal.SIGKILL) == -signal.SIGKILL
    assert socket_path.exists()  # stale: nothing answers on it
    done = router.handler("EndApp", "1/1/2024 12:00")
    assert (done.returncode, done.stderr) == (0, "")
    router.start()  # removes the stale socket and binds a new one
    assert router.handler("EndApp", "1/1/2024 13:00").returncode == 0

    origins = [(e["args"][0], e["origin"]) for e in router.journal()]
    assert origins == [
        ("1/1/2024 10:00", "service"),
        ("1/1/2024 11:00", "handler"),
        ("1/1/2024 12:00", "handler"),
        ("1/1/2024 13:00", "service"),
    ]
    assert (router.state / "events.log").read_text().splitlines() == [
        f"EndApp 1/1/2024 {hour}:00" for hour in (10, 11, 12, 13)
    ]


def test_sigterm_in_the_middle_of_a_stream_loses_no_event_and_journals_none_twice(
    router_at,
) -> None:
    router = router_at('rule "log" on any log "{{ script }}"\n').start()
    results: list[subprocess.CompletedProcess] = []

    def stream() -> None:
        for number in range(50):
            results.append(router.handler("EndScript", f"s{number}", "0", "0", "successful"))

    thread = threading.Thread(target=stream)
    thread.start()
    wait_until(lambda: len(router.journal()) >= 15, "15 events through the service", timeout=60)
    assert router.stop(timeout=60) == 0
    thread.join(timeout=120)
    assert len(results) == 50
    assert all((r.returncode, r.stderr) == (0, "") for r in results), [
        r.stderr for r in results if r.returncode or r.stderr
    ]
    journal = router.journal()
    counts = Counter(entry["args"][0] for entry in journal)
    assert counts == Counter({f"s{number}": 1 for number in range(50)})
    origins = Counter(entry["origin"] for entry in journal)
    assert origins["service"] >= 15 and origins["handler"] >= 1, origins
    assert len({entry["uid"] for entry in journal}) == 50
    # Every event's local step ran exactly once too.
    logged = Counter((router.state / "events.log").read_text().splitlines())
    assert logged == Counter({f"s{number}": 1 for number in range(50)})
    assert "Traceback" not in router.log()


# ---------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------


def test_after_kill_9_everything_pending_is_delivered_after_restart(router_at, http_sink) -> None:
    port = free_port()
    router = router_at(
        f'target ops = "json://{http_sink.address}/hook"\n'
        'rule "notify" on EndScript notify ops title "{{ script }}"\n',
        f'listen = "127.0.0.1:{port}"',
    ).start()
    http_sink.mode = HANG  # the first sends stay in flight until the kill
    for number in range(40):
        body = {"event": "EndScript", "args": [f"b{number}", "0", "0", "successful"]}
        assert call(port, "POST", "/events", body)[0] == 200
    # [delivery] per_url (4) sends to one URL at once, no more.
    in_flight = http_sink.wait_for(4)
    assert router.stop(signal.SIGKILL) == -signal.SIGKILL
    assert len(http_sink.requests) == 4
    http_sink.mode = OK
    router.start()
    wait_until(
        lambda: all(row[1] == "sent" for row in router.outbox()), "every row to be sent", timeout=30
    )
    titles = Counter(request.json["title"] for request in http_sink.requests)
    # Everything arrived; only the sends in flight at the kill arrived twice.
    twice = {request.json["title"]: 2 for request in in_flight}
    assert titles == Counter({f"b{number}": 1 for number in range(40)} | twice)


def test_a_target_down_for_10_s_gets_everything_once_when_it_is_back(router_at, http_sink) -> None:
    router = router_at(
        f'target ops = "json://{http_sink.address}/hook"\n'
        'rule "notify" on EndScript notify ops title "{{ script }}"\n'
    ).start()
    http_sink.stop()
    down_at = time.monotonic()
    for number in range(5):
        assert router.handler("EndScript", f"d{number}", "0", "0", "ok").returncode == 0
    wait_until(
        lambda: any(row[2] >= 2 for row in router.outbox()), "retries while down", timeout=20
    )
    time.sleep(max(0.0, 10 - (time.monotonic() - down_at)))  # the 10 s outage
    assert all(row[1] == "pending" for row in router.outbox())
    http_sink.start()
    wait_until(lambda: all(row[1] == "sent" for row in router.outbox()), "all sent", timeout=30)
    titles = [request.json["title"] for request in http_sink.requests]
    assert sorted(titles) == [f"d{number}" for number in range(5)]  # all, none twice
    assert "delivery to json://127.0.0.1" in router.log()  # failures logged, masked


def test_digest_and_expect_windows_survive_a_restart_of_the_service(router_at, http_sink) -> None:
    """Timers read their windows from the store: a digest collected before
    a restart goes out once after it, and an expect window armed before it
    fires after it."""
    router = router_at(
        f'target ops = "json://{http_sink.address}/hook"\n'
        'rule "batch" on EndSource notify ops title "{{ count }} sources" digest 3s\n'
        'rule "daily" expect EndScript where script == "Daily" every 4s\n'
        '  notify ops title "Daily missing for {{ overdue | duration }}"\n'
    ).start()
    for number in range(3):
        done = router.handler("EndSource", "Daily", f"c{number}/C:", "C:\\", f"c{number}")
        assert done.returncode == 0
    assert router.stop() == 0  # inside both windows: nothing has gone out
    assert http_sink.requests == []
    router.start()
    requests = http_sink.wait_for(2, timeout=30)
    titles = sorted(request.json["title"] for request in requests)
    assert titles[0] == "3 sources"  # one notification for the three, once
    assert titles[1].startswith("Daily missing for ")
    kinds = [(e["name"], e["origin"]) for e in router.journal()]
    assert kinds.count(("digest", "timer")) == 1
    assert kinds.count(("expect", "timer")) >= 1


def test_a_hung_target_does_not_delay_another(router_at, http_sink) -> None:
    fast = HttpSink()
    fast.start()
    try:
        router = router_at(
            f'target slow = "json://{http_sink.address}/slow"\n'
            f'target fast = "json://{fast.address}/fast"\n'
            'rule "both" on EndScript notify slow, fast title "{{ script }}"\n'
        ).start()
        http_sink.mode = HANG  # accepts, never answers: each send waits out its timeout
        started = time.monotonic()
        for number in range(5):
            assert router.handler("EndScript", f"h{number}", "0", "0", "ok").returncode == 0
        titles = [request.json["title"] for request in fast.wait_for(5, timeout=10)]
        assert sorted(titles) == [f"h{number}" for number in range(5)]
        # Well before the hung target's rows could have timed out one by one.
        assert time.monotonic() - started < 5
    finally:
        fast.stop()


def test_dead_letters_and_broken_rule_edits_are_reported_to_admin(router_at, http_sink) -> None:
    dead_url = f"json://127.0.0.1:{free_port()}/gone"
    rules = f'target ops = "{dead_url}"\nrule "notify" on EndScript notify ops title "lost"\n'
    router = router_at(
        rules,
        f'admin = "json://{http_sink.address}/admin"\n',
    )
    router.config.write_text(
        router.config.read_text().replace("max_delay = 1", "max_delay = 1\nmax_age = 1")
    )
    router.start()
    assert router.handler("EndScript", "Daily", "0", "0", "successful").returncode == 0
    (report,) = http_sink.wait_for(1, timeout=30)
    assert report.path == "/admin"
    assert report.json["title"] == "retro-router: a notification to ops could not be delivered"
    assert "router outbox retry 1" in report.json["message"]
    wait_until(
        lambda: (
            {row[4]: row[1] for row in router.outbox()} == {"notify": "dead", "(router)": "sent"}
        ),
        "the dead letter and the sent report",
        timeout=10,
    )

    write_rules(router.root / "rules" / "test.rules", rules + "on EndScript where and\n")
    reports = http_sink.wait_for(2, timeout=30)
    assert reports[1].json["title"] == (
        "retro-router: the rules have errors; the last good rules stay in force"
    )
    assert "test.rules:3" in reports[1].json["message"]


def test_8_concurrent_handlers_every_event_once_and_no_locked_database(
    router_at, http_sink
) -> None:
    router = router_at(
        f'target ops = "json://{http_sink.address}/hook"\n'
        'rule "notify" on EndScript notify ops title "{{ script }}"\n'
        'rule "log" on any log "{{ script }}"\n'
    ).start()
    failures: list[str] = []
    seconds: list[float] = []

    def worker(index: int) -> None:
        for number in range(BURST):
            started = time.monotonic()
            done = router.handler("EndScript", f"w{index}-{number}", "0", "0", "successful")
            seconds.append(time.monotonic() - started)
            if done.returncode != 0 or done.stderr:
                failures.append(done.stderr)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=1200)
    assert failures == []
    expected = Counter({f"w{i}-{n}": 1 for i in range(8) for n in range(BURST)})
    journal = router.journal()
    assert Counter(entry["args"][0] for entry in journal) == expected
    http_sink.wait_for(8 * BURST, timeout=120)
    wait_until(lambda: all(row[1] == "sent" for row in router.outbox()), "all sent", timeout=60)
    assert Counter(request.json["title"] for request in http_sink.requests) == expected
    assert "database is locked" not in router.log()
    assert router.stop() == 0
    seconds.sort()
    print(
        f"\n8 x {BURST} handlers: p50 {seconds[len(seconds) // 2] * 1000:.0f} ms,"
        f" p99 {seconds[int(len(seconds) * 0.99)] * 1000:.0f} ms,"
        f" {Counter(e['origin'] for e in journal)}"
    )


# ---------------------------------------------------------------------------
# HTTP ingest
# ---------------------------------------------------------------------------


def test_http_ingest_validates_and_answers_with_the_local_steps(router_at, http_sink) -> None:
    port = free_port()
    router = router_at(
        f'target ops = "json://{http_sink.address}/hook"\n'
        'rule "notify" on EndScript notify ops title "{{ script }} on {{ host }}"\n'
        'rule "skip" on StartSource where client == "laptop"\n'
        '  abort "{{ client }} is skipped tonight"\n',
        f'listen = "127.0.0.1:{port}"',
    ).start()
    status, reply = call(
        port,
        "POST",
        "/events",
        {
            "event": "EndScript",
            "args": ["Nightly", "0", "0", "successful"],
            "host": "engine-2",
            "received": "2024-05-01T03:00:00",
        },
    )
    assert status == 200 and reply["ok"] is True and reply["steps"] == []
    assert http_sink.wait_for(1)[0].json["title"] == "Nightly on engine-2"

    args = ["Nightly", "laptop/HD", "/", "laptop", "C:\\ifile.txt"]
    status, reply = call(port, "POST", "/events", {"event": "StartSource", "args": args})
    assert status == 200 and reply["exit_hint"] == 1
    (step,) = reply["steps"]
    assert (step["kind"], step["text"], step["path"]) == (
        "abort",
        "laptop is skipped tonight",
        "C:\\ifile.txt",
    )
    # Reported with the one-time token the reply carried (issue 7).
    results = [{"kind": "abort", "rule": "skip", "outcome": "ok"}]
    report = {"results": results, "steps_token": reply["steps_token"]}
    assert call(port, "POST", f"/events/{reply['event_id']}/steps", report)[0] == 200
    assert call(port, "POST", "/events/999/steps", report)[0] == 404

    journal = router.journal()
    assert [(e["name"], e["origin"]) for e in journal] == [
        ("EndScript", "http"),
        ("StartSource", "http"),
    ]
    assert journal[1]["steps"] == results

    bad = [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (json.dumps({"event": 5, "args": []}).encode(), 400),
        (json.dumps({"event": "EndScript", "args": "Nightly"}).encode(), 400),
        (json.dumps({"event": "EndScript", "args": ["a", 1]}).encode(), 400),
        (json.dumps({"event": "EndScript"}).encode(), 400),
        (json.dumps({"event": "", "args": []}).encode(), 400),
        (json.dumps({"event": "EndScript", "args": [], "received": "yesterday"}).encode(), 400),
        (json.dumps({"event": "EndScript", "args": [], "extra": 1}).encode(), 400),
        (b"\xff\xfe", 400),
    ]
    for body, expected in bad:
        status, reply = call(port, "POST", "/events", body)
        assert (status, reply["ok"]) == (expected, False), body
        assert reply["error"]
    # Over 1 MiB: refused on its Content-Length, before the body is read...
    big = json.dumps({"event": "EndScript", "args": ["x" * (1024 * 1024)]}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(
            b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(big)
        )
        raw.sendall(big[:1024])
        assert raw.recv(100).split(b"\r\n", 1)[0].split()[1] == b"413"
    # ...and a client that sends all of it still gets the 413, not a reset.
    for _ in range(5):
        assert call(port, "POST", "/events", big)[0] == 413
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.0 411")
    assert call(port, "GET", "/nowhere")[0] == 404
    assert call(port, "GET", "/events")[0] == 405
    assert len(router.journal()) == 2  # nothing stored for any of them

    status, health = call(port, "GET", "/healthz")
    assert status == 200 and health["ok"] is True and health["ruleset"]["ok"] is True
    assert health["ruleset"]["rules"] == 2

    assert router.handler("EndApp", "1/1/2024 10:00").returncode == 0  # via the socket
    inline = subprocess.run(  # a handler's inline path, while the service runs
        [sys.executable, "-c", INLINE, "EndApp", "1/1/2024 11:00"],
        env=router.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (inline.returncode, inline.stderr) == (0, "")
    wait_until(lambda: all(row[1] == "sent" for row in router.outbox()), "all sent", timeout=10)
    status, text = call(port, "GET", "/metrics")
    assert status == 200
    target = mask_url(f"json://{http_sink.address}/hook")
    lines = text.splitlines()
    for line in (
        'router_events_total{event="EndScript"} 1',
        'router_events_total{event="StartSource"} 1',
        'router_events_total{event="EndApp"} 2',
        'router_rule_matches_total{rule="notify"} 1',
        'router_rule_matches_total{rule="skip"} 1',
        f'router_notifications_total{{target="{target}",outcome="sent"}} 1',
        "router_outbox_depth 0",
        "router_ruleset_last_reload_successful 1",
        "router_handler_fallbacks_total 1",
        "# TYPE router_events_total counter",
        "# TYPE router_outbox_depth gauge",
    ):
        assert line in lines, line
    (stamp,) = [x for x in lines if x.startswith("router_ruleset_last_reload_timestamp_seconds ")]
    assert abs(float(stamp.split()[1]) - time.time()) < 300


INLINE = "import sys; from router.handler.inline import handle; sys.exit(handle(sys.argv[1:]))"


def test_a_token_is_required_when_http_is_not_on_loopback(router_at) -> None:
    """The rule follows the bind address: bound to 0.0.0.0 (every interface,
    so not loopback), the token is required even from 127.0.0.1, so a client
    on the same machine cannot get around it; without a token the service
    refuses to start on such an address."""
    port = free_port()
    rules = 'rule "log" on any log "{{ event }}"\n'
    refused = router_at(rules, f'listen = "0.0.0.0:{port}"', name="refused")
    refused.start(wait=False)
    assert refused.process is not None and refused.process.wait(timeout=30) == 2
    assert "needs a bearer token" in refused.log()

    router = router_at(
        rules,
        f'listen = "0.0.0.0:{port}"\ninsecure_http = true',  # no TLS: said explicitly
        env={"ROUTER_TOKEN": "s3cret-token"},
        name="ok",
    ).start()
    body = {"event": "EndApp", "args": ["1/1/2024 10:00"]}
    assert call(port, "POST", "/events", body)[0] == 401
    assert call(port, "POST", "/events", body, {"Authorization": "Bearer wrong"})[0] == 401
    assert call(port, "GET", "/metrics")[0] == 401
    assert call(port, "GET", "/healthz", headers={"Authorization": "Basic s3cret-token"})[0] == 401
    good = {"Authorization": "Bearer s3cret-token"}
    assert call(port, "POST", "/events", body, good)[0] == 200
    assert call(port, "GET", "/healthz", headers=good)[0] == 200
    assert [e["origin"] for e in router.journal()] == ["http"]
    assert "s3cret-token" not in router.log()


def test_the_loopback_tcp_socket_with_a_token_file(router_at, tmp_path) -> None:
    """Where Unix sockets are missing (Windows): loopback TCP, port and token
    in a private file. Forced here with ``local_socket = "tcp"``."""
    router = router_at('rule "log" on any log "{{ event }}"\n', 'local_socket = "tcp"').start()
    endpoint = router.state / "router.endpoint"
    assert stat.S_IMODE(endpoint.stat().st_mode) == 0o600
    assert not (router.state / "router.sock").exists()
    assert router.handler("EndApp", "1/1/2024 10:00").returncode == 0
    assert [e["origin"] for e in router.journal()] == ["service"]
    port = json.loads(endpoint.read_text())["port"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b'{"op": "event", "argv": ["EndApp"], "token": "guess"}\n')
        reply = json.loads(raw.makefile().readline())
    assert reply == {"ok": False, "error": "wrong or missing token"}
    assert len(router.journal()) == 1
    assert router.stop() == 0
    assert not endpoint.exists()


# ---------------------------------------------------------------------------
# The handler's own readers (in-process)
# ---------------------------------------------------------------------------


def test_the_handler_json_is_json() -> None:
    from router.handler.json_codec import dumps, loads

    value = {
        "argv": ["EndScript", "caf\u00e9", "\udcff raw byte", 'q"b\\s\n'],
        "numbers": [0, -3, 2.5, 1e300, True, False, None],
        "nested": {"a": [{}], "": []},
    }
    assert dumps(value) == json.dumps(value, separators=(",", ":"))
    assert loads(" " + json.dumps(value, indent=2) + "\n") == value
    for bad in ("", "{", '{"a": 1} x', "[1,]", "nul"):
        with pytest.raises(ValueError):
            loads(bad)
