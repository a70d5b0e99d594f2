"""The outbox: one row per notification and destination URL, until sent.

A row is claimed with a lease before it is sent, so two deliverers (two
handlers, a handler and the service, two services on one database) never
send it at once, and a crashed deliverer's rows come due again when the
lease runs out. The lease's owner is ``host:pid``, so a restarted service
takes back at once the claims of a killed process on its own machine.

The URL a row is sent to is a secret (it carries credentials); it is
stored because a retry needs it, where only the router's user can read it,
and every display uses ``url_masked``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from typing import Any, Optional

from router.store.database import Database, Transaction
from router.store.records import DEAD, PENDING, SENT, DueRow, OutboxItem, OutboxRow

#: Who claims outbox rows from this process: ``host:pid``.
CLAIMANT = f"{socket.gethostname()}:{os.getpid()}"
#: A replica silent this long (seconds) is gone: the others take its claims back.
REPLICA_SILENCE = 30.0
_HEARTBEAT = "heartbeat:"
_COLUMNS = (
    "rule, target, url, url_masked, title, body, type, format, id, event_id, state,"
    " attempts, created, next_attempt, last_error, sent_at"
)


def insert(tx: Transaction, event_id: int, items: Iterable[OutboxItem], now: float) -> list[int]:
    """Queue ``items`` for ``event_id`` (within the caller's transaction)."""
    return [
        tx.insert(
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
        for item in items
    ]


def _row(row: tuple) -> OutboxRow:
    return OutboxRow(*row)


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


class Outbox:
    """Claiming, sending and keeping outbox rows."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def claim_due(
        self,
        now: Optional[float] = None,
        limit: int = 100,
        lease: float = 60.0,
        ids: Optional[Iterable[int]] = None,
    ) -> list[OutboxRow]:
        """Pending rows whose time has come, leased to this caller (rows
        another claimer holds, or is claiming at this moment, are skipped)."""
        now = time.time() if now is None else now
        query = (
            f"SELECT {_COLUMNS} FROM outbox WHERE state = ? AND next_attempt <= ?"
            " AND claimed_until <= ?"
        )
        params: list[Any] = [PENDING, now, now]
        if ids is not None:
            id_list = list(ids)
            if not id_list:
                return []
            query += f" AND id IN ({','.join('?' * len(id_list))})"
            params.extend(id_list)
        query += " ORDER BY next_attempt, id LIMIT ?" + self.db.dialect.lock_rows
        params.append(limit)
        with self.db.transaction() as tx:
            rows = [_row(r) for r in tx.all(query, params)]
            for row in rows:
                tx.execute(
                    "UPDATE outbox SET claimed_until = ?, claimed_by = ? WHERE id = ?",
                    (now + lease, CLAIMANT, row.id),
                )
        return rows

    def heartbeat(self, now: Optional[float] = None) -> None:
        """Say this deliverer (a service replica) is alive: its claims are
        taken back by the others once it has been silent ``REPLICA_SILENCE``."""
        now = time.time() if now is None else now
        self.db.run(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_HEARTBEAT + CLAIMANT, repr(now)),
        )

    def release_abandoned_claims(self, now: Optional[float] = None) -> int:
        """Give back the claims of deliverers that are gone, so their rows go
        out now instead of when the lease would run out: on this machine, a
        process that no longer runs (killed with -9, say); on another, a
        service replica whose heartbeat stopped ``REPLICA_SILENCE`` ago.
        Returns how many rows were freed."""
        now = time.time() if now is None else now
        host = CLAIMANT.rsplit(":", 1)[0]
        owners = self.db.all(
            "SELECT DISTINCT claimed_by FROM outbox WHERE state = ? AND claimed_until > ?"
            " AND claimed_by IS NOT NULL",
            (PENDING, now),
        )
        dead = [owner for (owner,) in owners if owner != CLAIMANT and self._gone(owner, host, now)]
        freed = 0
        for owner in dead:
            freed += self.db.run(
                "UPDATE outbox SET claimed_until = 0, claimed_by = NULL"
                " WHERE state = ? AND claimed_by = ?",
                (PENDING, owner),
            )
        return freed

    def _gone(self, owner: str, host: str, now: float) -> bool:
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit():
            return not _process_alive(int(pid))
        seen = self.db.one("SELECT value FROM meta WHERE key = ?", (_HEARTBEAT + owner,))
        try:
            return seen is not None and now - float(seen[0]) > REPLICA_SILENCE
        except ValueError:
            return False

    def release(self, ids: Iterable[int]) -> None:
        """Give claimed rows back unchanged, no attempt counted: a deliverer
        that ran out of time lets the next one take them at once."""
        id_list = list(ids)
        if id_list:
            marks = ",".join("?" * len(id_list))
            self.db.run(f"UPDATE outbox SET claimed_until = 0 WHERE id IN ({marks})", id_list)

    def due_urls(self, now: float) -> list[tuple[str, str]]:
        """(url, masked url) of every destination with a row due and unclaimed."""
        rows = self.db.all(
            "SELECT url, MIN(url_masked) FROM outbox WHERE state = ? AND next_attempt <= ?"
            " AND claimed_until <= ? GROUP BY url",
            (PENDING, now, now),
        )
        return [(str(url), str(masked)) for url, masked in rows]

    def due_ids(self, url: str, now: float, limit: int) -> list[int]:
        """The due, unclaimed rows to one destination, oldest first."""
        rows = self.db.all(
            "SELECT id FROM outbox WHERE state = ? AND url = ? AND next_attempt <= ?"
            " AND claimed_until <= ? ORDER BY next_attempt, id LIMIT ?",
            (PENDING, url, now, now, limit),
        )
        return [int(row[0]) for row in rows]

    def due_rows(self, url: str, now: float, limit: int) -> list[DueRow]:
        """``due_ids`` with what each row is about (see DueRow), oldest first."""
        rows = self.db.all(
            "SELECT o.id, e.name, e.identity, e.status, e.origin FROM outbox o"
            " LEFT JOIN events e ON e.id = o.event_id"
            " WHERE o.state = ? AND o.url = ? AND o.next_attempt <= ? AND o.claimed_until <= ?"
            " ORDER BY o.next_attempt, o.id LIMIT ?",
            (PENDING, url, now, now, limit),
        )
        due = []
        for row_id, name, identity, status, origin in rows:
            if identity is None:  # its event is gone (retention): a row on its own
                due.append(DueRow(int(row_id), f"#{row_id}", ""))
                continue
            timer = origin == "timer"
            key = f"{name}\x1f{identity}" if timer else str(identity)
            due.append(DueRow(int(row_id), key, str(status), timer))
        return due

    def next_due_by_url(self) -> list[tuple[str, float]]:
        """For each destination with pending rows: when its first one can be sent."""
        greatest = self.db.dialect.greatest
        rows = self.db.all(
            f"SELECT url, MIN({greatest}(next_attempt, claimed_until)) FROM outbox"
            " WHERE state = ? GROUP BY url",
            (PENDING,),
        )
        return [(str(url), float(at)) for url, at in rows]

    def mark_sent(self, row_id: int, now: Optional[float] = None) -> None:
        self.db.run(
            "UPDATE outbox SET state = ?, sent_at = ?, attempts = attempts + 1,"
            " claimed_until = 0, last_error = NULL WHERE id = ?",
            (SENT, time.time() if now is None else now, row_id),
        )

    def mark_failed(self, row_id: int, error: str, next_attempt: float) -> None:
        self.db.run(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ?,"
            " claimed_until = 0 WHERE id = ?",
            (error, next_attempt, row_id),
        )

    def mark_dead(self, row_id: int, error: str) -> None:
        self.db.run(
            "UPDATE outbox SET state = ?, attempts = attempts + 1, last_error = ?,"
            " claimed_until = 0 WHERE id = ?",
            (DEAD, error, row_id),
        )

    def retry(self, row_id: Optional[int] = None, now: Optional[float] = None) -> int:
        """Make dead or waiting rows due now (one row, or all). Returns the count."""
        now = time.time() if now is None else now
        query = "UPDATE outbox SET state = ?, next_attempt = ?, claimed_until = 0, created = ?"
        query += " WHERE state IN (?, ?)"
        params: list[Any] = [PENDING, now, now, PENDING, DEAD]
        if row_id is not None:
            query += " AND id = ?"
            params.append(row_id)
        return self.db.run(query, params)

    def row(self, row_id: int) -> Optional[OutboxRow]:
        row = self.db.one(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (row_id,))
        return _row(row) if row is not None else None

    def rows(self, state: Optional[str] = None, limit: int = 100) -> list[OutboxRow]:
        """The latest rows (in one state, or any), newest first."""
        query, params = f"SELECT {_COLUMNS} FROM outbox", []
        if state is not None:
            query += " WHERE state = ?"
            params.append(state)
        rows = self.db.all(query + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [_row(r) for r in rows]

    def depth(self) -> int:
        """Rows waiting to be sent."""
        return int(self.db.scalar("SELECT COUNT(*) FROM outbox WHERE state = ?", (PENDING,), 0))

    def dead_count(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) FROM outbox WHERE state = ?", (DEAD,), 0))
