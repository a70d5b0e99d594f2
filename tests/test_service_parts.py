"""The service's parts, each alone (router/service/): the request decoder, the
intake servers with an owner of the test's own, the delivery scheduler, the
timer loop and the metrics.

Real parts only: a real Store in the test's directory, rules compiled from
rule text, notifications through Apprise to the HTTP sink in tests/sinks.py,
real sockets on loopback. No part is started as ``router serve``: that is
tests/test_service.py's and tests/test_http_intake.py's. Every wait is a
condition with a deadline.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import pytest
from helpers import call, queue_rows, wait_until
from sinks import ERROR, HttpSink

from router import config as settings
from router.checker import check_text
from router.config import Delivery
from router.delivery import DeliveryReport, sendable
from router.dispatch import Outcome, process
from router.engine import Ruleset
from router.events import event_from_argv
from router.loader import build_ruleset
from router.service import Service
from router.service.client_limits import ClientLimits
from router.service.http import HttpServer
from router.service.intake import IntakeOwner
from router.service.local_socket import LocalServer
from router.service.metrics import Metrics
from router.service.requests import (
    MAX_ARG,
    MAX_ARGS,
    MAX_HOST,
    MAX_NAME,
    MAX_UID,
    EventRequest,
    RequestError,
    http_event,
    http_steps,
    parse_json_object,
    socket_event,
    socket_steps,
)
from router.service.scheduler import DeliveryScheduler
from router.service.timer_loop import TimerLoop
from router.store import DEAD, SENT, DueRow, Store
from router.urls import mask_url

pytestmark = pytest.mark.skipif(os.name != "posix", reason="Unix sockets, file modes")

ARGS = ["Daily", "0", "0", "successful"]


def ruleset(text: str) -> Ruleset:
    result = check_text(text, "parts.rules")
    errors = [f"{d.line}:{d.column}: {d.message}" for d in result.diagnostics if d.is_error]
    assert not errors, errors
    return build_ruleset(result)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "state") as opened:
        yield opened


# ---------------------------------------------------------------------------
# The request decoder: one check, the same words on both paths
# ---------------------------------------------------------------------------


def as_socket(event: Any, args: Any, **fields: Any) -> dict[str, Any]:
    """An event request as the local socket carries it."""
    return {"op": "event", "argv": [event, *args], **fields}


def as_http(event: Any, args: Any, **fields: Any) -> dict[str, Any]:
    """The same request as ``POST /events`` carries it."""
    return {"event": event, "args": args, **fields}


def test_a_good_request_decodes_the_same_on_both_paths() -> None:
    fields = {"host": "engine-2", "received": "2024-05-01T03:00:00", "uid": "u-1"}
    expected = EventRequest(["EndScript", *ARGS], "engine-2", datetime(2024, 5, 1, 3, 0), "u-1")
    assert socket_event(as_socket("EndScript", ARGS, **fields), token=None) == expected
    assert http_event(as_http("EndScript", ARGS, **fields), client_host="10.0.0.9") == expected
    # Without a host of its own, an HTTP event is its client's; a handler's is the service's.
    assert http_event(as_http("EndApp", []), client_host="10.0.0.9").host == "10.0.0.9"
    assert socket_event(as_socket("EndApp", []), token=None).host is None
    # The TCP socket's token, when it has one, is part of the request.
    tokened = as_socket("EndApp", [], token="s3cret")
    assert socket_event(tokened, token="s3cret").argv == ["EndApp"]


#: (what is wrong, the event name, its args, other fields, the error both paths give)
BAD_VALUES = [
    ("name not a string", 5, [], {}, "event must be a string, not int"),
    ("empty name", "", [], {}, "event must not be empty"),
    ("long name", "E" * (MAX_NAME + 1), [], {}, f"event is longer than {MAX_NAME} characters"),
    ("arg not a string", "EndScript", ["a", 1], {}, "args[1] must be a string, not int"),
    ("long arg", "EndScript", ["x" * (MAX_ARG + 1)], {}, "args[0] is longer than"),
    ("too many args", "EndScript", ["a"] * (MAX_ARGS + 1), {}, "args has more than"),
    ("host not a string", "EndApp", [], {"host": 7}, "host must be a string, not int"),
    ("long host", "EndApp", [], {"host": "h" * (MAX_HOST + 1)}, "host is longer than"),
    ("received not ISO", "EndApp", [], {"received": "yesterday"}, "not an ISO 8601"),
    ("received empty", "EndApp", [], {"received": ""}, "received must not be empty"),
    ("received year 1", "EndApp", [], {"received": "0001-01-01T00:00:00"}, "between the years"),
    ("received before 1970", "EndApp", [], {"received": "1969-07-20T20:17:40Z"}, "between"),
    ("uid empty", "EndApp", [], {"uid": ""}, "uid must not be empty"),
    ("uid not a string", "EndApp", [], {"uid": 12}, "uid must be a string, not int"),
    ("long uid", "EndApp", [], {"uid": "u" * (MAX_UID + 1)}, "uid is longer than"),
    ("unknown field", "EndApp", [], {"uid": "u", "extra": 1}, "unknown field(s): extra"),
]


def refusal(decode: Any, *args: Any, **kwargs: Any) -> RequestError:
    with pytest.raises(RequestError) as caught:
        decode(*args, **kwargs)
    return caught.value


@pytest.mark.parametrize("case", BAD_VALUES, ids=[case[0] for case in BAD_VALUES])
def test_a_bad_value_is_refused_with_the_same_words_on_both_paths(case) -> None:
    _, event, args, fields, words = case
    by_socket = refusal(socket_event, as_socket(event, args, **fields), token=None)
    by_http = refusal(http_event, as_http(event, args, **fields), client_host="127.0.0.1")
    assert str(by_socket) == str(by_http)
    assert words in str(by_http)
    assert by_socket.status == by_http.status == 400


def test_each_path_refuses_a_request_of_the_wrong_shape_in_its_own_words() -> None:
    socket_shapes = [
        ({"op": "steps"}, None, "expected op 'event', not 'steps'", 400),
        ({"op": "event", "argv": []}, None, "argv must be a non-empty list", 400),
        ({"op": "event", "argv": "EndApp"}, None, "argv must be a non-empty list", 400),
        ({"op": "event", "argv": ["EndApp"], "token": "guess"}, "s3cret", "wrong or", 401),
        ({"op": "event", "argv": ["EndApp"]}, "s3cret", "wrong or missing token", 401),
    ]
    for message, token, words, status in socket_shapes:
        refused = refusal(socket_event, message, token=token)
        assert words in str(refused) and refused.status == status, (message, refused)
    http_shapes = [
        ({"event": "EndApp"}, "event and args are required"),
        ({"event": "EndApp", "args": "x"}, "args must be a list of strings, not str"),
    ]
    for body, words in http_shapes:
        refused = refusal(http_event, body, client_host="h")
        assert words in str(refused) and refused.status == 400, (body, refused)


def test_a_steps_report_is_checked_the_same_way_on_both_paths() -> None:
    results = [{"kind": "log", "rule": "log", "outcome": "ok"}]
    assert socket_steps({"op": "steps", "event_id": 4, "results": results}, 4).results == results
    report = http_steps({"results": results, "steps_token": "t"})
    assert (report.results, report.steps_token) == (results, "t")

    for bad in ([{"kind": "log"}], [{"kind": "bogus", "outcome": "ok"}], {"kind": "log"}):
        by_socket = refusal(socket_steps, {"op": "steps", "event_id": 4, "results": bad}, 4)
        by_http = refusal(http_steps, {"results": bad, "steps_token": "t"})
        assert str(by_socket) == str(by_http) and by_socket.status == by_http.status == 400

    assert "for this event" in str(refusal(socket_steps, {"op": "steps", "event_id": 5}, 4))
    assert refusal(http_steps, {"results": results}).status == 403  # no token


def test_only_a_json_object_is_a_request() -> None:
    assert parse_json_object(b'{"a": 1}', "the body") == {"a": 1}
    nested = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for data, words in (
        (nested, "the body is not JSON"),
        (b"\xff\xfe", "the body is not JSON"),
        (b"[1, 2]", "the body must be a JSON object"),
    ):
        assert words in str(refusal(parse_json_object, data, "the body"))


# ---------------------------------------------------------------------------
# The intake servers, with an owner of the test's own
# ---------------------------------------------------------------------------


class Owner:
    """An IntakeOwner that is no Service: the events go straight into a
    store with a ruleset, and every request is kept."""

    def __init__(self, store: Store, rules: Ruleset) -> None:
        self.stopping = threading.Event()
        self.store = store
        self.rules = rules
        self.requests: list[tuple[EventRequest, str]] = []

    def ingest(self, request: EventRequest, *, origin: str) -> Outcome:
        self.requests.append((request, origin))
        event = event_from_argv(request.argv, host=request.host, received=request.received)
        token = "t0ken" if origin == "http" else None
        return process(
            event, self.rules, self.store, origin=origin, uid=request.uid, steps_token=token
        )

    def record_steps(
        self, event_id: int, results: list[dict[str, Any]], steps_token: Optional[str] = None
    ) -> str:
        return self.store.journal.record_steps(event_id, results, steps_token)

    def health(self) -> dict[str, Any]:
        return {"ok": True}

    def metrics_text(self) -> str:
        return "router_test 1\n"


@pytest.fixture
def intake(store: Store, tmp_path: Path) -> Iterator[tuple[Owner, LocalServer, int]]:
    """Both servers, started, for one Owner; the HTTP server's port."""
    owner = Owner(store, ruleset('rule "log" on EndScript log "{{ script }}"\n'))
    local = LocalServer(owner, tmp_path / "state", "unix")
    unbounded = ClientLimits(rate=0, max_per_client=8)
    http = HttpServer(owner, "127.0.0.1:0", None, False, unbounded)
    local.start()
    http.start()
    try:
        yield owner, local, http.address[1]
    finally:
        for server in (local, http):
            server.stop_accepting()
            server.close()


