"""The journal: every event received, what was decided, what happened.

An event is journaled with everything it changes (its outbox rows,
throttles, expect windows, digest items) in one transaction, before any
notification is attempted: an event that was received is never lost, a
notification that was decided is never lost. ``previous`` and ``streak``
need no table of their own: they are the latest entry of the same event
name and identity.
"""

from __future__ import annotations

import hmac
import json
import time
from datetime import datetime
from typing import Any, Optional

from router.engine import History
from router.store.database import Database, Transaction
from router.store.records import (
    ALREADY_REPORTED,
    NO_EVENT,
    PENDING,
    STEPS_RECORDED,
    WRONG_TOKEN,
    JournalEntry,
    JournalQuery,
    decode_fields,
    encode_fields,
    json_list,
    token_hash,
)

_COLUMNS = (
    "id, received, name, identity, status, streak, host, origin, fields, args,"
    " warnings, decisions, steps, errors"
)


def insert_event(tx: Transaction, entry: JournalEntry) -> int:
    """Write ``entry`` (within the caller's transaction); its id."""
    return tx.insert(
        "INSERT INTO events (received, name, identity, status, streak, host, origin,"
        " fields, args, warnings, decisions, steps, errors, uid, steps_token)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry.received.isoformat(),
            entry.name,
            entry.identity,
            entry.status,
            entry.streak,
            entry.host,
            entry.origin,
            encode_fields(entry.fields),
            _json(entry.args),
            _json(entry.warnings),
            _json(entry.decisions),
            _json(entry.steps),
            _json(entry.errors),
            entry.uid,
            entry.steps_token,
        ),
    )


