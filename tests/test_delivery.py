"""Delivery end to end through Apprise, to real servers on 127.0.0.1.

Every test sends for real: to the HTTP sink (json://, form://) or the SMTP
sink (mailto://), which can be told to fail, hang or go away. The store is a
real SQLite store in a temporary directory. Time that matters for the
backoff is a fixed clock handed to ``drain``; time that matters for
timeouts is measured.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest
from helpers import queue_rows
from sinks import ERROR, HANG, HttpSink, SmtpSink

from router.config import Delivery
from router.delivery import (
    deliver,
    drain,
    next_delay,
    scrub,
    send,
)
from router.store import DEAD, PENDING, SENT, OutboxRow, Store

#: Short timeouts so hung servers cost a second, not twenty.
FAST = Delivery.defaults(connect_timeout=1.0, read_timeout=1.0)
T0 = 1_700_000_000.0
PASSWORD = "hunter2pass"
TOKEN = "s3cret-token-value"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "state") as opened:
        yield opened


def queue(store: Store, urls: list[str], now: Optional[float] = None) -> list[int]:
    """Journal a failed Nightly with one outbox row per URL; the rows' ids."""
    title, body = "Backup failed", "Nightly: 3 errors"
    return queue_rows(store, urls, identity="Nightly", title=title, body=body, now=now)


def row(store: Store, row_id: int) -> OutboxRow:
    (found,) = [r for r in store.outbox.rows(limit=10_000) if r.id == row_id]
    return found


def clock(at: float):  # noqa: ANN201 - a tiny fake clock
    return lambda: at


# ---------------------------------------------------------------------------
# What arrives
# ---------------------------------------------------------------------------


def test_json_delivery_carries_title_body_type_and_headers(http_sink: HttpSink) -> None:
    url = f"json://{http_sink.address}/hook?+X-Token={TOKEN}"
    assert send(url, "Backup failed", "Nightly: 3 errors", "failure", "text", FAST) is None
    (request,) = http_sink.wait_for(1)
    assert request.method == "POST"
    assert request.path == "/hook"
    assert request.headers["X-Token"] == TOKEN
    assert request.json["title"] == "Backup failed"
    assert request.json["message"] == "Nightly: 3 errors"
    assert request.json["type"] == "failure"


def test_form_delivery_carries_title_body_type(http_sink: HttpSink) -> None:
    url = f"form://{http_sink.address}/form"
    assert send(url, "Disk low", "Volume X: 2 GB free", "warning", "text", FAST) is None
    (request,) = http_sink.wait_for(1)
    assert request.path == "/form"
    assert request.form["title"] == "Disk low"
    assert request.form["message"] == "Volume X: 2 GB free"
    assert request.form["type"] == "warning"


def test_mailto_delivery_arrives_with_subject_and_body(smtp_sink: SmtpSink) -> None:
    url = (
        f"mailto://user:{PASSWORD}@127.0.0.1:{smtp_sink.port}"
        "?from=router@example.com&to=admin@example.com&mode=insecure"
    )
    assert send(url, "Backup failed", "Nightly: 3 errors", "failure", "text", FAST) is None
    (mail,) = smtp_sink.wait_for(1)
    assert mail.subject == "Backup failed"
    assert "Nightly: 3 errors" in mail.text()
    assert mail.rcpt_tos == ["admin@example.com"]
    assert mail.mail_from == "router@example.com"
    assert smtp_sink.logins == [("user", PASSWORD)]


def test_drain_sends_and_marks_sent(http_sink: HttpSink, store: Store) -> None:
    (row_id,) = queue(store, [f"json://{http_sink.address}/a"], now=T0)
    report = drain(store, FAST, now=clock(T0 + 1))
    assert report.sent == [row_id]
    assert http_sink.wait_for(1)[0].json["title"] == "Backup failed"
    sent = row(store, row_id)
    assert (sent.state, sent.attempts, sent.sent_at, sent.last_error) == (SENT, 1, T0 + 1, None)
    assert drain(store, FAST, now=clock(T0 + 2)).sent == []  # nothing left to send


# ---------------------------------------------------------------------------
# Failures: why, backoff, dead letters
# ---------------------------------------------------------------------------


def test_http_500_keeps_row_pending_with_a_masked_reason(http_sink: HttpSink, store: Store) -> None:
    http_sink.mode = ERROR
    url = f"json://admin:{PASSWORD}@{http_sink.address}/hook?+X-Token={TOKEN}"
    (row_id,) = queue(store, [url], now=T0)
    report = drain(store, FAST, now=clock(T0 + 5))
    assert report.failed == [row_id]
    http_sink.wait_for(1)
    failed = row(store, row_id)
    assert failed.state == PENDING
    assert failed.attempts == 1
    assert failed.last_error is not None
    assert failed.last_error.startswith("HTTP 500")
    for secret in (PASSWORD, TOKEN):
        assert secret not in failed.last_error
        assert secret not in report.errors[row_id]
    assert failed.next_attempt == T0 + 5 + 10
    # Not due yet: a drain before next_attempt sends nothing.
    assert drain(store, FAST, now=clock(T0 + 14)).failed == []
    assert len(http_sink.requests) == 1


