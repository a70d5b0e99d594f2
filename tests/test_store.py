"""The SQLite store: journal, outbox, throttle state, retention, privacy."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
import types
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from router.store import (
    ALREADY_REPORTED,
    DEAD,
    NO_EVENT,
    PENDING,
    SENT,
    STEPS_RECORDED,
    WRONG_TOKEN,
    JournalEntry,
    OutboxItem,
    Store,
    ThrottleUpdate,
    open_existing_store,
)
from router.store.database import Closed, Database
from router.store.sqlite import DB_NAME, SQLITE, connect_file

#: The tables as the first router created them (before schema versions).
FIRST_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    received TEXT NOT NULL,
    name TEXT NOT NULL,
    identity TEXT NOT NULL,
    status TEXT NOT NULL,
    streak INTEGER NOT NULL,
    host TEXT NOT NULL,
    origin TEXT NOT NULL,
    fields TEXT NOT NULL,
    args TEXT NOT NULL,
    warnings TEXT NOT NULL,
    decisions TEXT NOT NULL,
    steps TEXT NOT NULL,
    errors TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_identity ON events (name, identity, id);
CREATE INDEX IF NOT EXISTS events_by_received ON events (received);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES events (id),
    rule TEXT NOT NULL,
    target TEXT NOT NULL,
    url TEXT NOT NULL,
    url_masked TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    type TEXT NOT NULL,
    format TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    next_attempt REAL NOT NULL,
    claimed_until REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS throttle (
    rule TEXT NOT NULL,
    key TEXT NOT NULL,
    last_acted REAL,
    suppressed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rule, key)
);
CREATE TABLE IF NOT EXISTS expect_state (
    rule TEXT NOT NULL,
    key TEXT NOT NULL,
    armed_at REAL NOT NULL,
    last_match REAL,
    last_fields TEXT,
    fired_for REAL,
    PRIMARY KEY (rule, key)
);
CREATE TABLE IF NOT EXISTS digest_items (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,
    key TEXT NOT NULL,
    window_end REAL NOT NULL,
    event_id INTEGER NOT NULL REFERENCES events (id),
    fields TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS digest_items_due ON digest_items (window_end);
CREATE INDEX IF NOT EXISTS digest_items_open ON digest_items (rule, key, window_end);
"""


def entry(name: str = "EndScript", identity: str = "Daily", status: str = "success", **kw):
    received = kw.pop("received", datetime(2024, 1, 31, 18, 0))
    fields = {"script": identity, "errors": 0, "received": received, "duration": timedelta(1)}
    return JournalEntry(
        received=received,
        name=name,
        identity=identity,
        status=status,
        streak=kw.pop("streak", 1),
        host="backup01",
        fields=fields,
        args=[identity, "0", "0", "successful"],
        **kw,
    )


def _postgres_integrity_error() -> type:
    try:
        import psycopg
    except ImportError:
        return sqlite3.IntegrityError
    return psycopg.errors.IntegrityError


def item(url: str = "json://127.0.0.1:1/x") -> OutboxItem:
    return OutboxItem("rule", "ops", url, "json://127.0.0.1:1/x", "title", "body", "info", "text")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    """The store on each backend: SQLite in a private directory, and a
    database of a real PostgreSQL server."""
    if request.param == "postgresql":
        from router.store import postgres

        url = request.getfixturevalue("postgres_url")
        with Store(postgres.database(url)) as opened:
            yield opened
        return
    with Store.open(tmp_path / "state") as opened:
        yield opened