def over_socket(path: Path, *messages: dict[str, Any]) -> list[dict[str, Any]]:
    """Send ``messages`` on one connection, one line each; the replies."""
    replies = []
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(10)
        connection.connect(str(path))
        reader = connection.makefile("rb")
        for message in messages:
            connection.sendall(json.dumps(message).encode() + b"\n")
            replies.append(json.loads(reader.readline()))
    return replies


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="a Unix socket")
def test_the_servers_work_for_any_owner_and_refuse_alike(intake) -> None:
    owner, local, port = intake
    (reply, done) = over_socket(
        local.path,
        as_socket("EndScript", ARGS, uid="u-1"),
        {"op": "steps", "event_id": 1, "results": [{"kind": "log", "outcome": "ok"}]},
    )
    assert reply["ok"] is True and [s["kind"] for s in reply["steps"]] == ["log"]
    assert done == {"ok": True}
    status, answer = call(port, "POST", "/events", as_http("EndScript", ARGS))
    assert status == 200 and answer["steps_token"] == "t0ken"
    assert [origin for _, origin in owner.requests] == ["service", "http"]
    assert owner.requests[1][0].host == "127.0.0.1"  # the client's, over HTTP
    assert call(port, "GET", "/metrics") == (200, "router_test 1\n")

    for _, event, args, fields, _words in BAD_VALUES[:4] + BAD_VALUES[-2:]:
        (by_socket,) = over_socket(local.path, as_socket(event, args, **fields))
        status, by_http = call(port, "POST", "/events", as_http(event, args, **fields))
        assert (by_socket["ok"], by_http["ok"], status) == (False, False, 400)
        assert by_socket["error"] == by_http["error"]
    assert len(owner.requests) == 2  # nothing refused reached the owner
    assert owner.requests[0][0].uid == "u-1"
    (first, _) = reversed(owner.store.journal.entries(limit=10))
    assert first.steps == [{"kind": "log", "outcome": "ok"}]  # reported on the socket


