"""The silences table (router/engine/silences.py): every silence ever added,
the expired ones kept for history. Expiring a silence moves its end to now;
nothing is deleted."""

from __future__ import annotations

import time
from typing import Optional

from router.engine.silences import Silence
from router.store.database import Database

_COLUMNS = "id, condition, starts, ends, comment, created_by, created"


class Silences:
    """Adding, listing and expiring silences; every process reads the same ones."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self,
        condition: str,
        starts: float,
        ends: float,
        comment: str = "",
        created_by: str = "",
        now: Optional[float] = None,
    ) -> Silence:
        """Keep a new silence (its condition checked by the caller)."""
        now = time.time() if now is None else now
        with self.db.transaction() as tx:
            silence_id = tx.insert(
                "INSERT INTO silences (condition, starts, ends, comment, created_by, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (condition, starts, ends, comment, created_by, now),
            )
        return Silence(silence_id, condition, starts, ends, comment, created_by, now)

    def copy(self, silences: list[Silence]) -> None:
        """Keep these silences as they are, ids and all (``router replay``
        honours the real store's silences in its throwaway one)."""
        with self.db.transaction() as tx:
            for s in silences:
                tx.execute(
                    "INSERT INTO silences (id, condition, starts, ends, comment, created_by,"
                    " created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (s.id, s.condition, s.starts, s.ends, s.comment, s.created_by, s.created),
                )

    def get(self, silence_id: int) -> Optional[Silence]:
        row = self.db.one(f"SELECT {_COLUMNS} FROM silences WHERE id = ?", (silence_id,))
        return _silence(row) if row is not None else None

    def current(self, now: Optional[float] = None) -> list[Silence]:
        """The silences not yet ended (active, or starting later), oldest first."""
        now = time.time() if now is None else now
        rows = self.db.all(f"SELECT {_COLUMNS} FROM silences WHERE ends > ? ORDER BY id", (now,))
        return [_silence(row) for row in rows]

    def every(self, limit: int = 1000) -> list[Silence]:
        """Every silence, expired ones too, the newest ``limit``, oldest first."""
        rows = self.db.all(f"SELECT {_COLUMNS} FROM silences ORDER BY id DESC LIMIT ?", (limit,))
        return [_silence(row) for row in reversed(rows)]

    def expire(self, silence_id: int, now: Optional[float] = None) -> Optional[Silence]:
        """End a silence now (one that ended already is left as it was).
        None when there is no such silence."""
        now = time.time() if now is None else now
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE silences SET ends = ? WHERE id = ? AND ends > ?",
                (now, silence_id, now),
            )
        return self.get(silence_id)


def _silence(row: tuple) -> Silence:
    return Silence(
        int(row[0]),
        str(row[1]),
        float(row[2]),
        float(row[3]),
        str(row[4] or ""),
        str(row[5] or ""),
        float(row[6] or 0.0),
    )
