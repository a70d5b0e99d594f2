"""The state directory's SQLite database: journal, outbox, throttle and timer state.

One file, WAL mode, a busy timeout: safe for many short-lived handlers and
the service at once. Every event is journaled together with its outbox rows
in one transaction, before any delivery is attempted, so an event that was
received is never lost, and a notification that was decided is never lost.

``previous`` and ``streak`` need no table of their own: they are the
latest journal entry of the same event name and identity.

The URL an outbox row is sent to is a secret (it carries credentials); it
is stored because a retry needs it, in a file only the router's user can
read, and every display goes through ``url_masked``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Optional

from router.engine import History, ThrottleState
from router.trust import require_private, require_private_dir

DB_NAME = "router.sqlite3"
BUSY_TIMEOUT_MS = 10_000
PENDING, SENT, DEAD = "pending", "sent", "dead"
#: What ``Store.record_steps`` did: recorded them, or refused because there
#: is no such event, the steps token is wrong, or they were reported already.
STEPS_RECORDED, NO_EVENT, WRONG_TOKEN, ALREADY_REPORTED = (
    "recorded",
    "no such event",
    "wrong steps token",
    "already reported",
)

_SCHEMA = """
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


# ---------------------------------------------------------------------------
# Typed values <-> JSON
# ---------------------------------------------------------------------------


def encode_value(value: Any) -> Any:
    """Field values as JSON, keeping datetimes and durations recognisable."""
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, timedelta):
        return {"$seconds": value.total_seconds()}
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    return value


def decode_value(value: Any) -> Any:
    """The inverse of ``encode_value``; a marker that does not decode (an
    odd row) stays as it is."""
    if isinstance(value, dict):
        try:
            if "$datetime" in value:
                return datetime.fromisoformat(value["$datetime"])
            if "$seconds" in value:
                return timedelta(seconds=value["$seconds"])
        except (TypeError, ValueError, OverflowError):
            return value
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    return value


def encode_fields(fields: dict[str, Any]) -> str:
    return json.dumps({k: encode_value(v) for k, v in fields.items()}, ensure_ascii=False)


def decode_fields(text: str) -> dict[str, Any]:
    """A fields column; empty when an old or odd row holds no JSON object."""
    value = _json_value(text)
    if not isinstance(value, dict):
        return {}
    return {str(k): decode_value(v) for k, v in value.items()}


def _json_value(text: Any) -> Any:
    """A journal column's JSON value; the text itself when it is not JSON."""
    if not isinstance(text, (str, bytes)):
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def json_list(text: Any) -> list[Any]:
    """A list column (args, warnings, decisions, steps, errors) as a list,
    whatever an old or odd row holds: nothing is lost and nothing raises
    (not JSON: the text as the one item; one value: that value alone)."""
    value = _json_value(text)
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def token_hash(token: str) -> str:
    """What the store keeps of a steps token (never the token)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _steps_pending(text: Any) -> bool:
    """True while no step of the event has been reported (every one is
    still "pending", as journaled); rows from before ``steps_reported``."""
    return all(isinstance(s, dict) and s.get("outcome") == PENDING for s in json_list(text))


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


@dataclass
class JournalEntry:
    """One event as journaled: what arrived, what was decided, what happened."""

    received: datetime
    name: str
    identity: str
    status: str
    streak: int
    host: str
    fields: dict[str, Any]
    args: list[str]
    warnings: list[str] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Who received it: "handler", "service", "http".
    origin: str = "handler"
    #: Chosen by whoever received the event (a handler): if the same event is
    #: offered twice (the service journaled it, then its answer was lost and the
    #: handler fell back to the inline path), it is journaled once.
    uid: Optional[str] = None
    id: Optional[int] = None


@dataclass
class OutboxItem:
    """A notification to queue: one destination URL."""

    rule: str
    target: str
    url: str
    url_masked: str
    title: str
    body: str
    type: str
    format: str


@dataclass
class OutboxRow(OutboxItem):
    id: int = 0
    event_id: int = 0
    state: str = PENDING
    attempts: int = 0
    created: float = 0.0
    next_attempt: float = 0.0
    last_error: Optional[str] = None
    sent_at: Optional[float] = None


@dataclass
class ThrottleUpdate:
    """What a throttled rule's state becomes after this event."""

    rule: str
    key: str
    acted: bool
    at: float