def test_state_directory_and_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Store.open(state) as store:
        store.record(entry(), [item()])
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for path in state.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_an_existing_shared_state_directory_is_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    Store.open(state).close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_wal_mode_and_busy_timeout(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    assert store.db.scalar("PRAGMA journal_mode") == "wal"
    assert store.db.scalar("PRAGMA busy_timeout") >= 5000
    store.close()


def test_journal_keeps_typed_fields_and_outbox_rows(store: Store) -> None:
    event_id, ids = store.record(entry(), [item(), item("json://127.0.0.1:2/y")])
    assert len(ids) == 2
    (journaled,) = store.journal.entries()
    assert journaled.id == event_id
    assert journaled.fields["received"] == datetime(2024, 1, 31, 18, 0)
    assert journaled.fields["duration"] == timedelta(days=1)
    rows = store.outbox.rows()
    assert {r.event_id for r in rows} == {event_id}
    assert all(r.state == PENDING and r.attempts == 0 for r in rows)


def test_journal_and_outbox_are_one_transaction(store: Store) -> None:
    """If queueing a notification fails, the event is not half-recorded."""
    broken = item()
    broken.title = None  # type: ignore[assignment]  # NOT NULL: the insert fails
    integrity = (sqlite3.IntegrityError, _postgres_integrity_error())
    with pytest.raises(integrity):
        store.record(entry(), [item(), broken])
    assert store.journal.entries() == []
    assert store.outbox.rows() == []


def test_history_is_the_latest_event_of_the_same_name_and_identity(store: Store) -> None:
    store.record(entry(status="failure", streak=1))
    store.record(entry(status="failure", streak=2))
    store.record(entry(identity="Weekly", status="success"))
    store.record(entry(name="EndSource", identity="Daily", status="success"))
    history = store.journal.history("EndScript", "Daily")
    assert history.previous["status"] == "failure"
    assert history.previous_streak == 2
    assert history.streak_for("failure") == 3
    assert history.streak_for("success") == 1
    assert store.journal.history("EndScript", "Nightly").previous == {}


def test_throttle_state_acts_then_counts_suppressed(store: Store) -> None:
    now = time.time()
    store.record(entry(), throttles=[ThrottleUpdate("r", "Daily", True, now)])
    store.record(entry(), throttles=[ThrottleUpdate("r", "Daily", False, now + 1)])
    store.record(entry(), throttles=[ThrottleUpdate("r", "Daily", False, now + 2)])
    state = store.state.throttle("r", "Daily")
    assert state.suppressed == 2
    assert abs(state.last_acted.timestamp() - now) < 1e-3
    store.record(entry(), throttles=[ThrottleUpdate("r", "Daily", True, now + 3600)])
    assert store.state.throttle("r", "Daily").suppressed == 0
    assert store.state.throttle("r", "Weekly").last_acted is None


def test_claims_are_exclusive_until_the_lease_runs_out(store: Store) -> None:
    store.record(entry(), [item(), item()])
    now = time.time()
    first = store.outbox.claim_due(now=now, lease=60)
    assert len(first) == 2
    assert store.outbox.claim_due(now=now + 1, lease=60) == []
    again = store.outbox.claim_due(now=now + 61, lease=60)  # the first claimer died
    assert [r.id for r in again] == [r.id for r in first]


def test_sent_failed_dead_and_retry(store: Store) -> None:
    _, (a, b, c) = store.record(entry(), [item(), item(), item()])
    now = time.time()
    store.outbox.claim_due(now=now)
    store.outbox.mark_sent(a, now=now)
    store.outbox.mark_failed(b, "HTTP 500", next_attempt=now + 10)
    store.outbox.mark_dead(c, "too old")
    by_id = {r.id: r for r in store.outbox.rows()}
    assert by_id[a].state == SENT and by_id[a].attempts == 1
    assert by_id[b].state == PENDING and by_id[b].last_error == "HTTP 500"
    assert by_id[c].state == DEAD
    assert store.outbox.claim_due(now=now + 1) == []  # b waits for its next attempt
    assert [r.id for r in store.outbox.claim_due(now=now + 11)] == [b]
    assert store.outbox.depth() == 1
    assert store.outbox.retry(c, now=now + 12) == 1
    assert {r.id for r in store.outbox.claim_due(now=now + 12)} == {c}
    assert store.outbox.retry(a) == 0  # a sent row is never sent again by retry


def test_prune_keeps_latest_per_identity_and_unsent_rows(store: Store) -> None:
    old = datetime(2020, 1, 1)
    for day in range(3):
        store.record(entry(received=old + timedelta(days=day)))
    store.record(entry(identity="Weekly", received=old), [item()])  # still pending
    store.record(entry(identity="Monthly", received=old))
    store.record(entry(identity="Monthly", received=datetime(2030, 1, 1)))
    removed = store.journal.prune(datetime(2025, 1, 1))
    remaining = {(e.identity, e.received) for e in store.journal.entries(limit=100)}
    assert removed == 3  # two old Daily entries and the older Monthly one
    assert (("Daily", old + timedelta(days=2))) in remaining  # latest of its identity
    assert ("Weekly", old) in remaining  # its notification is not sent yet
    assert ("Monthly", datetime(2030, 1, 1)) in remaining
    assert store.journal.history("EndScript", "Daily").previous  # previous/streak survive


def test_retention_runs_at_most_once_a_day(store: Store) -> None:
    old = datetime(2020, 1, 1)
    store.record(entry(received=old))
    store.record(entry(received=old + timedelta(days=1)))
    now = time.time()
    assert store.apply_retention(86400.0, now=now) == 1
    store.record(entry(identity="X", received=old))
    store.record(entry(identity="X", received=old + timedelta(days=1)))
    assert store.apply_retention(86400.0, now=now + 60) == 0  # pruned a minute ago
    assert store.apply_retention(86400.0, now=now + 2 * 86400) == 1


def test_existing_and_in_memory_stores_create_nothing(tmp_path: Path) -> None:
    config = types.SimpleNamespace(state_dir=tmp_path / "none")
    assert open_existing_store(config) is None
    assert not (tmp_path / "none").exists()
    memory = Store.in_memory()
    memory.record(entry())
    assert len(memory.journal.entries()) == 1
    memory.close()


WRITER = textwrap.dedent(
    """
    import sys
    from datetime import datetime
    from pathlib import Path
    from router.store import JournalEntry, OutboxItem, Store
    state, worker, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    with Store.open(state) as store:
        for n in range(count):
            e = JournalEntry(datetime.now(), "EndScript", f"w{worker}", "success", 1, "h",
                             {"n": n}, [str(n)])
            store.record(e, [OutboxItem("r", "t", "json://x", "json://x", "t", "b",
                                              "info", "text")])
    """
)


def test_concurrent_writers_lose_nothing_and_never_see_locked(tmp_path: Path) -> None:
    state = tmp_path / "state"
    Store.open(state).close()
    workers, count = 6, 60
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(state), str(w), str(count)],
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        for w in range(workers)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in processes]
    assert all(p.returncode == 0 for p in processes), errors
    assert not any("locked" in e for e in errors)
    db = sqlite3.connect(str(state / DB_NAME))
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == workers * count
    assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == workers * count
    per_worker = db.execute("SELECT identity, COUNT(*) FROM events GROUP BY identity").fetchall()
    assert sorted(per_worker) == [(f"w{w}", count) for w in range(workers)]


