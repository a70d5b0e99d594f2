"""The router's state: journal, outbox, and what rules remember.

``Store`` is the one door: its parts (``journal``, ``outbox``, ``state``,
``meta``, ``runs``, ``silences``, ``backups``) each own their tables, and
``record`` is the one write per event, across them, in one transaction,
before any notification is attempted (an event that was received is never
lost, a notification that was decided is never lost). Which database holds
the state is the backend's business (``router/store/sqlite.py``,
``router/store/postgres.py``); nothing above the store writes SQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional, Protocol

from router.runs import Run
from router.store import backups, postgres, schema, sqlite
from router.store import outbox as outbox_rows
from router.store import runs as run_rows
from router.store import state as rule_state
from router.store.database import Database
from router.store.journal import Journal, insert_event, renew_steps_token
from router.store.meta import Meta
from router.store.outbox import Outbox
from router.store.records import (
    ALREADY_REPORTED,
    DEAD,
    NO_EVENT,
    PENDING,
    SENT,
    STEPS_RECORDED,
    WRONG_TOKEN,
    CollectedItem,
    DigestBatch,
    DigestItem,
    DueRow,
    ExpectMatch,
    ExpectState,
    JournalEntry,
    JournalQuery,
    OutboxItem,
    OutboxRow,
    ThrottleUpdate,
    decode_fields,
    encode_fields,
    token_hash,
)
from router.store.silences import Silences
from router.store.state import RuleState
from router.trust import require_private_dir

__all__ = [
    "ALREADY_REPORTED",
    "DEAD",
    "NO_EVENT",
    "PENDING",
    "SENT",
    "STEPS_RECORDED",
    "WRONG_TOKEN",
    "CollectedItem",
    "DigestBatch",
    "DigestItem",
    "DueRow",
    "ExpectMatch",
    "ExpectState",
    "JournalEntry",
    "JournalQuery",
    "OutboxItem",
    "OutboxRow",
    "Store",
    "ThrottleUpdate",
    "decode_fields",
    "encode_fields",
    "ensure_private_dir",
    "open_existing_store",
    "open_store",
    "token_hash",
]

#: The journal is pruned at most this often (seconds), by whoever comes first.
PRUNE_EVERY = 86400.0


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` as 0700, tighten it if it is ours, refuse it (Untrusted)
    if another user owns it: the store and the caches beside it decide what
    the router does, and it may run as root."""
    require_private_dir(path)


class HasStateDir(Protocol):
    """What ``open_store`` reads of the configuration (Config, or the
    handler's FastSettings): the state directory, and perhaps ``state_url``."""

    state_dir: Path


def _url(config: HasStateDir) -> Optional[str]:
    return getattr(config, "state_url", None)


def open_store(config: HasStateDir) -> Store:
    """The store the configuration names (SQLite in the state directory, or
    the PostgreSQL database of ``state``), created if missing and brought up
    to date: what every process that writes opens, once."""
    url = _url(config)
    if url:
        return Store(postgres.database(url))
    return Store.open(Path(config.state_dir))


def open_existing_store(config: HasStateDir) -> Optional[Store]:
    """The store the configuration names, or None when there is none yet:
    ``router test`` and ``router history`` read, and must create nothing."""
    url = _url(config)
    if url:
        return Store(postgres.database(url))
    state_dir = Path(config.state_dir)
    return Store.open(state_dir) if sqlite.exists(state_dir) else None


class Store:
    """The router's state in one database."""

    def __init__(self, db: Database) -> None:
        """Open the store on ``db``, bringing its tables up to date."""
        self.db = db
        #: The schema versions this opening applied (``router db upgrade`` says them).
        self.upgraded = schema.upgrade(db)
        self.journal = Journal(db)
        self.outbox = Outbox(db)
        self.state = RuleState(db)
        self.meta = Meta(db)
        self.runs = run_rows.Runs(db)
        self.silences = Silences(db)
        self.backups = backups.Backups(db)

    @classmethod
    def open(cls, state_dir: Path) -> Store:
        """The store in ``state_dir``, created if missing (Untrusted if the
        directory or database is not the router's own)."""
        return cls(sqlite.database(Path(state_dir)))

    @classmethod
    def in_memory(cls) -> Store:
        """A throwaway store, so a dry run (``router replay``) can follow
        previous/streak/throttle from line to line without touching real state."""
        return cls(sqlite.memory())

    @property
    def where(self) -> str:
        """The database's file or address, for messages."""
        return self.db.where

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(
        self,
        entry: JournalEntry,
        outbox: Iterable[OutboxItem] = (),
        throttles: Iterable[ThrottleUpdate] = (),
        now: Optional[float] = None,
        expect_matches: Iterable[ExpectMatch] = (),
        digest_items: Iterable[DigestItem] = (),
        follow_run: Optional[Callable[[list[Run]], Iterable[Run]]] = None,
    ) -> tuple[int, list[int]]:
        """Journal the event and queue its notifications, atomically, with
        what it does to throttles, expect windows, digests and its run. An
        event whose ``uid`` is journaled already is not journaled again (the
        handler and the service may both offer it). Returns its id and its
        outbox rows'.

        ``follow_run(open_runs)``: the runs to keep, given its host's open
        runs as they are inside this transaction (another process may have
        changed them since the event was evaluated)."""
        now = time.time() if now is None else now
        with self.db.transaction() as tx:
            if entry.uid is not None:
                known = tx.one("SELECT id FROM events WHERE uid = ?", (entry.uid,))
                if known is not None:
                    entry.id = int(known[0])
                    if entry.steps_token and not renew_steps_token(tx, entry.id, entry.steps_token):
                        entry.steps_token = None  # its steps were reported: no new token
                    rows = tx.all("SELECT id FROM outbox WHERE event_id = ?", (entry.id,))
                    return entry.id, [int(r[0]) for r in rows]
            event_id = insert_event(tx, entry)
            ids = outbox_rows.insert(tx, event_id, outbox, now)
            rule_state.apply_throttles(tx, throttles)
            rule_state.match_expects(tx, expect_matches)
            rule_state.collect(tx, event_id, digest_items)
            if follow_run is not None:
                if tx.dialect.lock_key:  # replicas: one event at a time per host's runs
                    tx.execute(tx.dialect.lock_key, (entry.host,))
                script = str(entry.fields.get("script", ""))
                open_runs = run_rows.open_in(tx, entry.host, script, entry.name)
                # What follow_run changes was open (it is among them) or is new.
                was_open = {run.id: True for run in open_runs}
                run_rows.save(tx, follow_run(open_runs), was_open)
            if entry.name == "EndSource":
                backups.note_source(tx, entry.host, entry.fields, entry.received.timestamp())
        entry.id = event_id
        return event_id, ids

    def apply_retention(self, retention: float, now: Optional[float] = None) -> int:
        """Prune the journal to ``retention`` seconds, at most once a day.
        Called by every handler and the service; the meta row keeps all but
        one of them to a single cheap read."""
        now = time.time() if now is None else now
        last = self.meta.get("last_prune")
        try:
            if last is not None and now - float(last) < PRUNE_EVERY:
                return 0
        except ValueError:
            pass  # a damaged value: prune, and write a good one
        self.meta.set("last_prune", str(now))
        return self.journal.prune(datetime.fromtimestamp(now - retention))