def test_the_service_is_an_intake_owner(tmp_path: Path) -> None:
    """Service keeps the IntakeOwner's signatures (the servers only know those)."""
    members = [name for name in vars(IntakeOwner) if not name.startswith("_")]
    assert sorted(members) == [
        "backup_status",
        "health",
        "ingest",
        "metrics_text",
        "record_steps",
        "use_store",
    ]
    for name in members:
        ours = inspect.signature(getattr(Service, name))
        assert ours == inspect.signature(getattr(IntakeOwner, name)), name
    toml = tmp_path / "router.toml"
    toml.write_text(f'rules_dir = "rules"\nstate_dir = "{tmp_path / "state"}"\n')
    toml.chmod(0o600)
    service = Service(settings.load(str(toml)))  # builds its servers; starts nothing
    assert isinstance(service.stopping, threading.Event) and service.store is None
    assert service.date_order == "mdy"  # the protocol's one attribute besides stopping


# ---------------------------------------------------------------------------
# The delivery scheduler
# ---------------------------------------------------------------------------

#: Short timeouts; a failed row is tried again a second later.
POLICY = Delivery.defaults(
    connect_timeout=1.0, read_timeout=1.0, first_delay=1.0, max_delay=1.0, concurrency=4
)


def queue(
    store: Store, *urls: str, identity: str = "Daily", status: str = "successful"
) -> list[int]:
    """Journal an event with one outbox row per URL; the rows' ids."""
    return queue_rows(store, list(urls), identity=identity, status=status)


