"""The fleet (docs/operating.md, "Many engines"): `router serve` replicas on
one real PostgreSQL server, engines posting over HTTP, a replica killed
with SIGKILL mid-burst and a target down for part of it: nothing lost,
nothing sent twice but what was in flight; timers fire once across
replicas; /healthz is ready only while the database answers.
"""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from collections import Counter
from typing import Any

import pytest
from helpers import call, request, wait_until
from sinks import HttpSink, free_port

psycopg = pytest.importorskip("psycopg")

ENGINES, RUNS, SOURCES = 50, 10, 8
FLEET_RULES = """
target sink = "json://{address}/"
rule "run ended" on EndScript notify sink title "{{{{ host }}}} {{{{ error_message }}}}"
"""


def replica(router_at: Any, url: str, rules: str, name: str, extra: str = "") -> tuple[Any, int]:
    port = free_port()
    settings = f'state = "{url}"\nlisten = "127.0.0.1:{port}"\n{extra}'
    return router_at(rules, settings, name=name).start(), port


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as connection:
        return connection.execute(sql).fetchall()


def engine_events(number: int) -> list[dict[str, Any]]:
    """One engine's 100 events: 10 runs of a start, 8 sources and an end."""
    host = f"engine-{number:02d}"
    events = []
    for run in range(RUNS):
        events.append({"event": "StartScript", "args": ["Nightly", "11/28/2026 2:00 AM", ""]})
        for source in range(SOURCES):
            args = ["Nightly", f"ws{source}/C", "C:", f"ws{source}", "1024", "10", "9:00"]
            events.append({"event": "EndSource", "args": args + [""] * 7 + ["0", "0", "ok"]})
        events.append({"event": "EndScript", "args": ["Nightly", "0", "0", f"run-{run}"]})
    for index, event in enumerate(events):
        event.update(host=host, uid=f"{host}-{index}")
    return events