def test_each_concurrent_send_reports_its_own_reason(store: Store) -> None:
    """The log capture tells sends apart although Apprise logs from its own threads."""
    with HttpSink() as a, HttpSink() as b:
        a.mode, a.status = ERROR, 500
        b.mode, b.status = ERROR, 404
        ids = queue(store, [f"json://{a.address}/x", f"json://{b.address}/y"] * 3, now=T0)
        report = drain(store, FAST, now=clock(T0))
    assert sorted(report.failed) == sorted(ids)
    for row_id in ids:
        expected = "HTTP 500" if row(store, row_id).url.endswith("/x") else "HTTP 404"
        assert report.errors[row_id].startswith(expected), report.errors[row_id]


def test_next_delay_doubles_from_first_delay_up_to_the_cap() -> None:
    policy = Delivery.defaults()
    assert [next_delay(n, policy) for n in range(1, 6)] == [10, 20, 40, 80, 160]
    assert next_delay(9, policy) == 2560
    assert next_delay(10, policy) == 3600  # 5120 capped
    assert next_delay(10_000, policy) == 3600
    small = Delivery.defaults(first_delay=1, max_delay=5)
    assert [next_delay(n, small) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_repeated_failures_back_off_in_the_store(http_sink: HttpSink, store: Store) -> None:
    http_sink.mode = ERROR
    (row_id,) = queue(store, [f"json://{http_sink.address}/a"], now=T0)
    at = T0
    for attempt, delay in enumerate([10, 20, 40, 80], start=1):
        assert drain(store, FAST, now=clock(at)).failed == [row_id]
        current = row(store, row_id)
        assert current.attempts == attempt
        assert current.next_attempt == at + delay
        at = current.next_attempt
    assert len(http_sink.wait_for(4)) == 4


def test_failure_past_max_age_becomes_a_dead_letter(http_sink: HttpSink, store: Store) -> None:
    http_sink.mode = ERROR
    young, old = queue(
        store, [f"json://{http_sink.address}/a", f"json://{http_sink.address}/b"], now=T0
    )
    store.db.run("UPDATE outbox SET created = ? WHERE id = ?", (T0 - 1000, old))
    report = drain(store, FAST, now=clock(T0 + 86_400 - 1))
    assert report.failed == [young]
    assert report.dead == [old]
    dead = row(store, old)
    assert dead.state == DEAD
    assert dead.last_error is not None and "500" in dead.last_error
    assert row(store, young).state == PENDING
    # A dead letter is never claimed again, until `router outbox retry`.
    assert drain(store, FAST, now=clock(T0 + 10**6)).dead == [young]
    assert store.outbox.retry(old, now=T0 + 10**6) == 1
    assert row(store, old).state == PENDING


# ---------------------------------------------------------------------------
# Timeouts and deadlines
# ---------------------------------------------------------------------------


def test_hung_server_send_returns_within_the_timeouts(http_sink: HttpSink) -> None:
    http_sink.mode = HANG
    url = f"json://{http_sink.address}/hook"
    started = time.monotonic()
    error = send(url, "t", "b", "info", "text", FAST)
    elapsed = time.monotonic() - started
    http_sink.wait_for(1)  # the request did arrive; the answer never came
    assert error is not None and error.startswith("timed out")
    # The read timeout ended it, well before the wall-clock bound (send_bound).
    assert elapsed < FAST.connect_timeout + FAST.read_timeout < FAST.send_bound


def test_hung_smtp_server_send_returns_within_the_timeouts(http_sink: HttpSink) -> None:
    """An HTTP server that never answers is a hung SMTP server too (no greeting)."""
    http_sink.mode = HANG
    url = f"mailto://user:{PASSWORD}@{http_sink.address}?from=a@example.com&mode=insecure"
    started = time.monotonic()
    error = send(url, "t", "b", "info", "text", FAST)
    elapsed = time.monotonic() - started
    assert error is not None and error.startswith("timed out")
    assert PASSWORD not in error
    # smtplib got the timeout (its default here would be 15 s): the wall
    # clock bound (send_bound) was not needed.
    assert elapsed < FAST.connect_timeout + FAST.read_timeout < FAST.send_bound


def test_a_hung_target_does_not_delay_a_healthy_one(store: Store) -> None:
    policy = Delivery.defaults(connect_timeout=1.0, read_timeout=2.0)
    with HttpSink() as hung, HttpSink() as healthy:
        hung.mode = HANG
        # The hung target's rows come first: sent in order, they would block.
        ids = queue(
            store,
            [
                f"json://{hung.address}/h",
                f"json://{hung.address}/h",
                f"json://{healthy.address}/ok",
            ],
        )
        report = drain(store, policy)
        (hung_request,) = hung.wait_for(1)
        (ok_request,) = healthy.wait_for(1)
    assert report.sent == [ids[2]]
    assert sorted(report.failed) == ids[:2]
    # The hung request could not time out before read_timeout had passed.
    assert ok_request.at < hung_request.at + policy.read_timeout
    assert report.errors[ids[0]].startswith("timed out")
    # After one timeout, the hung URL's next row is not tried in this pass.
    assert len(hung.requests) == 1
    assert report.errors[ids[1]].startswith(f"not sent: row #{ids[0]} to this URL timed out")
    assert row(store, ids[1]).attempts == 1


def test_deadline_passed_leaves_rows_pending_and_unclaimed(
    http_sink: HttpSink, store: Store
) -> None:
    ids = queue(store, [f"json://{http_sink.address}/a", f"json://{http_sink.address}/b"])
    report = drain(store, FAST, deadline=time.time() - 1)
    assert sorted(report.skipped) == ids
    assert report.sent == report.failed == []
    for row_id in ids:
        assert (row(store, row_id).state, row(store, row_id).attempts) == (PENDING, 0)
    assert http_sink.requests == []
    # Released: the next deliverer can claim them at once, and sends them.
    assert sorted(drain(store, FAST).sent) == ids
    assert len(http_sink.wait_for(2)) == 2


def test_deadline_cuts_a_hung_send_short_without_counting_an_attempt(
    http_sink: HttpSink, store: Store
) -> None:
    """The wall clock ends the send: the socket timeouts (10 s) are far off."""
    http_sink.mode = HANG
    policy = Delivery.defaults(connect_timeout=10.0, read_timeout=10.0)
    ids = queue(store, [f"json://{http_sink.address}/a"] * 2)  # one URL: one after another
    started = time.time()
    report = drain(store, policy, deadline=started + 1.5)
    elapsed = time.time() - started
    assert elapsed < 3.0
    assert sorted(report.skipped) == ids
    http_sink.wait_for(1)
    assert len(http_sink.requests) == 1  # the second row was never started
    for row_id in ids:
        assert (row(store, row_id).state, row(store, row_id).attempts) == (PENDING, 0)
    assert [r.id for r in store.outbox.claim_due(ids=ids)] == ids


def test_target_down_then_back_delivers_each_row_exactly_once(
    http_sink: HttpSink, store: Store
) -> None:
    http_sink.stop()
    ids = queue(store, [f"form://{http_sink.address}/n{i}" for i in range(3)] * 2)
    report = drain(store, FAST)
    assert sorted(report.failed) == ids
    for row_id in ids:
        down = row(store, row_id)
        assert (down.state, down.attempts) == (PENDING, 1)
        assert down.last_error
    http_sink.start()  # same port
    assert store.outbox.retry() == len(ids)
    report = drain(store, FAST)
    assert sorted(report.sent) == ids
    http_sink.wait_for(len(ids))
    assert sorted(r.path for r in http_sink.requests) == sorted(
        f"/n{i}" for i in range(3) for _ in range(2)
    )
    assert drain(store, FAST).sent == []
    assert len(http_sink.requests) == len(ids)


def test_deliver_with_no_rows_does_nothing(store: Store) -> None:
    report = deliver(store, [], FAST)
    assert (report.sent, report.failed, report.dead, report.skipped) == ([], [], [], [])


def test_unusable_url_is_a_failure_with_a_reason(store: Store) -> None:
    (row_id,) = queue(store, ["nosuchservice://user:topsecret@host/x"])
    report = drain(store, FAST)
    assert report.failed == [row_id]
    assert "no service for 'nosuchservice://'" in report.errors[row_id]
    assert "topsecret" not in report.errors[row_id]


# ---------------------------------------------------------------------------
# Masking error texts
# ---------------------------------------------------------------------------


def test_scrub_removes_the_url_and_its_secrets() -> None:
    url = f"json://admin:{PASSWORD}@example.com:8080/hook?+X-Token={TOKEN}&method=PUT"
    text = f"ConnectionError: {url} refused; retried with token {TOKEN} and password {PASSWORD}"
    cleaned = scrub(text, url)
    assert PASSWORD not in cleaned and TOKEN not in cleaned
    assert "example.com" in cleaned and "refused" in cleaned


def test_scrub_removes_path_tokens_the_mask_hides() -> None:
    url = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#backups"
    cleaned = scrub(
        "POST https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ failed",
        url,
    )
    assert "A1BRTD4JD" not in cleaned and "TIiajkdnlazkcOXrIdevi7FQ" not in cleaned


# ---------------------------------------------------------------------------
# Targets -> URLs