class Scheduler:
    """A DeliveryScheduler on ``store`` with its own metrics; the admin
    reports it makes are kept in ``reports``."""

    def __init__(self, store: Store, policy: Delivery = POLICY) -> None:
        self.metrics = Metrics()
        self.reports: list[tuple[str, str]] = []
        self.part = DeliveryScheduler(
            store, policy, self.metrics, lambda title, body: self.reports.append((title, body))
        )

    def __enter__(self) -> DeliveryScheduler:
        self.part.start()
        return self.part

    def __exit__(self, *exc: object) -> None:
        self.part.stop()


def states(store: Store, ids: list[int]) -> list[str]:
    rows = {row.id: row.state for row in store.outbox.rows(limit=1000)}
    return [rows[row_id] for row_id in ids]


def test_the_scheduler_sends_the_due_rows_and_counts_them(store: Store, http_sink) -> None:
    url = f"json://{http_sink.address}/hook"
    made = Scheduler(store)
    before = queue(store, url, url)  # queued before it starts: found at its first look
    with made as scheduler:
        http_sink.wait_for(2)
        after = queue(store, url)
        scheduler.wake()
        http_sink.wait_for(3)
        ids = before + after
        wait_until(lambda: states(store, ids) == [SENT] * 3, "the rows marked sent")
    assert [request.path for request in http_sink.requests] == ["/hook"] * 3
    assert made.metrics.notifications == {(mask_url(url), "sent"): 3}
    assert made.reports == []


