"""Small facts the router keeps about itself: which broken rule version was
reported, when the journal was last pruned."""

from __future__ import annotations

from typing import Optional

from router.store.database import Database


class Meta:
    """A key-value table, for facts that many processes check and one acts on."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: str) -> Optional[str]:
        row = self.db.one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set(self, key: str, value: str) -> None:
        self.db.run(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def remember(self, key: str, value: str) -> bool:
        """Set ``key`` to ``value``; True if it held something else before
        (so that of many processes noticing the same thing, one acts)."""
        with self.db.transaction() as tx:
            row = tx.one("SELECT value FROM meta WHERE key = ?", (key,))
            if row is not None and row[0] == value:
                return False
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        return True