@dataclass
class ExpectMatch:
    """An event matched an ``expect`` rule: its window starts again at ``at``."""

    rule: str
    key: str
    at: float
    fields: dict[str, Any]


@dataclass
class DigestItem:
    """An event collected by a ``digest`` rule, for the window open at ``at``
    (or a new one, ``window`` seconds long, starting at ``at``)."""

    rule: str
    key: str
    at: float
    window: float
    fields: dict[str, Any]


@dataclass
class ExpectState:
    """One expect rule's window for one key (the values it pins with ``==``)."""

    rule: str
    key: str
    armed_at: float
    last_match: Optional[float]
    last_fields: Optional[dict[str, Any]]
    #: The deadline of the window it last fired for; None since the last match.
    fired_for: Optional[float]

    @property
    def base(self) -> float:
        """Where the window is counted from: the last match, else the arming."""
        return self.last_match if self.last_match is not None else self.armed_at


@dataclass
class CollectedItem:
    id: int
    event_id: int
    fields: dict[str, Any]


@dataclass
class DigestBatch:
    """A digest window that has closed: its items in arrival order."""

    rule: str
    key: str
    window_end: float
    items: list[CollectedItem]


@dataclass(frozen=True)
class JournalQuery:
    """Which journal entries to show (``router history``'s filters); None: any."""

    event: Optional[str] = None
    since: Optional[datetime] = None
    host: Optional[str] = None
    status: Optional[str] = None
    script: Optional[str] = None
    client: Optional[str] = None

    def sql(self) -> tuple[list[str], list[Any]]:
        conditions: list[str] = []
        params: list[Any] = []
        for column, value in (("name", self.event), ("host", self.host), ("status", self.status)):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        if self.since is not None:
            conditions.append("received >= ?")
            params.append(self.since.isoformat())
        for name, value in (("script", self.script), ("client", self.client)):
            if value is not None:
                # (an odd row's fields may not be JSON: json_extract would fail the query)
                conditions.append(
                    f"CASE WHEN json_valid(fields) THEN json_extract(fields, '$.{name}') END = ?"
                )
                params.append(value)
        return conditions, params


class _Lost(Exception):
    """Another process did the timer's work first: roll back, do nothing."""


_OUTBOX_COLUMNS = (
    "rule, target, url, url_masked, title, body, type, format, id, event_id, state,"
    " attempts, created, next_attempt, last_error, sent_at"
)


def _outbox_row(row: tuple) -> OutboxRow:
    return OutboxRow(*row)