def test_the_same_event_offered_twice_is_journaled_once(store: Store) -> None:
    first = entry()
    first.uid = "3f2a"
    event_id, ids = store.record(first, [item()])
    again = entry()
    again.uid = "3f2a"
    assert store.record(again, [item()]) == (event_id, ids)
    assert len(store.journal.entries()) == 1 and len(store.outbox.rows()) == 1
    other = entry()
    other.uid = "77b0"
    store.record(other)
    store.record(entry())  # no uid: always a new entry
    assert len(store.journal.entries()) == 3


def test_an_older_database_gains_the_new_columns(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    old = sqlite3.connect(str(state / DB_NAME))
    old.executescript(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, received TEXT NOT NULL, name TEXT NOT NULL,"
        " identity TEXT NOT NULL, status TEXT NOT NULL, streak INTEGER NOT NULL,"
        " host TEXT NOT NULL, origin TEXT NOT NULL, fields TEXT NOT NULL, args TEXT NOT NULL,"
        " warnings TEXT NOT NULL, decisions TEXT NOT NULL, steps TEXT NOT NULL,"
        " errors TEXT NOT NULL);"
    )
    old.close()
    with Store.open(state) as store:
        upgraded = entry()
        upgraded.uid = "a1"
        store.record(upgraded)
        store.record(upgraded)
        assert len(store.journal.entries()) == 1


CLAIMER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from router.store import Store
    with Store.open(Path(sys.argv[1])) as store:
        print(len(store.outbox.claim_due(lease=3600)))
    """
)


def test_claims_of_a_deliverer_that_is_gone_are_taken_back(tmp_path: Path) -> None:
    """After kill -9, rows a dead process had claimed go out at once, not
    when their lease runs out; a live claimant keeps its rows."""
    state = tmp_path / "state"
    with Store.open(state) as store:
        store.record(entry(), [item(), item()])
    claimed = subprocess.run(
        [sys.executable, "-c", CLAIMER, str(state)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert claimed.stdout.strip() == "2"  # claimed for an hour, then the process ended
    with Store.open(state) as store:
        store.record(entry(), [item()])
        assert len(store.outbox.claim_due(lease=3600)) == 1  # claimed by this, living, process
        assert store.outbox.claim_due() == []
        assert store.outbox.release_abandoned_claims() == 2
        assert len(store.outbox.claim_due()) == 2
        assert store.outbox.release_abandoned_claims() == 0  # ours are not abandoned


def test_steps_are_recorded_once_also_for_rows_older_than_the_flag(tmp_path: Path) -> None:
    """A database of the first schema gains steps_reported and steps_token;
    its rows whose steps are no longer all pending count as reported."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with sqlite3.connect(str(state / DB_NAME)) as db:
        db.executescript(FIRST_SCHEMA)  # as the first version created it
        columns = "received, name, identity, status, streak, host, origin, fields, args,"
        columns += " warnings, decisions, steps, errors"
        for steps in (
            '[{"kind": "log", "outcome": "ok"}]',
            '[{"kind": "log", "outcome": "pending"}]',
        ):
            db.execute(
                f"INSERT INTO events ({columns}) VALUES"
                " ('2024-01-31T18:00:00', 'EndScript', 'x', 'info', 1, 'h', 'service',"
                " '{}', '[]', '[]', '[]', ?, '[]')",
                (steps,),
            )
    done = [{"kind": "log", "rule": "r", "outcome": "ok"}]
    with Store.open(state) as store:
        assert store.journal.record_steps(1, done) == ALREADY_REPORTED  # reported before the flag
        assert store.journal.record_steps(2, done) == STEPS_RECORDED
        assert (
            store.journal.record_steps(2, [{"kind": "log", "outcome": "error"}]) == ALREADY_REPORTED
        )
        assert store.journal.entries()[0].steps == done
        assert store.journal.record_steps(3, done) == NO_EVENT
        http = entry(origin="http")
        http.steps = [{"kind": "log", "rule": "r", "outcome": PENDING}]
        event_id, _ = store.record(http)
        assert not store.journal.set_steps_token(2, "t")  # not received over HTTP
        assert store.journal.set_steps_token(event_id, "t1") and store.journal.set_steps_token(
            event_id, "t2"
        )
        assert store.journal.record_steps(event_id, done, "t1") == WRONG_TOKEN  # replaced by t2
        assert store.journal.record_steps(event_id, done, "t2") == STEPS_RECORDED
        assert not store.journal.set_steps_token(event_id, "t3")  # reported: no new token


def test_threads_that_come_and_go_share_pooled_connections(tmp_path: Path) -> None:
    """The service answers each request on a thread of its own: those reuse
    idle connections instead of opening (and keeping) one each."""
    opened: list[sqlite3.Connection] = []

    def connect() -> sqlite3.Connection:
        opened.append(connect_file(str(tmp_path / "pool.sqlite3")))
        return opened[-1]

    db = Database(connect, SQLITE, "pool")
    for _ in range(50):
        thread = threading.Thread(target=db.scalar, args=("SELECT 1",))
        thread.start()
        thread.join()
    assert len(opened) == 1
    # Held at once, each thread has its own; given back, they wait for reuse.
    held = threading.Barrier(3)

    def hold() -> None:
        with db.connection():
            held.wait(timeout=30)

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(opened) == 3 and len(set(map(id, opened))) == 3
    db.close()
    with pytest.raises(Closed):
        db.scalar("SELECT 1")
