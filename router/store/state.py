"""What rules remember between events: throttles, expect windows, digests.

The writes an event makes here happen in the transaction that journals it
(``apply_throttles``, ``match_expects``, ``collect``, called by
``Journal.record``); the timers' writes (firing an expectation, flushing a
digest) journal their own notification in the same transaction, and do
nothing when another process was first.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import Callable, Optional

from router.engine import ThrottleState
from router.store import outbox as outbox_rows
from router.store.database import Database, Lost, Transaction
from router.store.journal import insert_event
from router.store.records import (
    CollectedItem,
    DigestBatch,
    DigestItem,
    ExpectMatch,
    ExpectState,
    JournalEntry,
    OutboxItem,
    ThrottleUpdate,
    decode_fields,
    encode_fields,
)


def apply_throttles(tx: Transaction, updates: Iterable[ThrottleUpdate]) -> None:
    """A throttled rule acted (its window starts again) or was held back
    (one more suppressed, for the next notification to mention)."""
    for update in updates:
        if update.acted:
            tx.execute(
                "INSERT INTO throttle (rule, key, last_acted, suppressed)"
                " VALUES (?, ?, ?, 0) ON CONFLICT (rule, key)"
                " DO UPDATE SET last_acted = excluded.last_acted, suppressed = 0",
                (update.rule, update.key, update.at),
            )
        else:
            tx.execute(
                "INSERT INTO throttle (rule, key, last_acted, suppressed)"
                " VALUES (?, ?, NULL, 1) ON CONFLICT (rule, key)"
                " DO UPDATE SET suppressed = throttle.suppressed + 1",
                (update.rule, update.key),
            )


def match_expects(tx: Transaction, matches: Iterable[ExpectMatch]) -> None:
    """A match re-arms its window (``fired_for`` cleared); an older event
    arriving late changes nothing."""
    greatest = tx.dialect.greatest
    newer = "expect_state.last_match IS NULL OR excluded.last_match >= expect_state.last_match"
    for match in matches:
        tx.execute(
            "INSERT INTO expect_state (rule, key, armed_at, last_match, last_fields,"
            " fired_for) VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT (rule, key) DO UPDATE SET"
            f" last_fields = CASE WHEN {newer}"
            " THEN excluded.last_fields ELSE expect_state.last_fields END,"
            f" fired_for = CASE WHEN {newer} THEN NULL ELSE expect_state.fired_for END,"
            f" last_match = {greatest}(COALESCE(expect_state.last_match, excluded.last_match),"
            " excluded.last_match)",
            (match.rule, match.key, match.at, match.at, encode_fields(match.fields)),
        )


def collect(tx: Transaction, event_id: int, items: Iterable[DigestItem]) -> None:
    """Add each item to its digest's open window, or open one."""
    for item in items:
        row = tx.one(
            "SELECT window_end FROM digest_items WHERE rule = ? AND key = ?"
            " AND window_end > ? ORDER BY window_end LIMIT 1",
            (item.rule, item.key, item.at),
        )
        window_end = row[0] if row is not None else item.at + item.window
        tx.execute(
            "INSERT INTO digest_items (rule, key, window_end, event_id, fields)"
            " VALUES (?, ?, ?, ?, ?)",
            (item.rule, item.key, window_end, event_id, encode_fields(item.fields)),
        )


class RuleState:
    """Throttles, expect windows and digests: reads, and the timers' writes."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def throttle(self, rule: str, key: str) -> ThrottleState:
        row = self.db.one(
            "SELECT last_acted, suppressed FROM throttle WHERE rule = ? AND key = ?", (rule, key)
        )
        if row is None:
            return ThrottleState()
        last = datetime.fromtimestamp(row[0]) if row[0] is not None else None
        return ThrottleState(last_acted=last, suppressed=row[1])

    # -- expect windows

    def expect_states(self) -> list[ExpectState]:
        rows = self.db.all(
            "SELECT rule, key, armed_at, last_match, last_fields, fired_for FROM expect_state"
            " ORDER BY rule, key"
        )
        return [
            ExpectState(r[0], r[1], r[2], r[3], decode_fields(r[4]) if r[4] else None, r[5])
            for r in rows
        ]

    def arm_expects(self, keys: Iterable[tuple[str, str]], at: float) -> None:
        """Start the windows of expect rules that have none yet (never
        matched): counted from ``at``, and kept across restarts."""
        with self.db.transaction() as tx:
            for rule, key in keys:
                tx.execute(
                    "INSERT INTO expect_state (rule, key, armed_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (rule, key) DO NOTHING",
                    (rule, key, at),
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

        def claim(tx: Transaction) -> None:
            claimed = tx.execute(
                "UPDATE expect_state SET fired_for = ? WHERE rule = ? AND key = ?"
                " AND COALESCE(last_match, armed_at) = ?"
                " AND (fired_for IS NULL OR fired_for < ?)",
                (deadline, state.rule, state.key, state.base, deadline),
            ).rowcount
            if claimed != 1:
                raise Lost

        return self._journal_if_first(claim, entry, outbox, now)

    # -- digests

    def due_digests(self, now: Optional[float] = None) -> list[DigestBatch]:
        """Digest windows that have closed by ``now``, oldest first."""
        now = time.time() if now is None else now
        return self._batches("WHERE window_end <= ?", (now,))

    def pending_digests(self) -> list[DigestBatch]:
        """Every digest window still collecting (``router status``)."""
        return self._batches("", ())

    def digests_of(self, rules: Iterable[str]) -> list[DigestBatch]:
        """The digest windows of these rules, whenever they close (a
        ``digest run`` closes when its run ends)."""
        names = list(rules)
        if not names:
            return []
        marks = ", ".join("?" for _ in names)
        return self._batches(f"WHERE rule IN ({marks})", tuple(names))

    def _batches(self, where: str, params: tuple) -> list[DigestBatch]:
        batches: dict[tuple[str, str, float], DigestBatch] = {}
        rows = self.db.all(
            "SELECT id, rule, key, window_end, event_id, fields FROM digest_items"
            f" {where} ORDER BY window_end, id",
            params,
        )
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
        return int(self.db.scalar(query, params, 0))

    def flush_digest(
        self,
        entry: JournalEntry,
        outbox: Iterable[OutboxItem],
        batch: DigestBatch,
        now: Optional[float] = None,
    ) -> Optional[tuple[int, list[int]]]:
        """Journal a digest's notification, queue it and forget its items,
        atomically; None (nothing written) when another process flushed it first."""
        ids = [item.id for item in batch.items]

        def claim(tx: Transaction) -> None:
            marks = ",".join("?" * len(ids))
            if tx.execute(f"DELETE FROM digest_items WHERE id IN ({marks})", ids).rowcount != len(
                ids
            ):
                raise Lost

        return self._journal_if_first(claim, entry, outbox, now)

    def _journal_if_first(
        self,
        claim: Callable[[Transaction], None],
        entry: JournalEntry,
        outbox: Iterable[OutboxItem],
        now: Optional[float],
    ) -> Optional[tuple[int, list[int]]]:
        """Run ``claim``; if no other process was first (it raised Lost),
        journal ``entry`` and queue ``outbox`` in the same transaction."""
        now = time.time() if now is None else now
        try:
            with self.db.transaction() as tx:
                claim(tx)
                event_id = insert_event(tx, entry)
                ids = outbox_rows.insert(tx, event_id, outbox, now)
        except Lost:
            return None
        entry.id = event_id
        return event_id, ids
