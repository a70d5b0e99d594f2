"""The store's tables, and the versioned steps that bring a database to them.

Every database records the versions applied to it (``schema_version``).
``upgrade`` applies the missing ones in order, each in its own transaction,
one process at a time; it is idempotent, and runs whenever a store is
opened to write (and by ``router db upgrade``). A new version is a new
entry at the end of MIGRATIONS: never edit one that has shipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from router.store.database import Database, Transaction

#: Version 1: the tables of the first router, as one step. A SQLite database
#: from before versions existed gets the columns added since, in place.
V1 = (
    """CREATE TABLE IF NOT EXISTS events (
        id {id},
        received TEXT NOT NULL,
        name TEXT NOT NULL,
        identity TEXT NOT NULL,
        status TEXT NOT NULL,
        streak {int} NOT NULL,
        host TEXT NOT NULL,
        origin TEXT NOT NULL,
        fields TEXT NOT NULL,
        args TEXT NOT NULL,
        warnings TEXT NOT NULL,
        decisions TEXT NOT NULL,
        steps TEXT NOT NULL,
        errors TEXT NOT NULL,
        uid TEXT,
        steps_reported {real},
        steps_token TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS events_by_identity ON events (name, identity, id)",
    "CREATE INDEX IF NOT EXISTS events_by_received ON events (received)",
    """CREATE TABLE IF NOT EXISTS outbox (
        id {id},
        event_id {int} NOT NULL REFERENCES events (id),
        rule TEXT NOT NULL,
        target TEXT NOT NULL,
        url TEXT NOT NULL,
        url_masked TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        type TEXT NOT NULL,
        format TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts {int} NOT NULL DEFAULT 0,
        created {real} NOT NULL,
        next_attempt {real} NOT NULL,
        claimed_until {real} NOT NULL DEFAULT 0,
        last_error TEXT,
        sent_at {real},
        claimed_by TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt)",
    """CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS throttle (
        rule TEXT NOT NULL,
        key TEXT NOT NULL,
        last_acted {real},
        suppressed {int} NOT NULL DEFAULT 0,
        PRIMARY KEY (rule, key)
    )""",
    """CREATE TABLE IF NOT EXISTS expect_state (
        rule TEXT NOT NULL,
        key TEXT NOT NULL,
        armed_at {real} NOT NULL,
        last_match {real},
        last_fields TEXT,
        fired_for {real},
        PRIMARY KEY (rule, key)
    )""",
    """CREATE TABLE IF NOT EXISTS digest_items (
        id {id},
        rule TEXT NOT NULL,
        key TEXT NOT NULL,
        window_end {real} NOT NULL,
        event_id {int} NOT NULL REFERENCES events (id),
        fields TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS digest_items_due ON digest_items (window_end)",
    "CREATE INDEX IF NOT EXISTS digest_items_open ON digest_items (rule, key, window_end)",
)
#: Columns SQLite databases made before version 1 may lack.
_LATER_COLUMNS = {
    "events": (("uid", "TEXT"), ("steps_reported", "REAL"), ("steps_token", "TEXT")),
    "outbox": (("claimed_by", "TEXT"),),
}


def _v1(tx: Transaction) -> None:
    if tx.dialect.name == "sqlite":
        for table, columns in _LATER_COLUMNS.items():
            present = {row[1] for row in tx.all(f"PRAGMA table_info({table})")}
            if not present:
                continue  # a new database: created whole below
            for name, kind in columns:
                if name not in present:
                    tx.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
    for statement in V1:
        tx.execute(tx.dialect.ddl(statement))
    tx.execute("CREATE UNIQUE INDEX IF NOT EXISTS events_by_uid ON events (uid)")


#: Version 2: runs (router/runs.py), each whole as JSON, with what queries need.
V2 = (
    """CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        script TEXT NOT NULL,
        kind TEXT NOT NULL,
        is_open {int} NOT NULL,
        started {real} NOT NULL,
        last_seen {real} NOT NULL,
        ended {real},
        data TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS runs_open ON runs (is_open, host, script)",
    "CREATE INDEX IF NOT EXISTS runs_kind ON runs (is_open, host, kind)",
    "CREATE INDEX IF NOT EXISTS runs_latest ON runs (is_open, host, last_seen)",
    "CREATE INDEX IF NOT EXISTS runs_by_script ON runs (host, script, started)",
)


def _v2(tx: Transaction) -> None:
    for statement in V2:
        tx.execute(tx.dialect.ddl(statement))


#: Version 3: silences (router/engine/silences.py), expired ones kept.
V3 = (
    """CREATE TABLE IF NOT EXISTS silences (
        id {id},
        condition TEXT NOT NULL,
        starts {real} NOT NULL,
        ends {real} NOT NULL,
        comment TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created {real} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS silences_current ON silences (ends)",
)


def _v3(tx: Transaction) -> None:
    for statement in V3:
        tx.execute(tx.dialect.ddl(statement))


#: Version 4: what every backup last did (router/store/backups.py), filled
#: from the runs kept so far.
V4 = (
    """CREATE TABLE IF NOT EXISTS backup_scripts (
        host TEXT NOT NULL,
        script TEXT NOT NULL,
        kind TEXT NOT NULL,
        last_run TEXT NOT NULL,
        last_started {real} NOT NULL,
        last_ended {real},
        last_status TEXT NOT NULL,
        last_duration {real} NOT NULL,
        last_errors {int} NOT NULL,
        last_bytes {int} NOT NULL,
        last_seen {real} NOT NULL,
        last_success {real},
        runs_success {int} NOT NULL,
        runs_warning {int} NOT NULL,
        runs_failure {int} NOT NULL,
        runs_incomplete {int} NOT NULL,
        PRIMARY KEY (host, script)
    )""",
    """CREATE TABLE IF NOT EXISTS backup_sources (
        host TEXT NOT NULL,
        script TEXT NOT NULL,
        source TEXT NOT NULL,
        client TEXT NOT NULL,
        last_seen {real} NOT NULL,
        last_status TEXT NOT NULL,
        last_bytes {int},
        last_success {real},
        last_success_bytes {int},
        PRIMARY KEY (host, script, source)
    )""",
    "CREATE INDEX IF NOT EXISTS backup_scripts_seen ON backup_scripts (last_seen)",
    "CREATE INDEX IF NOT EXISTS backup_sources_seen ON backup_sources (last_seen)",
)


def _v4(tx: Transaction) -> None:
    from router.store import backups, runs

    for statement in V4:
        tx.execute(tx.dialect.ddl(statement))
    for (data,) in tx.all("SELECT data FROM runs ORDER BY started, id"):
        run = runs.from_json(data)
        backups.note_runs(tx, [run], {})
        for source in run.sources:
            fields = {**source, "script": run.script}
            backups.note_source(tx, run.host, fields, run.last_seen)


@dataclass(frozen=True)
class Migration:
    version: int
    about: str
    apply: Callable[[Transaction], None]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the journal, the outbox, throttles, expectations and digests", _v1),
    Migration(2, "runs: one backup's events as one story", _v2),
    Migration(3, "silences: notifications muted for a while", _v3),
    Migration(4, "backups: what each script and source last did", _v4),
)
LATEST = MIGRATIONS[-1].version

_VERSIONS = """CREATE TABLE IF NOT EXISTS schema_version (
    version {int} PRIMARY KEY,
    applied {real} NOT NULL,
    about TEXT NOT NULL
)"""


def version(db: Database) -> int:
    """The version the database is at (0: none applied)."""
    db.run(db.dialect.ddl(_VERSIONS))
    return int(db.scalar("SELECT MAX(version) FROM schema_version", default=0))


def upgrade(db: Database) -> list[Migration]:
    """Apply the missing versions, in order; the ones this call applied.
    Several processes may call it at once: each version is applied once."""
    applied = []
    for migration in MIGRATIONS:
        if migration.version <= version(db):
            continue
        with db.transaction() as tx:
            if tx.dialect.lock_schema:
                tx.execute(tx.dialect.lock_schema)
            done = tx.one("SELECT 1 FROM schema_version WHERE version = ?", (migration.version,))
            if done is not None:
                continue  # another process was quicker
            migration.apply(tx)
            tx.execute(
                "INSERT INTO schema_version (version, applied, about) VALUES (?, ?, ?)",
                (migration.version, time.time(), migration.about),
            )
        applied.append(migration)
    return applied