def renew_steps_token(tx: Any, event_id: int, hashed: str) -> bool:
    """Give an event journaled over HTTP a new steps token (its hash), unless
    its steps were reported already; whether it took."""
    return (
        tx.execute(
            "UPDATE events SET steps_token = ? WHERE id = ? AND origin = 'http'"
            " AND steps_reported IS NULL",
            (hashed, event_id),
        ).rowcount
        == 1
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _when(text: Any) -> datetime:
    """A journaled time; an unreadable one (a damaged or hand-edited row)
    reads as the epoch rather than breaking every reader of the journal."""
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return datetime(1970, 1, 1)


def _steps_pending(text: Any) -> bool:
    """True while no step of the event has been reported (every one is
    still "pending", as journaled); rows from before ``steps_reported``."""
    return all(isinstance(s, dict) and s.get("outcome") == PENDING for s in json_list(text))


class Journal:
    """The journal's queries and writes."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- what happens to a journaled event

    def set_steps_token(self, event_id: int, token: str) -> bool:
        """Let the holder of ``token`` report the event's steps: the HTTP
        client that posted it. Only the token's hash is kept. False (nothing
        changed) when the event was not received over HTTP or its steps
        were reported already."""
        with self.db.transaction() as tx:
            return renew_steps_token(tx, event_id, token_hash(token))

    def record_steps(
        self, event_id: int, steps: list[dict[str, Any]], steps_token: Optional[str] = None
    ) -> str:
        """Store what the local steps did (they run after the event is
        journaled), once: a second report changes nothing. With
        ``steps_token`` (HTTP), only if it is the event's token.
        Returns STEPS_RECORDED, or why nothing was stored."""
        with self.db.transaction() as tx:
            row = tx.one(
                "SELECT steps, steps_reported, steps_token FROM events WHERE id = ?", (event_id,)
            )
            if row is None:
                return NO_EVENT
            if steps_token is not None and not (
                isinstance(row[2], str) and hmac.compare_digest(row[2], token_hash(steps_token))
            ):
                return WRONG_TOKEN
            if row[1] is not None or not _steps_pending(row[0]):
                return ALREADY_REPORTED
            tx.execute(
                "UPDATE events SET steps = ?, steps_reported = ? WHERE id = ?",
                (_json(steps), time.time(), event_id),
            )
        return STEPS_RECORDED

    def add_error(self, event_id: int, message: str) -> None:
        with self.db.transaction() as tx:
            row = tx.one("SELECT errors FROM events WHERE id = ?", (event_id,))
            errors = json_list(row[0]) if row else []
            errors.append(message)
            tx.execute("UPDATE events SET errors = ? WHERE id = ?", (_json(errors), event_id))

    # -- reads for evaluation

    def history(self, name: str, identity: str) -> History:
        """What ``previous`` and ``streak`` read: the latest entry of the same
        event name and identity."""
        row = self.db.one(
            "SELECT fields, streak, status FROM events WHERE name = ? AND identity = ?"
            " ORDER BY id DESC LIMIT 1",
            (name, identity),
        )
        if row is None:
            return History()
        return History(previous=_previous(row), previous_streak=row[1])

    def previous_of(self, event_id: int) -> dict[str, Any]:
        """``previous`` as it was for a journaled event: the entry before it
        of the same name and identity (empty if none, or pruned)."""
        row = self.db.one(
            "SELECT p.fields, p.streak, p.status FROM events e JOIN events p"
            " ON p.name = e.name AND p.identity = e.identity AND p.id < e.id"
            " WHERE e.id = ? ORDER BY p.id DESC LIMIT 1",
            (event_id,),
        )
        return _previous(row) if row is not None else {}

    # -- reads for people and the service

    def entries(self, limit: int = 20, where: Optional[JournalQuery] = None) -> list[JournalEntry]:
        """The latest ``limit`` entries that match ``where``, newest first."""
        conditions, params = self._conditions(where or JournalQuery())
        query = f"SELECT {_COLUMNS} FROM events"
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        rows = self.db.all(query + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [_entry(row) for row in rows]

    def _conditions(self, where: JournalQuery) -> tuple[list[str], list[Any]]:
        conditions: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("name", where.event),
            ("host", where.host),
            ("status", where.status),
        ):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        if where.since is not None:
            conditions.append("received >= ?")
            params.append(where.since.isoformat())
        for key, value in (("script", where.script), ("client", where.client)):
            if value is not None:
                conditions.append(
                    self.db.dialect.json_text.format(column="fields", key=key) + " = ?"
                )
                params.append(value)
        return conditions, params

    def events_since(self, event_id: int) -> list[tuple[int, str, str, list[Any]]]:
        """(id, name, origin, decisions) of every entry after ``event_id``, in order:
        what the service's metrics count, whoever journaled the event."""
        rows = self.db.all(
            "SELECT id, name, origin, decisions FROM events WHERE id > ? ORDER BY id", (event_id,)
        )
        return [(int(i), str(name), str(origin), json_list(d)) for i, name, origin, d in rows]

    def last_id(self) -> int:
        return int(self.db.scalar("SELECT MAX(id) FROM events", default=0))

    def has_uid(self, uid: str) -> bool:
        """Whether an event with this uid is journaled (recording is idempotent)."""
        return self.db.one("SELECT 1 FROM events WHERE uid = ?", (uid,)) is not None

    def has_event(self, event_id: int) -> bool:
        return self.db.one("SELECT 1 FROM events WHERE id = ?", (event_id,)) is not None

    def count(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) FROM events", default=0))

    # -- retention

    def prune(self, older_than: datetime) -> int:
        """Forget entries (and their finished outbox rows) older than
        ``older_than``, keeping the latest entry of every identity so that
        ``previous`` and ``streak`` survive retention, and every entry a
        pending notification or a digest still needs."""
        doomed = (
            "SELECT id FROM events WHERE received < ? AND id NOT IN"
            " (SELECT MAX(id) FROM events GROUP BY name, identity)"
            " AND id NOT IN (SELECT event_id FROM outbox WHERE state = ?)"
            " AND id NOT IN (SELECT event_id FROM digest_items)"
        )
        params = (older_than.isoformat(), PENDING)
        with self.db.transaction() as tx:
            tx.execute(f"DELETE FROM outbox WHERE event_id IN ({doomed})", params)
            return int(tx.execute(f"DELETE FROM events WHERE id IN ({doomed})", params).rowcount)


def _previous(row: tuple) -> dict[str, Any]:
    previous = decode_fields(row[0])
    previous["streak"] = row[1]
    previous["status"] = row[2]  # the journal's own column is the authority
    return previous


def _entry(row: tuple) -> JournalEntry:
    return JournalEntry(
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