def test_two_replicas_lose_nothing_when_one_is_killed_mid_burst(
    router_at: Any, postgres_url: str, http_sink: HttpSink
) -> None:
    rules = FLEET_RULES.format(address=http_sink.address)
    first, first_port = replica(router_at, postgres_url, rules, "first")
    second, second_port = replica(router_at, postgres_url, rules, "second")
    ports = [first_port, second_port]
    posted = Counter()  # events accepted, by replica index
    lock = threading.Lock()
    failures: list[str] = []

    def engine(number: int) -> None:
        source = f"127.0.0.{number + 2}"  # each engine its own address, as on a network
        for event in engine_events(number):
            for attempt in range(200):  # bounded: the first that answers, in turn
                index = (number + attempt) % 2
                try:
                    status, _, _ = request(ports[index], "POST", "/events", event, source=source)
                except (OSError, http.client.HTTPException):  # the replica died mid-answer
                    status = 0
                if status == 200:
                    with lock:
                        posted[index] += 1
                    break
                time.sleep(0.1)  # 429 or 503 says: again in a moment
            else:
                failures.append(f"{event['uid']}: no replica took it")

    threads = [threading.Thread(target=engine, args=(n,)) for n in range(ENGINES)]
    for thread in threads:
        thread.start()
    total = ENGINES * RUNS * (SOURCES + 2)
    wait_until(lambda: sum(posted.values()) >= total // 5, "a fifth of the burst", timeout=60)
    http_sink.stop()  # the target goes down...
    wait_until(lambda: sum(posted.values()) >= total * 2 // 5, "two fifths", timeout=60)
    first.stop(signal.SIGKILL)  # ...and a replica dies, mid-burst
    wait_until(lambda: sum(posted.values()) >= total * 3 // 5, "three fifths", timeout=60)
    http_sink.start()  # the target is back
    for thread in threads:
        thread.join(timeout=120)
    assert failures == [] and sum(posted.values()) == total

    # 0 events lost: each once in the journal, whichever replica took it.
    uids = rows(postgres_url, "SELECT uid, COUNT(*) FROM events WHERE origin = 'http' GROUP BY uid")
    assert len(uids) == total and all(count == 1 for _, count in uids)
    # 0 notifications lost, none sent twice but what the killed one had in flight.
    expected = {f"engine-{n:02d} run-{r}" for n in range(ENGINES) for r in range(RUNS)}
    wait_until(
        lambda: {r.json["title"] for r in list(http_sink.requests)} >= expected,
        "every run's notification",
        timeout=120,
    )
    titles = Counter(r.json["title"] for r in http_sink.requests)
    assert set(titles) == expected
    assert sum(titles.values()) - len(expected) <= 2, titles.most_common(3)
    assert rows(postgres_url, "SELECT COUNT(*) FROM outbox WHERE state = 'sent'") == [
        (len(expected),)
    ]
    assert second.stop() == 0


def test_timers_fire_once_across_replicas(
    router_at: Any, postgres_url: str, http_sink: HttpSink
) -> None:
    rules = (
        f'target sink = "json://{http_sink.address}/"\n'
        'rule "heartbeat" expect EndScript where script == "Heartbeat" every 1s notify sink\n'
    )
    replicas = [replica(router_at, postgres_url, rules, name)[0] for name in ("a", "b")]
    wait_until(
        lambda: len(rows(postgres_url, "SELECT id FROM events WHERE name = 'expect'")) >= 5,
        "five missed windows",
        timeout=30,
    )
    for router in replicas:
        assert router.stop() == 0
    windows = [
        json.dumps(json.loads(fields)["window_end"], sort_keys=True)
        for (fields,) in rows(postgres_url, "SELECT fields FROM events WHERE name = 'expect'")
    ]
    assert len(windows) == len(set(windows)), "a window fired twice"
    fired = len(windows)
    wait_until(lambda: len(http_sink.requests) >= fired, "each firing's notification")
    assert len(http_sink.requests) == fired


def test_healthz_is_ready_only_while_the_database_answers(router_at: Any) -> None:
    """A database of its own, stopped under the service."""
    from postgres_server import Server, server_bin

    bin_dir = server_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server")
    server = Server(bin_dir).start()
    try:
        router, port = replica(router_at, server.new_database(), 'rule "log" on any log "x"\n', "h")
        status, health = call(port, "GET", "/healthz")
        assert status == 200 and health["status"] == "ok"
        server.stop()
        status, health = call(port, "GET", "/healthz")
        assert status == 503 and health["status"] == "unavailable"
        assert "does not answer" in health["problems"][0]
        assert "postgresql://postgres@127.0.0.1" in health["problems"][0]
        router.close()
    finally:
        server.stop()


def test_the_handler_and_the_commands_use_the_database_of_router_state_url(
    tmp_path: Any, postgres_url: str
) -> None:
    """No service: the inline handler journals in PostgreSQL, and the commands
    read it; the URL's password is never printed."""
    from helpers import Site

    site = Site(tmp_path)
    site.write_rules('rule "log" on any log "{{ event }}"\n')
    url = postgres_url.replace("postgres@", "postgres:hunter2@")  # trust auth ignores it
    site.env["ROUTER_STATE_URL"] = url
    upgraded = site.router("db", "upgrade")
    assert upgraded.code == 0 and "schema at version 4 (the latest)" in upgraded.out
    assert "hunter2" not in upgraded.out and ":****@" in upgraded.out
    again = site.router("db", "upgrade")
    assert "applied" not in again.out  # versioned, idempotent
    assert site.router("silence", "add", 'client == "LAPTOP-7"', "--for", "1h").out == "1\n"
    end = ["EndSource", "Nightly", "LAPTOP-7/C", "C:", "LAPTOP-7", "1", "1", "1:00"]
    assert site.handler(*end, "", "", "", "Set A", "Normal", "C:", "1", "-1028", "gone").code == 0
    (entry,) = site.history()
    assert entry["event"] == "EndSource"
    status = json.loads(site.router("status", "--format", "json").out)
    assert [s["source"] for s in status["sources"]] == ["LAPTOP-7/C"]
    assert [s["id"] for s in status["silences"]] == [1]
    assert not (site.state / "router.sqlite3").exists()  # the database holds it all
    assert all("hunter2" not in output for output in site.outputs)