def test_a_failing_url_is_held_until_its_row_is_due_while_another_flows(store: Store) -> None:
    with HttpSink() as failing, HttpSink() as working:
        failing.mode = ERROR
        bad, good = f"json://{failing.address}/bad", f"json://{working.address}/good"
        bad_rows = queue(store, bad, bad, bad)
        with Scheduler(store, POLICY.replace(first_delay=2.0, max_delay=2.0)) as scheduler:
            failing.wait_for(3)  # side by side: the same backup, the same status

            def held_as_the_rows_say() -> Optional[float]:
                """The URL's hold, once all three failed: their own backoff."""
                rows = [store.outbox.row(row_id) for row_id in bad_rows]
                if not all(row is not None and row.attempts for row in rows):
                    return None
                held = scheduler.held_until(bad)
                return held if held == max(row.next_attempt for row in rows) else None

            held = wait_until(held_as_the_rows_say, "the failing URL held")
            # While the failing URL waits, another URL's rows go at once.
            for _ in range(3):
                queue(store, good)
                scheduler.wake()
            assert max(request.at for request in working.wait_for(3)) < held
            assert len(failing.requests) == 3  # none tried again meanwhile
            # When its rows are due again, the URL is tried again, and not before.
            assert failing.wait_for(4)[3].at >= held
    assert {request.path for request in failing.requests} == {"/bad"}


def test_one_url_gets_at_most_per_url_sends_at_once(store: Store, http_sink) -> None:
    http_sink.delay = 0.3  # a slow target: sends overlap
    url = f"json://{http_sink.address}/slow"
    for number in range(9):
        queue(store, url, identity=f"script {number}")
    with Scheduler(store, POLICY.replace(per_url=3, concurrency=8)):
        http_sink.wait_for(9)
    assert http_sink.most_at_once == 3


def test_a_recovery_is_not_sent_before_its_failure(store: Store, http_sink) -> None:
    """One backup's rows with the same status go side by side; its recovery
    waits until the failures before it are answered."""
    http_sink.delay = 0.3
    url = f"json://{http_sink.address}/ordered"
    queue(store, url, url, identity="Daily", status="failure")
    queue(store, url, identity="Daily", status="success")
    queue(store, url, identity="Weekly", status="success")
    with Scheduler(store, POLICY.replace(per_url=4)):
        requests = http_sink.wait_for(4)
    by_title = {}
    for request in requests:
        by_title.setdefault((request.json["title"], request.json["message"]), []).append(request)
    failures = by_title[("Daily", "failure")]
    (recovery,) = by_title[("Daily", "success")]
    (other,) = by_title[("Weekly", "success")]
    assert len(failures) == 2
    first_answer = min(http_sink.answered)
    assert recovery.at >= first_answer >= max(f.at for f in failures) and other.at < first_answer


def test_which_rows_may_go_side_by_side() -> None:
    def row(number: int, key: str, status: str = "failure", timer: bool = False) -> DueRow:
        return DueRow(number, key, status, timer)

    ids = lambda rows: [r.id for r in rows]  # noqa: E731
    due = [row(1, "a"), row(2, "a"), row(3, "b"), row(4, "a", "success"), row(5, "a")]
    # Same backup, same status: side by side; a recovery, and what follows it, wait.
    assert ids(sendable(due, [], 10)) == [1, 2, 3]
    assert ids(sendable(due, [], 2)) == [1, 2]
    # Behind a failure in flight, more failures go; the recovery waits.
    assert ids(sendable(due[3:], [row(2, "a")], 10)) == []
    assert ids(sendable([row(6, "a", "success")], [], 10)) == [6]
    # A timer's rows: one at a time.
    timers = [row(7, "digest", "info", True), row(8, "digest", "info", True), row(9, "c")]
    assert ids(sendable(timers, [], 10)) == [7, 9]
    assert ids(sendable(timers[1:], [timers[0]], 10)) == [9]


def test_a_dead_letter_is_reported_to_the_admin(store: Store, http_sink) -> None:
    http_sink.mode = ERROR
    made = Scheduler(store, POLICY.replace(max_age=0.0))
    (row_id,) = queue(store, f"json://{http_sink.address}/gone")
    with made:
        http_sink.wait_for(1)
        wait_until(lambda: made.reports, "the report of the dead letter")
    ((title, body),) = made.reports
    assert title == "retro-router: a notification to ops could not be delivered"
    assert f"router outbox retry {row_id}" in body
    assert states(store, [row_id]) == [DEAD]
    assert made.metrics.notifications[(mask_url(f"json://{http_sink.address}/gone"), "dead")] == 1


