"""The SQLite store: journal, outbox, throttle state, retention, privacy."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from router.store import (
    _SCHEMA,
    ALREADY_REPORTED,
    DB_NAME,
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
    apply_retention,
)


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


def item(url: str = "json://127.0.0.1:1/x") -> OutboxItem:
    return OutboxItem("rule", "ops", url, "json://127.0.0.1:1/x", "title", "body", "info", "text")


@pytest.fixture()
def store(tmp_path: Path):
    with Store(tmp_path / "state") as opened:
        yield opened


def test_state_directory_and_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Store(state) as store:
        store.record_event(entry(), [item()])
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for path in state.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_an_existing_shared_state_directory_is_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    Store(state).close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_wal_mode_and_busy_timeout(store: Store) -> None:
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000


def test_journal_keeps_typed_fields_and_outbox_rows(store: Store) -> None:
    event_id, ids = store.record_event(entry(), [item(), item("json://127.0.0.1:2/y")])
    assert len(ids) == 2
    (journaled,) = store.journal()
    assert journaled.id == event_id
    assert journaled.fields["received"] == datetime(2024, 1, 31, 18, 0)
    assert journaled.fields["duration"] == timedelta(days=1)
    rows = store.outbox()
    assert {r.event_id for r in rows} == {event_id}
    assert all(r.state == PENDING and r.attempts == 0 for r in rows)


def test_journal_and_outbox_are_one_transaction(store: Store) -> None:
    """If queueing a notification fails, the event is not half-recorded."""
    broken = item()
    broken.title = None  # type: ignore[assignment]  # NOT NULL: the insert fails
    with pytest.raises(sqlite3.IntegrityError):
        store.record_event(entry(), [item(), broken])
    assert store.journal() == []
    assert store.outbox() == []


def test_history_is_the_latest_event_of_the_same_name_and_identity(store: Store) -> None:
    store.record_event(entry(status="failure", streak=1))
    store.record_event(entry(status="failure", streak=2))
    store.record_event(entry(identity="Weekly", status="success"))
    store.record_event(entry(name="EndSource", identity="Daily", status="success"))
    history = store.history("EndScript", "Daily")
    assert history.previous["status"] == "failure"
    assert history.previous_streak == 2
    assert history.streak_for("failure") == 3
    assert history.streak_for("success") == 1
    assert store.history("EndScript", "Nightly").previous == {}


def test_throttle_state_acts_then_counts_suppressed(store: Store) -> None:
    now = time.time()
    store.record_event(entry(), throttles=[ThrottleUpdate("r", "Daily", True, now)])
    store.record_event(entry(), throttles=[ThrottleUpdate("r", "Daily", False, now + 1)])
    store.record_event(entry(), throttles=[ThrottleUpdate("r", "Daily", False, now + 2)])
    state = store.throttle_state("r", "Daily")
    assert state.suppressed == 2
    assert abs(state.last_acted.timestamp() - now) < 1e-3
    store.record_event(entry(), throttles=[ThrottleUpdate("r", "Daily", True, now + 3600)])
    assert store.throttle_state("r", "Daily").suppressed == 0
    assert store.throttle_state("r", "Weekly").last_acted is None


def test_claims_are_exclusive_until_the_lease_runs_out(store: Store) -> None:
    store.record_event(entry(), [item(), item()])
    now = time.time()
    first = store.claim_due(now=now, lease=60)
    assert len(first) == 2
    assert store.claim_due(now=now + 1, lease=60) == []
    again = store.claim_due(now=now + 61, lease=60)  # the first claimer died
    assert [r.id for r in again] == [r.id for r in first]


def test_sent_failed_dead_and_retry(store: Store) -> None:
    _, (a, b, c) = store.record_event(entry(), [item(), item(), item()])
    now = time.time()
    store.claim_due(now=now)
    store.mark_sent(a, now=now)
    store.mark_failed(b, "HTTP 500", next_attempt=now + 10)
    store.mark_dead(c, "too old")
    by_id = {r.id: r for r in store.outbox()}
    assert by_id[a].state == SENT and by_id[a].attempts == 1
    assert by_id[b].state == PENDING and by_id[b].last_error == "HTTP 500"
    assert by_id[c].state == DEAD
    assert store.claim_due(now=now + 1) == []  # b waits for its next attempt
    assert [r.id for r in store.claim_due(now=now + 11)] == [b]
    assert store.outbox_depth() == 1
    assert store.retry(c, now=now + 12) == 1
    assert {r.id for r in store.claim_due(now=now + 12)} == {c}
    assert store.retry(a) == 0  # a sent row is never sent again by retry


def test_prune_keeps_latest_per_identity_and_unsent_rows(store: Store) -> None:
    old = datetime(2020, 1, 1)
    for day in range(3):
        store.record_event(entry(received=old + timedelta(days=day)))
    store.record_event(entry(identity="Weekly", received=old), [item()])  # still pending
    store.record_event(entry(identity="Monthly", received=old))
    store.record_event(entry(identity="Monthly", received=datetime(2030, 1, 1)))
    removed = store.prune(datetime(2025, 1, 1))
    remaining = {(e.identity, e.received) for e in store.journal(limit=100)}
    assert removed == 3  # two old Daily entries and the older Monthly one
    assert (("Daily", old + timedelta(days=2))) in remaining  # latest of its identity
    assert ("Weekly", old) in remaining  # its notification is not sent yet
    assert ("Monthly", datetime(2030, 1, 1)) in remaining
    assert store.history("EndScript", "Daily").previous  # previous/streak survive


def test_retention_runs_at_most_once_a_day(store: Store) -> None:
    old = datetime(2020, 1, 1)
    store.record_event(entry(received=old))
    store.record_event(entry(received=old + timedelta(days=1)))
    now = time.time()
    assert apply_retention(store, 86400.0, now=now) == 1
    store.record_event(entry(identity="X", received=old))
    store.record_event(entry(identity="X", received=old + timedelta(days=1)))
    assert apply_retention(store, 86400.0, now=now + 60) == 0  # pruned a minute ago
    assert apply_retention(store, 86400.0, now=now + 2 * 86400) == 1


def test_existing_and_in_memory_stores_create_nothing(tmp_path: Path) -> None:
    assert Store.existing(tmp_path / "none") is None
    assert not (tmp_path / "none").exists()
    memory = Store.in_memory()
    memory.record_event(entry())
    assert len(memory.journal()) == 1
    memory.close()


WRITER = textwrap.dedent(
    """
    import sys
    from datetime import datetime
    from pathlib import Path
    from router.store import JournalEntry, OutboxItem, Store
    state, worker, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    with Store(state) as store:
        for n in range(count):
            e = JournalEntry(datetime.now(), "EndScript", f"w{worker}", "success", 1, "h",
                             {"n": n}, [str(n)])
            store.record_event(e, [OutboxItem("r", "t", "json://x", "json://x", "t", "b",
                                              "info", "text")])
    """
)


def test_concurrent_writers_lose_nothing_and_never_see_locked(tmp_path: Path) -> None:
    state = tmp_path / "state"
    Store(state).close()
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
    event_id, ids = store.record_event(first, [item()])
    again = entry()
    again.uid = "3f2a"
    assert store.record_event(again, [item()]) == (event_id, ids)
    assert len(store.journal()) == 1 and len(store.outbox()) == 1
    other = entry()
    other.uid = "77b0"
    store.record_event(other)
    store.record_event(entry())  # no uid: always a new entry
    assert len(store.journal()) == 3


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
    with Store(state) as store:
        upgraded = entry()
        upgraded.uid = "a1"
        store.record_event(upgraded)
        store.record_event(upgraded)
        assert len(store.journal()) == 1


CLAIMER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from router.store import Store
    with Store(Path(sys.argv[1])) as store:
        print(len(store.claim_due(lease=3600)))
    """
)


