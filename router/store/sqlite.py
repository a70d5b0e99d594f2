"""The SQLite backend: one file in the state directory.

WAL mode and a busy timeout make it safe for many short-lived handlers and
the service at once. The file holds secrets (the URLs of queued
notifications) and decides what the router does, so it is created 0600 in
a 0700 directory, and one that another user owns or can write is refused.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from router import locations
from router.store.database import Database, Dialect
from router.trust import require_private, require_private_dir

DB_NAME = locations.DATABASE_NAME
BUSY_TIMEOUT_MS = 10_000
SQLITE = Dialect(name="sqlite")
_FILES = (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm")


def connect_file(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return connection


def database(state_dir: Path) -> Database:
    """The database in ``state_dir``, created if missing. Raises Untrusted
    when the directory or a database file is another user's or writable by
    others (a planted database could queue sends or hold crafted rows)."""
    require_private_dir(state_dir)
    for name in _FILES:
        require_private(state_dir / name)
    path = state_dir / DB_NAME

    def connect() -> sqlite3.Connection:
        # Created 0600 here; SQLite gives its -wal and -shm files the
        # database's mode. (Not through the umask: that is the whole
        # process's, and the service opens connections on many threads.)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        connection = connect_file(str(path))
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        for name in _FILES:
            target = state_dir / name
            if os.name == "posix" and target.exists():
                os.chmod(target, 0o600)
        return connection

    db = Database(connect, SQLITE, where=str(path))
    with db.connection():  # fail here, not at the first query, if it cannot be opened
        pass
    return db


def exists(state_dir: Path) -> bool:
    return (state_dir / DB_NAME).is_file()


def memory() -> Database:
    """A throwaway database shared by every thread of this process."""
    connection = connect_file(":memory:")
    return Database(lambda: connection, SQLITE, where=":memory:")