# ---------------------------------------------------------------------------
# The timer loop
# ---------------------------------------------------------------------------


def test_the_timer_loop_fires_an_expect_window(store: Store, tmp_path: Path) -> None:
    rules = ruleset(
        'target ops = "json://127.0.0.1:9/hook"\n'
        'rule "daily" expect EndScript where script == "Daily" every 1s\n'
        '  notify ops title "Daily missing for {{ overdue | duration }}"\n'
    )
    queued = threading.Event()
    stopping = threading.Event()
    loop = TimerLoop(
        store,
        lambda: rules,
        event_log=tmp_path / "events.log",
        retention=86400.0,
        on_queued=queued.set,
        stopping=stopping,
        interval=0.05,
    )
    loop.start()
    try:
        assert queued.wait(timeout=10), "the expect window to fire"
    finally:
        stopping.set()
        loop.join()
    entries = [(e.name, e.origin) for e in store.journal.entries(limit=10)]
    assert ("expect", "timer") in entries
    titles = [row.title for row in store.outbox.rows(limit=10)]
    assert titles and all(title.startswith("Daily missing for ") for title in titles)


def test_a_failing_timer_is_logged_once_not_every_tick(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def broken() -> Ruleset:
        calls.append(1)
        raise RuntimeError("no ruleset")

    stopping = threading.Event()
    loop = TimerLoop(
        store,
        broken,
        event_log=None,
        retention=86400.0,
        on_queued=lambda: None,
        stopping=stopping,
        interval=0.01,
    )
    with caplog.at_level(logging.ERROR, logger="router.service"):
        loop.start()
        try:
            wait_until(lambda: len(calls) >= 5, "five ticks")
        finally:
            stopping.set()
            loop.join()
    assert [r.getMessage() for r in caplog.records] == ["timers failed"]


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------

STATUS = {"ok": True, "last_reload": 0.0, "rules": 1, "reloads": 0}


def test_metrics_count_the_journal_once_whoever_wrote_it(store: Store) -> None:
    rules = ruleset('rule "notify" on EndScript log "{{ script }}"\n')
    for origin in ("service", "handler", "http"):
        event = event_from_argv(["EndScript", *ARGS], host="h")
        process(event, rules, store, origin=origin)
    metrics = Metrics()
    in_force = {"notify"}
    metrics.count_journal(store.journal, in_force)
    metrics.count_journal(store.journal, in_force)  # nothing new: nothing counted
    lines = metrics.render(in_force, 0, 0, STATUS).splitlines()
    assert 'router_events_total{event="EndScript"} 3' in lines
    assert 'router_rule_matches_total{rule="notify"} 3' in lines
    assert "router_handler_fallbacks_total 1" in lines

    process(event_from_argv(["EndApp", "1/1/2024 10:00"], host="h"), rules, store)
    metrics.count_journal(store.journal, in_force)
    assert 'router_events_total{event="EndApp"} 1' in metrics.render(in_force, 0, 0, STATUS)


def test_metrics_count_deliveries_and_reports_from_many_threads() -> None:
    metrics = Metrics()
    report = DeliveryReport(sent=[1, 2], failed=[3], dead=[])

    def work() -> None:
        for _ in range(500):
            metrics.count_delivery("json://sink/", report)
            metrics.count_admin_report()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert metrics.notifications == {
        ("json://sink/", "sent"): 8000,
        ("json://sink/", "failed"): 4000,
    }
    lines = metrics.render(set(), 2, 1, STATUS).splitlines()
    assert 'router_notifications_total{target="json://sink/",outcome="sent"} 8000' in lines
    assert "router_admin_reports_total 4000" in lines
    assert "router_outbox_depth 2" in lines and "router_outbox_dead 1" in lines
