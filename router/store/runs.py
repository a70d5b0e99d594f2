"""The runs table: each backup run (router/runs.py), open or ended.

A run is kept whole as JSON beside the columns a query needs (host, script,
whether it is open, when it started and was last heard of). Runs change in
the transaction that journals their event (``save``, from ``Store.record``),
so an event and what it did to its run are kept together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any, Optional

from router.runs import Run
from router.store import backups
from router.store.database import Database, Transaction

_COLUMNS = "data"


def save(tx: Transaction, runs: Iterable[Run], was_open: dict[str, bool]) -> None:
    """Insert or update each run, and what its script last did
    (router/store/backups.py). ``was_open``: the runs that were open before
    (the caller read them in this transaction); any other is new."""
    runs = list(runs)
    for run in runs:
        tx.execute(
            "INSERT INTO runs (id, host, script, kind, is_open, started, last_seen, ended, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
            " is_open = excluded.is_open, last_seen = excluded.last_seen,"
            " ended = excluded.ended, data = excluded.data",
            (
                run.id,
                run.host,
                run.script,
                run.kind,
                1 if run.open else 0,
                run.started,
                run.last_seen,
                run.ended,
                json.dumps(asdict(run), default=str),
            ),
        )
    backups.note_runs(tx, runs, was_open)


def open_in(tx: Any, host: str, script: str, event: str) -> list[Run]:
    """The open runs of ``host`` an ``event`` of ``script`` may change (see
    ``router.runs.follow``): the script's, the server session and the latest
    run (all the Proactive Backup runs for StopBackupServer); oldest first.
    Not every open run: an engine may leave thousands that never ended.
    ``tx``: a Transaction, or the Database for a read outside one."""
    kinds = "'server', 'proactive'" if event == "StopBackupServer" else "'server'"
    rows = tx.all(
        f"SELECT data FROM runs WHERE is_open = 1 AND host = ? AND script = ?"
        f" UNION ALL SELECT data FROM runs WHERE is_open = 1 AND host = ? AND kind IN ({kinds})"
        " UNION ALL SELECT * FROM (SELECT data FROM runs WHERE is_open = 1 AND host = ?"
        "  ORDER BY last_seen DESC, id DESC LIMIT 1) AS latest",
        (host, script, host, host),
    )
    found = {run.id: run for run in (from_json(row[0]) for row in rows)}
    return sorted(found.values(), key=lambda run: (run.started, run.id))


def from_json(data: str) -> Run:
    return Run(**json.loads(data))


class Runs:
    """Reads of the runs, for the router and the people looking at it."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def open_of(self, host: str, script: str, event: str) -> list[Run]:
        return open_in(self.db, host, script, event)

    def all_open(self) -> list[Run]:
        rows = self.db.all(f"SELECT {_COLUMNS} FROM runs WHERE is_open = 1 ORDER BY started, id")
        return [from_json(row[0]) for row in rows]

    def get(self, run_id: str) -> Optional[Run]:
        row = self.db.one(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        return from_json(row[0]) if row is not None else None

    def recent(
        self, limit: int = 20, host: Optional[str] = None, script: Optional[str] = None
    ) -> list[Run]:
        """The latest runs (newest first), of one host or script if given."""
        conditions, params = ["kind != 'server'"], []
        if host is not None:
            conditions.append("host = ?")
            params.append(host)
        if script is not None:
            conditions.append("script = ?")
            params.append(script)
        rows = self.db.all(
            f"SELECT {_COLUMNS} FROM runs WHERE {' AND '.join(conditions)}"
            " ORDER BY started DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [from_json(row[0]) for row in rows]

    def end(self, runs: Iterable[Run]) -> list[Run]:
        """Keep runs given up (timed out); only those still open then, so two
        processes giving up the same run keep it once."""
        ended = []
        with self.db.transaction() as tx:
            for run in runs:
                # Claimed by the update: a replica giving up the same run waits, then skips it.
                if tx.execute(
                    "UPDATE runs SET is_open = 0 WHERE id = ? AND is_open = 1", (run.id,)
                ).rowcount:
                    save(tx, [run], was_open={run.id: True})
                    ended.append(run)
        return ended