def test_claims_of_a_deliverer_that_is_gone_are_taken_back(tmp_path: Path) -> None:
    """After kill -9, rows a dead process had claimed go out at once, not
    when their lease runs out; a live claimant keeps its rows."""
    state = tmp_path / "state"
    with Store(state) as store:
        store.record_event(entry(), [item(), item()])
    claimed = subprocess.run(
        [sys.executable, "-c", CLAIMER, str(state)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert claimed.stdout.strip() == "2"  # claimed for an hour, then the process ended
    with Store(state) as store:
        store.record_event(entry(), [item()])
        assert len(store.claim_due(lease=3600)) == 1  # claimed by this, living, process
        assert store.claim_due() == []
        assert store.release_abandoned_claims() == 2
        assert len(store.claim_due()) == 2
        assert store.release_abandoned_claims() == 0  # ours are not abandoned


def test_steps_are_recorded_once_also_for_rows_older_than_the_flag(tmp_path: Path) -> None:
    """A database of the first schema gains steps_reported and steps_token;
    its rows whose steps are no longer all pending count as reported."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with sqlite3.connect(str(state / DB_NAME)) as db:
        db.executescript(_SCHEMA)  # as the first version created it
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
    with Store(state) as store:
        assert store.record_steps(1, done) == ALREADY_REPORTED  # reported before the flag
        assert store.record_steps(2, done) == STEPS_RECORDED
        assert store.record_steps(2, [{"kind": "log", "outcome": "error"}]) == ALREADY_REPORTED
        assert store.journal()[0].steps == done
        assert store.record_steps(3, done) == NO_EVENT
        http = entry(origin="http")
        http.steps = [{"kind": "log", "rule": "r", "outcome": PENDING}]
        event_id, _ = store.record_event(http)
        assert not store.set_steps_token(2, "t")  # not received over HTTP
        assert store.set_steps_token(event_id, "t1") and store.set_steps_token(event_id, "t2")
        assert store.record_steps(event_id, done, "t1") == WRONG_TOKEN  # replaced by t2
        assert store.record_steps(event_id, done, "t2") == STEPS_RECORDED
        assert not store.set_steps_token(event_id, "t3")  # reported: no new token