# ---------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` as 0700, tighten it if it is ours, refuse it (Untrusted)
    if another user owns it: the store and the caches beside it decide what
    the router does, and it may run as root."""
    require_private_dir(path)


class Store:
    """The journal, outbox and throttle state in ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        """Open (or create) the store in ``state_dir``. Raises Untrusted when
        the directory or a database file is another user's or writable by
        others (a planted database could queue sends or hold crafted rows)."""
        self.state_dir: Optional[Path] = Path(state_dir)
        ensure_private_dir(self.state_dir)
        self.path: Optional[Path] = self.state_dir / DB_NAME
        for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
            require_private(self.state_dir / name)
        old_umask = os.umask(0o077)  # the database and its -wal/-shm files: 0600
        try:
            self.db = _connect(str(self.path))
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            _create_schema(self.db)
        finally:
            os.umask(old_umask)
        for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
            target = self.state_dir / name
            if os.name == "posix" and target.exists():
                os.chmod(target, 0o600)

    @classmethod
    def existing(cls, state_dir: Path) -> Optional[Store]:
        """The store in ``state_dir`` if there is one; None instead of creating it
        (``router test`` reads history but must write nothing)."""
        return cls(state_dir) if (Path(state_dir) / DB_NAME).is_file() else None

    @classmethod
    def in_memory(cls) -> Store:
        """A throwaway store, so a dry run (``router replay``) can follow
        previous/streak/throttle from line to line without touching real state."""
        store = cls.__new__(cls)
        store.state_dir = None
        store.path = None
        store.db = _connect(":memory:")
        _create_schema(store.db)
        return store

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> _Transaction:
        return _Transaction(self.db)

    # -- reads for evaluation

    def history(self, name: str, identity: str) -> History:
        row = self.db.execute(
            "SELECT fields, streak, status FROM events WHERE name = ? AND identity = ?"
            " ORDER BY id DESC LIMIT 1",
            (name, identity),
        ).fetchone()
        if row is None:
            return History()
        previous = decode_fields(row[0])
        previous["streak"] = row[1]
        previous["status"] = row[2]  # the journal's own column is the authority
        return History(previous=previous, previous_streak=row[1])

    def throttle_state(self, rule: str, key: str) -> ThrottleState:
        row = self.db.execute(
            "SELECT last_acted, suppressed FROM throttle WHERE rule = ? AND key = ?", (rule, key)
        ).fetchone()
        if row is None:
            return ThrottleState()
        last = datetime.fromtimestamp(row[0]) if row[0] is not None else None
        return ThrottleState(last_acted=last, suppressed=row[1])

    # -- the one write per event

    def record_event(
        self,
        entry: JournalEntry,
        outbox: Iterable[OutboxItem] = (),
        throttles: Iterable[ThrottleUpdate] = (),
        now: Optional[float] = None,
        expect_matches: Iterable[ExpectMatch] = (),
        digest_items: Iterable[DigestItem] = (),
    ) -> tuple[int, list[int]]:
        """Journal the event and queue its notifications, atomically, with
        what it does to throttles, expect windows and digests.

        Returns the event's id and the outbox rows' ids.
        """
        now = time.time() if now is None else now
        with self.transaction() as db:
            if entry.uid is not None:
                known = db.execute("SELECT id FROM events WHERE uid = ?", (entry.uid,)).fetchone()
                if known is not None:
                    entry.id = int(known[0])
                    rows = db.execute("SELECT id FROM outbox WHERE event_id = ?", (entry.id,))
                    return entry.id, [int(r[0]) for r in rows.fetchall()]
            event_id = _insert_event(db, entry)
            ids = _insert_outbox(db, event_id, outbox, now)
            for update in throttles:
                if update.acted:
                    db.execute(
                        "INSERT INTO throttle (rule, key, last_acted, suppressed)"
                        " VALUES (?, ?, ?, 0) ON CONFLICT (rule, key)"
                        " DO UPDATE SET last_acted = excluded.last_acted, suppressed = 0",
                        (update.rule, update.key, update.at),
                    )
                else:
                    db.execute(
                        "INSERT INTO throttle (rule, key, last_acted, suppressed)"
                        " VALUES (?, ?, NULL, 1) ON CONFLICT (rule, key)"
                        " DO UPDATE SET suppressed = suppressed + 1",
                        (update.rule, update.key),
                    )
            for match in expect_matches:
                # A match re-arms the window (fired_for cleared); an older event
                # arriving late changes nothing.
                db.execute(
                    "INSERT INTO expect_state (rule, key, armed_at, last_match, last_fields,"
                    " fired_for) VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT (rule, key) DO UPDATE SET"
                    " last_fields = CASE WHEN last_match IS NULL"
                    " OR excluded.last_match >= last_match"
                    " THEN excluded.last_fields ELSE last_fields END,"
                    " fired_for = CASE WHEN last_match IS NULL"
                    " OR excluded.last_match >= last_match THEN NULL ELSE fired_for END,"
                    " last_match = MAX(COALESCE(last_match, excluded.last_match),"
                    " excluded.last_match)",
                    (match.rule, match.key, match.at, match.at, encode_fields(match.fields)),
                )
            for item in digest_items:
                # Join the window open at this moment, or start one.
                row = db.execute(
                    "SELECT window_end FROM digest_items WHERE rule = ? AND key = ?"
                    " AND window_end > ? ORDER BY window_end LIMIT 1",
                    (item.rule, item.key, item.at),
                ).fetchone()
                window_end = row[0] if row is not None else item.at + item.window
                db.execute(
                    "INSERT INTO digest_items (rule, key, window_end, event_id, fields)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (item.rule, item.key, window_end, event_id, encode_fields(item.fields)),
                )
        entry.id = event_id
        return event_id, ids

    def set_steps_token(self, event_id: int, token: str) -> bool:
        """Let the holder of ``token`` report the event's steps: the HTTP
        client that posted it. Only the token's hash is kept. False (nothing
        changed) when the event was not received over HTTP or its steps
        were reported already."""
        return (
            self.db.execute(
                "UPDATE events SET steps_token = ? WHERE id = ? AND origin = 'http'"
                " AND steps_reported IS NULL",
                (token_hash(token), event_id),
            ).rowcount
            == 1
        )

    def record_steps(
        self, event_id: int, steps: list[dict[str, Any]], steps_token: Optional[str] = None
    ) -> str:
        """Store what the local steps did (they run after the event is
        journaled), once: a second report changes nothing. With
        ``steps_token`` (HTTP), only if it is the event's token.
        Returns STEPS_RECORDED, or why nothing was stored."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT steps, steps_reported, steps_token FROM events WHERE id = ?", (event_id,)
            ).fetchone()
            if row is None:
                return NO_EVENT
            if steps_token is not None and not (
                isinstance(row[2], str) and hmac.compare_digest(row[2], token_hash(steps_token))
            ):
                return WRONG_TOKEN
            if row[1] is not None or not _steps_pending(row[0]):
                return ALREADY_REPORTED
            db.execute(
                "UPDATE events SET steps = ?, steps_reported = ? WHERE id = ?",
                (json.dumps(steps, ensure_ascii=False), time.time(), event_id),
            )
        return STEPS_RECORDED

    def add_error(self, event_id: int, message: str) -> None:
        with self.transaction() as db:
            row = db.execute("SELECT errors FROM events WHERE id = ?", (event_id,)).fetchone()
            errors = json_list(row[0]) if row else []
            errors.append(message)
            db.execute(
                "UPDATE events SET errors = ? WHERE id = ?",
                (json.dumps(errors, ensure_ascii=False), event_id),
            )

    # -- timers: expect windows and digests

    def expect_states(self) -> list[ExpectState]:
        rows = self.db.execute(
            "SELECT rule, key, armed_at, last_match, last_fields, fired_for FROM expect_state"
            " ORDER BY rule, key"
        ).fetchall()
        return [
            ExpectState(r[0], r[1], r[2], r[3], decode_fields(r[4]) if r[4] else None, r[5])
            for r in rows
        ]

    def arm_expects(self, keys: Iterable[tuple[str, str]], at: float) -> None:
        """Start the windows of expect rules that have none yet (never
        matched): counted from ``at``, and kept across restarts."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO expect_state (rule, key, armed_at) VALUES (?, ?, ?)"
                " ON CONFLICT (rule, key) DO NOTHING",
                [(rule, key, at) for rule, key in keys],
            )

    def fire_expect(
        self,
        entry: JournalEntry,
        outbox: Iterable[OutboxItem],
        state: ExpectState,
        deadline: float,
        now: Optional[float] = None,
    ) -> Optional[tuple[int, list[int]]]:
        """Journal an expect rule's firing for the window ending at ``deadline``
        and queue its notifications, atomically; None (and nothing written)
        when another process fired it first or a match re-armed it meanwhile."""
        now = time.time() if now is None else now
        try:
            with self.transaction() as db:
                claimed = db.execute(
                    "UPDATE expect_state SET fired_for = ? WHERE rule = ? AND key = ?"
                    " AND COALESCE(last_match, armed_at) = ?"
                    " AND (fired_for IS NULL OR fired_for < ?)",
                    (deadline, state.rule, state.key, state.base, deadline),
                ).rowcount
                if claimed != 1:
                    raise _Lost
                event_id = _insert_event(db, entry)
                ids = _insert_outbox(db, event_id, outbox, now)
        except _Lost:
            return None
        entry.id = event_id
        return event_id, ids

    def due_digests(self, now: Optional[float] = None) -> list[DigestBatch]:
        """Digest windows that have closed by ``now``, oldest first."""
        now = time.time() if now is None else now
        batches: dict[tuple[str, str, float], DigestBatch] = {}
        rows = self.db.execute(
            "SELECT id, rule, key, window_end, event_id, fields FROM digest_items"
            " WHERE window_end <= ? ORDER BY window_end, id",
            (now,),
        ).fetchall()
        for row in rows:
            batch = batches.setdefault(
                (row[1], row[2], row[3]), DigestBatch(row[1], row[2], row[3], [])
            )
            batch.items.append(CollectedItem(row[0], row[4], decode_fields(row[5])))
        return list(batches.values())

    def digest_count(self, rule: Optional[str] = None) -> int:
        """How many events digests are holding (for one rule, or all)."""
        query, params = "SELECT COUNT(*) FROM digest_items", []
        if rule is not None:
            query += " WHERE rule = ?"
            params.append(rule)
        return int(self.db.execute(query, params).fetchone()[0])

    def flush_digest(
        self,
        entry: JournalEntry,
        outbox: Iterable[OutboxItem],
        batch: DigestBatch,
        now: Optional[float] = None,
    ) -> Optional[tuple[int, list[int]]]:
        """Journal a digest's notification, queue it and forget its items,
        atomically; None (nothing written) when another process flushed it first."""
        now = time.time() if now is None else now
        ids = [item.id for item in batch.items]
        try:
            with self.transaction() as db:
                gone = db.execute(
                    f"DELETE FROM digest_items WHERE id IN ({','.join('?' * len(ids))})", ids
                ).rowcount
                if gone != len(ids):
                    raise _Lost
                event_id = _insert_event(db, entry)
                outbox_ids = _insert_outbox(db, event_id, outbox, now)
        except _Lost:
            return None
        entry.id = event_id
        return event_id, outbox_ids

    def previous_of(self, event_id: int) -> dict[str, Any]:
        """``previous`` as it was for a journaled event: the entry before it
        of the same name and identity (empty if none, or pruned)."""
        row = self.db.execute(
            "SELECT p.fields, p.streak, p.status FROM events e JOIN events p"
            " ON p.name = e.name AND p.identity = e.identity AND p.id < e.id"
            " WHERE e.id = ? ORDER BY p.id DESC LIMIT 1",
            (event_id,),
        ).fetchone()
        if row is None:
            return {}
        previous = decode_fields(row[0])
        previous["streak"] = row[1]
        previous["status"] = row[2]
        return previous

    # -- outbox

    def claim_due(
        self,
        now: Optional[float] = None,
        limit: int = 100,
        lease: float = 60.0,
        ids: Optional[Iterable[int]] = None,
    ) -> list[OutboxRow]:
        """Pending rows whose time has come, leased to this caller.

        The lease keeps two deliverers (two handlers, or a handler and the
        service) from sending the same row at once; a crashed deliverer's
        rows come due again when the lease runs out.
        """
        now = time.time() if now is None else now
        query = (
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE state = ? AND next_attempt <= ?"
            " AND claimed_until <= ?"
        )
        params: list[Any] = [PENDING, now, now]
        if ids is not None:
            id_list = list(ids)
            if not id_list:
                return []
            query += f" AND id IN ({','.join('?' * len(id_list))})"
            params.extend(id_list)
        query += " ORDER BY next_attempt, id LIMIT ?"
        params.append(limit)
        with self.transaction() as db:
            rows = [_outbox_row(r) for r in db.execute(query, params).fetchall()]
            db.executemany(
                "UPDATE outbox SET claimed_until = ?, claimed_by = ? WHERE id = ?",
                [(now + lease, CLAIMANT, row.id) for row in rows],
            )
        return rows

    def release_abandoned_claims(self) -> int:
        """Give back the claims of deliverers on this machine that no longer
        run (killed with -9, say), so their rows go out now instead of when
        the lease would run out. Returns how many rows were freed."""
        host = CLAIMANT.rsplit(":", 1)[0]
        rows = self.db.execute(
            "SELECT DISTINCT claimed_by FROM outbox WHERE state = ? AND claimed_until > ?"
            " AND claimed_by LIKE ?",
            (PENDING, time.time(), f"{host}:%"),
        ).fetchall()
        dead = [owner for (owner,) in rows if not _process_alive(int(owner.rsplit(":", 1)[1]))]
        freed = 0
        for owner in dead:
            freed += self.db.execute(
                "UPDATE outbox SET claimed_until = 0, claimed_by = NULL"
                " WHERE state = ? AND claimed_by = ?",
                (PENDING, owner),
            ).rowcount
        return freed

    def due_urls(self, now: float) -> list[tuple[str, str]]:
        """(url, masked url) of every destination with a row due and unclaimed."""
        return [
            (str(url), str(masked))
            for url, masked in self.db.execute(
                "SELECT url, MIN(url_masked) FROM outbox WHERE state = ? AND next_attempt <= ?"
                " AND claimed_until <= ? GROUP BY url",
                (PENDING, now, now),
            ).fetchall()
        ]

    def due_ids(self, url: str, now: float, limit: int) -> list[int]:
        """The due, unclaimed rows to one destination, oldest first."""
        rows = self.db.execute(
            "SELECT id FROM outbox WHERE state = ? AND url = ? AND next_attempt <= ?"
            " AND claimed_until <= ? ORDER BY next_attempt, id LIMIT ?",
            (PENDING, url, now, now, limit),
        ).fetchall()
        return [int(row[0]) for row in rows]

    def next_due_by_url(self) -> list[tuple[str, float]]:
        """For each destination with pending rows: when its first one can be sent."""
        rows = self.db.execute(
            "SELECT url, MIN(MAX(next_attempt, claimed_until)) FROM outbox"
            " WHERE state = ? GROUP BY url",
            (PENDING,),
        ).fetchall()
        return [(str(url), float(at)) for url, at in rows]

    def outbox_row(self, row_id: int) -> Optional[OutboxRow]:
        row = self.db.execute(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE id = ?", (row_id,)
        ).fetchone()
        return _outbox_row(row) if row is not None else None

    def last_event_id(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])

    def remember(self, key: str, value: str) -> bool:
        """Set ``key`` to ``value``; True if it held something else before
        (so that of many processes noticing the same thing, one acts)."""
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] == value:
                return False
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        return True

    def has_uid(self, uid: str) -> bool:
        """Whether an event with this uid is journaled (recording is idempotent)."""
        query = "SELECT 1 FROM events WHERE uid = ?"
        return self.db.execute(query, (uid,)).fetchone() is not None

    def has_event(self, event_id: int) -> bool:
        query = "SELECT 1 FROM events WHERE id = ?"
        return self.db.execute(query, (event_id,)).fetchone() is not None

    def events_since(self, event_id: int) -> list[tuple[int, str, str, list[dict[str, Any]]]]:
        """(id, name, origin, decisions) of every entry after ``event_id``, in order:
        what the service's metrics count, whoever journaled the event."""
        rows = self.db.execute(
            "SELECT id, name, origin, decisions FROM events WHERE id > ? ORDER BY id",
            (event_id,),
        ).fetchall()
        return [
            (int(row_id), str(name), str(origin), json_list(decisions))
            for row_id, name, origin, decisions in rows
        ]

    def dead_count(self) -> int:
        query = "SELECT COUNT(*) FROM outbox WHERE state = ?"
        return int(self.db.execute(query, (DEAD,)).fetchone()[0])

    def mark_sent(self, row_id: int, now: Optional[float] = None) -> None:
        self.db.execute(
            "UPDATE outbox SET state = ?, sent_at = ?, attempts = attempts + 1,"
            " claimed_until = 0, last_error = NULL WHERE id = ?",
            (SENT, time.time() if now is None else now, row_id),
        )

    def mark_failed(self, row_id: int, error: str, next_attempt: float) -> None:
        self.db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ?,"
            " claimed_until = 0 WHERE id = ?",
            (error, next_attempt, row_id),
        )

    def mark_dead(self, row_id: int, error: str) -> None:
        self.db.execute(
            "UPDATE outbox SET state = ?, attempts = attempts + 1, last_error = ?,"
            " claimed_until = 0 WHERE id = ?",
            (DEAD, error, row_id),
        )

    def release(self, ids: Iterable[int]) -> None:
        """Give claimed rows back unchanged, no attempt counted: a deliverer
        that ran out of time lets the next one take them at once instead of
        after its lease."""
        id_list = list(ids)
        if id_list:
            self.db.execute(
                f"UPDATE outbox SET claimed_until = 0 WHERE id IN ({','.join('?' * len(id_list))})",
                id_list,
            )

    def retry(self, row_id: Optional[int] = None, now: Optional[float] = None) -> int:
        """Make dead or waiting rows due now (one row, or all of them). Returns the count."""
        now = time.time() if now is None else now
        query = "UPDATE outbox SET state = ?, next_attempt = ?, claimed_until = 0, created = ?"
        query += " WHERE state IN (?, ?)"
        params: list[Any] = [PENDING, now, now, PENDING, DEAD]
        if row_id is not None:
            query += " AND id = ?"
            params.append(row_id)
        return self.db.execute(query, params).rowcount

    def outbox(self, state: Optional[str] = None, limit: int = 100) -> list[OutboxRow]:
        query = f"SELECT {_OUTBOX_COLUMNS} FROM outbox"
        params: list[Any] = []
        if state is not None:
            query += " WHERE state = ?"
            params.append(state)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [_outbox_row(r) for r in self.db.execute(query, params).fetchall()]

    def outbox_depth(self) -> int:
        return self.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE state = ?", (PENDING,)
        ).fetchone()[0]

    # -- journal

    def journal(
        self, limit: int = 20, event: Optional[str] = None, where: Optional[JournalQuery] = None
    ) -> list[JournalEntry]:
        """The latest ``limit`` entries, newest first, that match ``where``
        (and ``event``, the older way to say ``where.event``)."""
        where = where or JournalQuery()
        if event is not None:
            where = replace(where, event=event)
        query = (
            "SELECT id, received, name, identity, status, streak, host, origin, fields, args,"
            " warnings, decisions, steps, errors FROM events"
        )
        conditions, params = where.sql()
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        entries = []
        for row in self.db.execute(query, params).fetchall():
            entries.append(
                JournalEntry(
                    id=row[0],
                    received=_when(row[1]),
                    name=str(row[2]),
                    identity=str(row[3]),
                    status=str(row[4]),
                    streak=row[5],
                    host=str(row[6]),
                    origin=str(row[7]),
                    fields=decode_fields(row[8]),
                    args=json_list(row[9]),
                    warnings=json_list(row[10]),
                    decisions=json_list(row[11]),
                    steps=json_list(row[12]),
                    errors=json_list(row[13]),
                )
            )
        return entries

    def prune(self, older_than: datetime) -> int:
        """Forget journal entries (and their finished outbox rows) older than
        ``older_than``, keeping the latest entry of every identity so that
        ``previous`` and ``streak`` survive retention."""
        cutoff = older_than.isoformat()
        with self.transaction() as db:
            doomed = (
                "SELECT id FROM events WHERE received < ? AND id NOT IN"
                " (SELECT MAX(id) FROM events GROUP BY name, identity)"
                " AND id NOT IN (SELECT event_id FROM outbox WHERE state = ?)"
                " AND id NOT IN (SELECT event_id FROM digest_items)"
            )
            db.execute(f"DELETE FROM outbox WHERE event_id IN ({doomed})", (cutoff, PENDING))
            return db.execute(
                f"DELETE FROM events WHERE id IN ({doomed})", (cutoff, PENDING)
            ).rowcount


