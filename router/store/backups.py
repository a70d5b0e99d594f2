"""What every backup last did, kept up to date as events arrive: one row per
host and script (``backup_scripts``: its latest run, its last success, how
many runs ended in each status) and one per host, script and source
(``backup_sources``: its latest result, its last success and size).

``router status``, the status page and ``/metrics`` read these rows, never
the journal, so they answer as fast with a million journal rows as with
ten. They change in the transaction that journals their event: a run's row
when the run is saved (``note_runs``), a source's at its EndSource
(``note_source``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional

from router.runs import SERVER, Run
from router.store.database import Database, Transaction

#: The statuses a run ends in, each counted (``retrospect_runs_total``).
RUN_STATUSES = ("success", "warning", "failure", "incomplete")


@dataclass(frozen=True)
class ScriptRow:
    """A host's script: its latest run and its record."""

    host: str
    script: str
    kind: str
    last_run: str
    last_started: float
    last_ended: Optional[float]
    last_status: str
    last_duration: float
    last_errors: int
    last_bytes: int
    last_seen: float
    #: When its latest successful run ended (None: never).
    last_success: Optional[float]
    #: Runs ended, by status.
    ended: dict[str, int]


@dataclass(frozen=True)
class SourceRow:
    """A source (a client's volume) of a host's script: its latest result."""

    host: str
    script: str
    source: str
    client: str
    last_seen: float
    last_status: str
    last_bytes: Optional[int]
    last_success: Optional[float]
    last_success_bytes: Optional[int]


#: A script's row takes the run it is told of when that run is its latest.
_LATEST = (
    "kind",
    "last_run",
    "last_ended",
    "last_status",
    "last_duration",
    "last_errors",
    "last_bytes",
    "last_started",
)
_NEWER = "excluded.last_started >= backup_scripts.last_started"
_UPSERT_SCRIPT = (
    "INSERT INTO backup_scripts (host, script, kind, last_run, last_started, last_ended,"
    " last_status, last_duration, last_errors, last_bytes, last_seen, last_success,"
    f" {', '.join(f'runs_{s}' for s in RUN_STATUSES)})"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (host, script) DO UPDATE SET "
    + ", ".join(
        [
            *(
                f"{c} = CASE WHEN {_NEWER} THEN excluded.{c} ELSE backup_scripts.{c} END"
                for c in _LATEST
            ),
            "last_seen = CASE WHEN excluded.last_seen > backup_scripts.last_seen"
            " THEN excluded.last_seen ELSE backup_scripts.last_seen END",
            "last_success = COALESCE(excluded.last_success, backup_scripts.last_success)",
            *(f"runs_{s} = backup_scripts.runs_{s} + excluded.runs_{s}" for s in RUN_STATUSES),
        ]
    )
)


def note_runs(tx: Transaction, runs: Iterable[Run], was_open: dict[str, bool]) -> None:
    """Fold saved runs into their script's row. ``was_open``: whether each
    run was open before this save (absent: new), so that a run is counted
    once, when it ends."""
    for run in runs:
        if run.kind == SERVER:
            continue
        view = run.view()
        just_ended = not run.open and was_open.get(run.id, True)
        status = run.status
        counts = {s: int(just_ended and status == s) for s in RUN_STATUSES}
        success = run.ended if just_ended and status == "success" else None
        tx.execute(
            _UPSERT_SCRIPT,
            (
                run.host,
                run.script,
                run.kind,
                run.id,
                run.started,
                run.ended,
                status,
                float(view["duration"]),
                int(view["errors"]),
                int(view["bytes"]),
                run.last_seen,
                success,
                *(counts[s] for s in RUN_STATUSES),
            ),
        )


def note_source(tx: Transaction, host: str, fields: dict[str, Any], at: float) -> None:
    """An EndSource: its source's latest result (and last success)."""
    source = str(fields.get("source", ""))
    if not source:
        return
    status = str(fields.get("status", "info"))
    size = fields.get("bytes")
    size = int(size) if isinstance(size, (int, float)) and not isinstance(size, bool) else None
    ok = status == "success"
    tx.execute(
        "INSERT INTO backup_sources (host, script, source, client, last_seen, last_status,"
        " last_bytes, last_success, last_success_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (host, script, source) DO UPDATE SET client = excluded.client,"
        " last_seen = excluded.last_seen, last_status = excluded.last_status,"
        " last_bytes = excluded.last_bytes,"
        " last_success = COALESCE(excluded.last_success, backup_sources.last_success),"
        " last_success_bytes = CASE WHEN excluded.last_success IS NULL"
        "  THEN backup_sources.last_success_bytes ELSE excluded.last_success_bytes END",
        (
            host,
            str(fields.get("script", "")),
            source,
            str(fields.get("client", "")),
            at,
            status,
            size,
            at if ok else None,
            size if ok else None,
        ),
    )


class Backups:
    """Reads of what every backup last did."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def scripts(self, seen_since: float = 0.0) -> list[ScriptRow]:
        """Every host's scripts heard of since ``seen_since``."""
        rows = self.db.all(
            "SELECT host, script, kind, last_run, last_started, last_ended, last_status,"
            " last_duration, last_errors, last_bytes, last_seen, last_success, runs_success,"
            " runs_warning, runs_failure, runs_incomplete FROM backup_scripts"
            " WHERE last_seen >= ? ORDER BY host, script",
            (seen_since,),
        )
        return [
            ScriptRow(*row[:11], row[11], dict(zip(RUN_STATUSES, (int(n) for n in row[12:]))))
            for row in rows
        ]

    def sources(self, seen_since: float = 0.0) -> list[SourceRow]:
        """Every source heard of since ``seen_since``."""
        rows = self.db.all(
            "SELECT host, script, source, client, last_seen, last_status, last_bytes,"
            " last_success, last_success_bytes FROM backup_sources"
            " WHERE last_seen >= ? ORDER BY host, client, source, script",
            (seen_since,),
        )
        return [SourceRow(*row) for row in rows]
