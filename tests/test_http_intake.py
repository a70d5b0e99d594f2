"""Issue 7 (items 7 and 11): HTTP intake against slow, greedy and malformed
clients; steps reported once, by whoever received the event; /metrics with
bounded labels.

Real parts only: ``router serve`` runs as a subprocess (tests/helpers.py
``Router``) and every client is a real socket on loopback. The service
bounds each client address, so a test that needs a second client connects
from 127.0.0.2 (loopback too, on Linux). Every wait is a condition with a
deadline. ``ClientLimits`` and ``Metrics`` are also driven in-process, with
explicit times, for the bounds a few requests cannot reach.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

import pytest
from helpers import Router, call, request, wait_until
from sinks import free_port

from router.service.client_limits import ClientLimits
from router.service.http import REQUEST_DEADLINE
from router.service.metrics import MAX_TARGETS, Metrics

pytestmark = pytest.mark.skipif(os.name != "posix", reason="Unix sockets, signals, modes")

#: EndScript gets a local step (log): its reply carries steps to report.
RULES = 'rule "log" on EndScript log "{{ script }}"\n'
END_SCRIPT = {"event": "EndScript", "args": ["Daily", "0", "0", "successful"]}


def _second_loopback_address() -> bool:
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
        return True
    except OSError:
        return False


needs_second_client = pytest.mark.skipif(
    not _second_loopback_address(), reason="127.0.0.2 is not a loopback address here"
)


def serve(
    make: Callable[..., Router], settings: str = "", rules: str = RULES
) -> tuple[Router, int]:
    """A started ``router serve`` with HTTP on a free loopback port."""
    port = free_port()
    router = make(rules, f'listen = "127.0.0.1:{port}"\n{settings}')
    return router.start(), port


def raw_exchange(port: int, data: bytes) -> tuple[int, bytes]:
    """Send ``data`` as it is, read the answer to its end: (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
        raw.sendall(data)
        answer = b""
        while True:
            chunk = raw.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def post(path: str, body: bytes, length: Optional[str] = None) -> bytes:
    """A POST as bytes; ``length`` replaces the Content-Length (latin-1, as
    http.server reads headers)."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def log_since(router: Router, start: int) -> str:
    return router.log()[start:]


# ---------------------------------------------------------------------------
# Slow and greedy clients
# ---------------------------------------------------------------------------


class Trickle:
    """Connections that send a request's headers, then one body byte a
    second, until the service closes them. ``answers[i]`` is what
    connection i read before its end, once it has ended."""

    def __init__(self, port: int, count: int) -> None:
        self.sockets = []
        for _ in range(count):
            connection = socket.create_connection(("127.0.0.1", port), timeout=10)
            connection.sendall(post("/events", b"", length="1000") + b"{")
            self.sockets.append(connection)
        self.answers: dict[int, bytes] = {}
        self.ended_at: dict[int, float] = {}
        self._read: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _end(self, index: int) -> None:
        with self._lock:
            self.answers[index] = self._read.pop(index, b"")
            self.ended_at[index] = time.monotonic()
        self.sockets[index].close()

    def _run(self) -> None:
        while True:
            live = {s: i for i, s in enumerate(self.sockets) if i not in self.answers}
            readable = select.select(list(live), [], [], 0)[0] if live else []
            for connection in readable:
                index = live.pop(connection)
                try:
                    chunk = connection.recv(65536)
                except OSError:
                    chunk = b""
                if chunk:
                    self._read[index] = self._read.get(index, b"") + chunk
                    live[connection] = index
                else:
                    self._end(index)
            if self._stop.wait(1.0):
                return
            for connection, index in live.items():
                try:
                    connection.send(b" ")
                except OSError:
                    self._end(index)

    def ended(self) -> int:
        with self._lock:
            return len(self.answers)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for connection in self.sockets:
            connection.close()


def test_trickling_clients_hold_threads_not_request_slots_and_are_cut_at_the_deadline(
    router_at,
) -> None:
    """The issue: 40 connections trickling a body byte every few seconds
    held all 32 request slots, and every legitimate POST got 503. Now a slot
    is taken once the body is read, and the whole request must arrive
    within REQUEST_DEADLINE of the accept, trickle or not."""
    router, port = serve(router_at, "max_client_connections = 64")
    opened = time.monotonic()
    trickle = Trickle(port, 40)
    try:
        for _ in range(3):  # while all 40 are held open
            status, reply = call(port, "POST", "/events", END_SCRIPT)
            assert status == 200 and reply["ok"] is True
        assert trickle.ended() == 0
        wait_until(
            lambda: trickle.ended() == 40,
            "the service to cut the trickling connections",
            timeout=REQUEST_DEADLINE + 10,
        )
        assert max(trickle.ended_at.values()) - opened < REQUEST_DEADLINE + 5
        assert min(trickle.ended_at.values()) - opened > REQUEST_DEADLINE - 1
        timed_out = [a for a in trickle.answers.values() if a.startswith(b"HTTP/1.0 408 ")]
        assert len(timed_out) >= 30, trickle.answers  # answered, unless the reset came first
    finally:
        trickle.close()
    assert call(port, "GET", "/healthz")[0] == 200
    assert "Traceback" not in router.log()


@needs_second_client
def test_a_client_past_its_connection_bound_is_refused_at_once_and_others_are_served(
    router_at,
) -> None:
    router, port = serve(router_at, "max_client_connections = 8")
    trickle = Trickle(port, 40)
    try:
        wait_until(lambda: trickle.ended() == 32, "32 connections refused at once", timeout=5)
        refused = list(trickle.answers.values())
        assert all(answer.startswith(b"HTTP/1.0 429 ") for answer in refused), refused
        assert b"Retry-After: 1\r\n" in refused[0]
        assert b"more than 8 open connections from 127.0.0.1" in refused[0]
        status, headers, _ = request(port, "POST", "/events", END_SCRIPT)
        assert (status, headers["Retry-After"]) == (429, "1")
        # Another client is served while 127.0.0.1 holds its 8.
        status, _, reply = request(port, "POST", "/events", END_SCRIPT, source="127.0.0.2")
        assert status == 200 and reply["ok"] is True
        assert trickle.ended() == 32
    finally:
        trickle.close()
    # Closed by the clients: the bound is free again.
    wait_until(lambda: call(port, "GET", "/healthz")[0] == 200, "127.0.0.1 to be served again")
    assert "Traceback" not in router.log()


@needs_second_client
def test_a_client_past_its_rate_gets_429_with_retry_after(router_at) -> None:
    router, port = serve(router_at, "rate_limit = 5")  # bursts of 10
    statuses = []
    retry_after = None
    started = time.monotonic()
    while len(statuses) < 40:
        status, headers, _ = request(port, "GET", "/healthz")
        statuses.append(status)
        if status == 429:
            retry_after = headers["Retry-After"]
    elapsed = time.monotonic() - started
    assert set(statuses) == {200, 429}
    assert 10 <= statuses.count(200) <= 10 + 5 * elapsed + 1
    assert retry_after is not None and int(retry_after) >= 1
    assert request(port, "GET", "/healthz", source="127.0.0.2")[0] == 200  # its own bucket
    wait_until(lambda: call(port, "GET", "/healthz")[0] == 200, "the bucket to refill", timeout=5)
    assert "Traceback" not in router.log()


@pytest.mark.parametrize(
    "setting",
    [
        'rate_limit = "fast"',
        "rate_limit = -1",
        "rate_limit = true",
        "max_client_connections = 0",
        "max_client_connections = 2.5",
        'max_client_connections = "8"',
    ],
)
def test_the_limits_in_router_toml_are_checked(router_at, setting) -> None:
    router = router_at(RULES, f'listen = "127.0.0.1:{free_port()}"\n{setting}')
    router.start(wait=False)
    assert router.process is not None and router.process.wait(timeout=30) == 2
    assert f"router.toml: {setting.split()[0]} must be" in router.log()


def test_client_limits_forget_idle_clients_and_bound_all_connections() -> None:
    limits = ClientLimits(rate=100.0, max_per_client=2, max_total=3)
    assert limits.admit("a", now=0.0) is None and limits.admit("a", now=0.0) is None
    refusal = limits.admit("a", now=0.0)
    assert refusal is not None and refusal.status == 429
    assert limits.admit("b", now=0.0) is None
    refusal = limits.admit("c", now=0.0)
    assert refusal is not None and refusal.status == 503  # all 3 taken
    for client in ("a", "a", "b"):
        limits.release(client)
    # A flood of new addresses: buckets of clients idle long enough to be
    # full again are forgotten, so memory follows the last few seconds.
    for number in range(20_000):
        at = number / 1000.0  # 1,000 new clients a second
        assert limits.admit(f"10.0.{number // 256}.{number % 256}", now=at) is None
        limits.release(f"10.0.{number // 256}.{number % 256}")
    assert limits.tracked() < 5_000


# ---------------------------------------------------------------------------
# Malformed requests: a 4xx, never a traceback or a dropped connection
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def intake(tmp_path_factory) -> Any:
    """One service for the malformed requests (each checks its own log lines)."""
    port = free_port()
    router = Router(tmp_path_factory.mktemp("intake"), RULES, f'listen = "127.0.0.1:{port}"')
    router.start()
    yield router, port
    router.close()


def _event(**fields: Any) -> bytes:
    return json.dumps({**END_SCRIPT, **fields}).encode()


def _report(*results: Any) -> bytes:
    return json.dumps({"results": list(results), "steps_token": "t"}).encode()


MALFORMED = {
    "deeply nested JSON": (
        post(
            "/events", b'{"event": "EndScript", "args": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        ),
        400,
    ),
    "received year 1": (post("/events", _event(received="0001-01-01T00:00:00")), 400),
    "received past year 9999 in local time": (
        post("/events", _event(received="9999-12-31T23:59:59-12:00")),
        400,
    ),
    "received before 1970": (post("/events", _event(received="1969-07-20T20:17:40Z")), 400),
    "24-digit event id": (post(f"/events/{'9' * 24}/steps", _report()), 404),
    "negative event id": (post("/events/-1/steps", _report()), 404),
    "zero-padded huge event id": (post(f"/events/{'0' * 30}1/steps", _report()), 404),
    "Content-Length ²": (post("/events", _event(), length="\u00b2"), 400),
    "Content-Length of 5,000 digits": (post("/events", _event(), length="9" * 5000), 413),
    "4,300-digit exit code": (
        post("/events/1/steps", _report({"kind": "run", "outcome": "ok", "exit_code": 10**4299})),
        400,
    ),
    "4,301-digit number": (
        post("/events", b'{"event": "EndScript", "args": [], "uid": ' + b"1" * 4301 + b"}"),
        400,
    ),
    "infinite seconds": (
        post(
            "/events/1/steps",
            _report({"kind": "run", "outcome": "ok"}).replace(
                b'"outcome": "ok"', b'"outcome": "ok", "seconds": 1e999'
            ),
        ),
        400,
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_request_gets_a_4xx_and_no_traceback(intake, case) -> None:
    router, port = intake
    data, expected = MALFORMED[case]
    start = len(router.log())
    before = len(router.journal())
    status, body = raw_exchange(port, data)
    assert status == expected
    assert json.loads(body)["ok"] is False
    assert len(router.journal()) == before  # nothing stored
    assert call(port, "GET", "/healthz")[0] == 200
    assert "Traceback" not in log_since(router, start)


def test_a_4300_digit_kb_is_kept_as_text_with_a_warning(intake) -> None:
    """Not a 4xx: like any argument that does not parse, it costs a warning
    in the journal, never the event (router/events.py)."""
    router, port = intake
    start = len(router.log())
    args = ["Daily", "c/C:", "C:\\", "c", "1" * 4300]
    status, reply = call(port, "POST", "/events", {"event": "EndSource", "args": args})
    assert status == 200 and reply["ok"] is True
    with router.db() as db:
        fields, warnings = db.execute(
            "SELECT fields, warnings FROM events WHERE id = ?", (reply["event_id"],)
        ).fetchone()
    assert json.loads(fields)["kb"] == "1" * 4300 and "bytes" not in json.loads(fields)
    assert "is not a valid int; kept as text" in json.loads(warnings)[0]
    assert "Traceback" not in log_since(router, start)


@pytest.mark.parametrize("how", ["in the headers", "in the body"])
def test_a_client_that_goes_away_mid_request_is_one_line_in_the_log(intake, how) -> None:
    router, port = intake
    start = len(router.log())
    half = post("/events", _event())
    half = half[: half.index(b"Content-Type")] if how == "in the headers" else half[:-10]
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(half)
    # Linger 0: the close resets the connection, as a client that dies does.
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()
    wait_until(lambda: "connection lost" in log_since(router, start), "the line in the log")
    lines = [line for line in log_since(router, start).splitlines() if "connection lost" in line]
    assert len(lines) == 1 and " INFO: http 127.0.0.1: connection lost: " in lines[0]
    assert "Traceback" not in log_since(router, start)


def test_the_local_socket_checks_what_the_handler_sends_the_same_way(intake) -> None:
    router, _ = intake
    path = str(router.state / "router.sock")

    def exchange(connection: socket.socket, message: bytes) -> dict[str, Any]:
        connection.sendall(message + b"\n")
        return json.loads(connection.makefile("rb").readline())

    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(path)
        nested = b'{"op": "event", "argv": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        reply = exchange(connection, nested)
    assert reply["ok"] is False and "not JSON" in reply["error"]

    event = {"op": "event", "argv": ["EndScript", "Sock", "0", "0", "ok"]}
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(path)
        reply = exchange(connection, json.dumps(event).encode())
        assert reply["ok"] is True and [s["kind"] for s in reply["steps"]] == ["log"]
        report = {"op": "steps", "event_id": reply["event_id"], "results": [{"kind": "log"}]}
        refused = exchange(connection, json.dumps(report).encode())
    assert refused == {"ok": False, "error": "results[0].outcome is required"}
    steps = next(e["steps"] for e in router.journal() if e["id"] == reply["event_id"])
    assert steps == [{"kind": "log", "rule": "log", "outcome": "pending"}]


# ---------------------------------------------------------------------------
# Steps: reported once, by whoever received the event
# ---------------------------------------------------------------------------


def test_steps_are_reported_once_with_the_token_the_reply_carried(router_at) -> None:
    router, port = serve(router_at)
    status, first = call(port, "POST", "/events", END_SCRIPT)
    assert status == 200 and [s["kind"] for s in first["steps"]] == ["log"]
    token = first["steps_token"]
    status, second = call(port, "POST", "/events", END_SCRIPT)
    assert second["steps_token"] != token
    with router.db() as db:
        kept = db.execute("SELECT steps_token FROM events WHERE id = ?", (first["event_id"],))
        assert kept.fetchone()[0] == hashlib.sha256(token.encode()).hexdigest()  # not the token

    url = f"/events/{first['event_id']}/steps"
    results = [{"kind": "log", "rule": "log", "outcome": "ok", "path": "/var/log/x"}]
    pending = [{"kind": "log", "rule": "log", "outcome": "pending"}]
    refused = [
        ({"results": results}, 403),  # no token
        ({"results": results, "steps_token": "guess"}, 403),
        ({"results": results, "steps_token": second["steps_token"]}, 403),  # another event's
        ({"results": [{"kind": "log", "outcome": "ok", "extra": 1}], "steps_token": token}, 400),
        ({"results": [{"kind": "bogus", "outcome": "ok"}], "steps_token": token}, 400),
        (
            {"results": [{"kind": "run", "outcome": "ok", "exit_code": "1"}], "steps_token": token},
            400,
        ),
        ({"results": [{"kind": "log", "outcome": "x" * 33}], "steps_token": token}, 400),
        (
            {
                "results": [{"kind": "run", "outcome": "ok", "output": "x" * 20_000}],
                "steps_token": token,
            },
            400,
        ),
        ({"results": [{"kind": "log", "outcome": "ok"}] * 501, "steps_token": token}, 400),
        ({"results": {"kind": "log"}, "steps_token": token}, 400),
        ({"results": ["log"], "steps_token": token}, 400),
    ]
    for body, expected in refused:
        status, reply = call(port, "POST", url, body)
        assert (status, reply["ok"]) == (expected, False), body
    assert router.journal()[0]["steps"] == pending  # nothing changed

    report = {"results": results, "steps_token": token}
    assert call(port, "POST", url, report) == (200, {"ok": True})
    again = {"results": [{"kind": "log", "rule": "log", "outcome": "error"}], "steps_token": token}
    status, reply = call(port, "POST", url, again)
    assert status == 409 and "already reported" in reply["error"]
    assert router.journal()[0]["steps"] == results

    # An event the handler sent over the socket has no HTTP token at all.
    assert router.handler("EndScript", "Local", "0", "0", "ok").returncode == 0
    local = router.journal()[-1]
    assert local["origin"] == "service" and local["steps"][0]["outcome"] == "ok"
    status, _ = call(port, "POST", f"/events/{local['id']}/steps", report)
    assert status == 403
    assert "Traceback" not in router.log()


# ---------------------------------------------------------------------------
# /metrics: bounded labels
# ---------------------------------------------------------------------------


def test_3000_made_up_event_names_leave_metrics_bounded(router_at) -> None:
    router, port = serve(
        router_at, "rate_limit = 0\nmax_client_connections = 64", rules="# no rules\n"
    )
    started = time.monotonic()

    def send(number: int) -> int:
        return call(port, "POST", "/events", {"event": f"Made-Up-{number}", "args": []})[0]

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(send, range(3000)))
    assert statuses == [200] * 3000
    status, text = call(port, "GET", "/metrics")
    assert status == 200
    lines = text.splitlines()
    assert len(lines) < 200
    assert 'router_events_total{event="unknown"} 3000' in lines
    assert time.monotonic() - started < 20
    assert "Traceback" not in router.log()


def test_metrics_count_rules_not_in_force_and_targets_past_the_cap_as_other() -> None:
    metrics = Metrics()
    in_force = {"notify"}
    decisions = [{"label": "notify", "matched": True}, {"label": "gone", "matched": True}]
    metrics.count_event("EndScript", "service", decisions, in_force)
    metrics.count_event("expect", "timer", [{"label": "x", "matched": False}, "odd"], in_force)
    for number in range(MAX_TARGETS + 50):
        metrics.count_sends(f"json://host-{number}/", "sent", 1)
    text = metrics.render(
        in_force, 0, 0, {"ok": True, "last_reload": 0.0, "rules": 1, "reloads": 0}
    )
    lines = text.splitlines()
    assert 'router_rule_matches_total{rule="notify"} 1' in lines
    assert 'router_rule_matches_total{rule="other"} 1' in lines
    assert 'router_timers_fired_total{kind="expect"} 1' in lines  # not an event
    targets = [line for line in lines if line.startswith("router_notifications_total{")]
    assert len(targets) == MAX_TARGETS + 1
    assert 'router_notifications_total{target="other",outcome="sent"} 50' in lines
    # A rule removed by a reload after it matched: "other" too.
    assert (
        'router_rule_matches_total{rule="other"} 2'
        in metrics.render(
            set(), 0, 0, {"ok": True, "last_reload": 0.0, "rules": 0, "reloads": 1}
        ).splitlines()
    )