#: Columns added after the first schema, with their definitions.
_ADDED_COLUMNS = {
    "events": [
        ("uid", "TEXT"),
        # When the steps' outcomes were reported (they are reported once).
        ("steps_reported", "REAL"),
        # The hash of the token that may report them (HTTP; token_hash).
        ("steps_token", "TEXT"),
    ],
    "outbox": [("claimed_by", "TEXT")],
}
#: Who claims outbox rows from this process: ``host:pid``.
CLAIMANT = f"{socket.gethostname()}:{os.getpid()}"


def _when(text: Any) -> datetime:
    """A journaled time; an unreadable one (a damaged or hand-edited row)
    reads as the epoch rather than breaking every reader of the journal."""
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return datetime(1970, 1, 1)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":
        return True  # on Windows os.kill(pid, 0) would terminate the process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists (perhaps as another user)
    return True


_AFTER_MIGRATION = "CREATE UNIQUE INDEX IF NOT EXISTS events_by_uid ON events (uid);"


def _insert_event(db: sqlite3.Connection, entry: JournalEntry) -> int:
    cursor = db.execute(
        "INSERT INTO events (received, name, identity, status, streak, host, origin,"
        " fields, args, warnings, decisions, steps, errors, uid)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry.received.isoformat(),
            entry.name,
            entry.identity,
            entry.status,
            entry.streak,
            entry.host,
            entry.origin,
            encode_fields(entry.fields),
            json.dumps(entry.args, ensure_ascii=False),
            json.dumps(entry.warnings, ensure_ascii=False),
            json.dumps(entry.decisions, ensure_ascii=False),
            json.dumps(entry.steps, ensure_ascii=False),
            json.dumps(entry.errors, ensure_ascii=False),
            entry.uid,
        ),
    )
    return int(cursor.lastrowid or 0)


def _insert_outbox(
    db: sqlite3.Connection, event_id: int, outbox: Iterable[OutboxItem], now: float
) -> list[int]:
    ids = []
    for item in outbox:
        cursor = db.execute(
            "INSERT INTO outbox (event_id, rule, target, url, url_masked, title, body,"
            " type, format, state, created, next_attempt)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event_id,
                item.rule,
                item.target,
                item.url,
                item.url_masked,
                item.title,
                item.body,
                item.type,
                item.format,
                PENDING,
                now,
                now,
            ),
        )
        ids.append(int(cursor.lastrowid or 0))
    return ids


def _create_schema(db: sqlite3.Connection) -> None:
    """Create the tables, and bring an older database up to date."""
    db.executescript(_SCHEMA)
    for table, columns in _ADDED_COLUMNS.items():
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns:
            if name not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
    db.executescript(_AFTER_MIGRATION)


def _connect(database: str) -> sqlite3.Connection:
    db = sqlite3.connect(
        database, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return db


PRUNE_EVERY = 86400.0


def apply_retention(store: Store, retention: float, now: Optional[float] = None) -> int:
    """Prune the journal to ``retention`` seconds, at most once a day.

    Called by every handler and the service; the meta row keeps all but
    one of them to a single cheap read.
    """
    now = time.time() if now is None else now
    row = store.db.execute("SELECT value FROM meta WHERE key = 'last_prune'").fetchone()
    if row is not None and now - float(row[0]) < PRUNE_EVERY:
        return 0
    store.db.execute(
        "INSERT INTO meta (key, value) VALUES ('last_prune', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(now),),
    )
    return store.prune(datetime.fromtimestamp(now - retention))


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: take the write lock up front, so a
    busy database waits (busy timeout) instead of failing half-way."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
