"""Connections, transactions and the SQL dialect, for the store's parts.

The store's SQL is written once, in SQLite's spelling with ``?`` for
parameters; a ``Dialect`` says the few things each database spells its own
way (how a write transaction begins, the id of an inserted row, locking
rows being claimed, the larger of two values, a JSON field). Nothing else
in the router writes SQL, and nothing above the store knows which
database holds the state.

Connections are pooled: a query or a transaction takes an idle one (or
makes one) and gives it back when it is done, so no connection is used by
two threads at once (neither SQLite's nor psycopg's may be), threads that
come and go (one per request in the service) reuse connections instead of
opening one each, and the pool keeps at most a few idle.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Optional

Params = Sequence[Any]


@dataclass(frozen=True)
class Dialect:
    """What a database spells its own way."""

    name: str
    #: The parameter marker the driver takes (the SQL is written with ``?``).
    marker: str = "?"
    #: How a transaction that will write begins: SQLite takes the write lock
    #: up front (a busy database waits for it instead of failing half-way).
    begin: str = "BEGIN IMMEDIATE"
    #: Appended to a SELECT of rows about to be claimed: others skip them.
    lock_rows: str = ""
    #: The larger of two values (SQLite's two-argument MAX), for f-strings.
    greatest: str = "MAX"
    #: True: an INSERT gets its row's id back with RETURNING, not lastrowid.
    returning: bool = False
    #: How a text value is read out of a JSON column: {column} and {key}.
    json_text: str = "CASE WHEN json_valid({column}) THEN json_extract({column}, '$.{key}') END"

    #: Column types, by what they hold: {id} (an automatic 64-bit key), {int}
    #: (a 64-bit integer), {real} (a float), for the schema's CREATE TABLEs.
    types: tuple[tuple[str, str], ...] = (
        ("id", "INTEGER PRIMARY KEY"),
        ("int", "INTEGER"),
        ("real", "REAL"),
    )
    #: Run first in the transaction that upgrades the schema: one at a time.
    lock_schema: str = ""
    #: Holds a lock on one text key until the transaction ends (a host's
    #: runs, changed by one event at a time); "" where every write
    #: transaction is alone already (SQLite's BEGIN IMMEDIATE).
    lock_key: str = ""

    def sql(self, text: str) -> str:
        return text.replace("?", self.marker) if self.marker != "?" else text

    def ddl(self, text: str) -> str:
        """A CREATE statement with this database's column types."""
        return text.format(**dict(self.types))


class Transaction:
    """One transaction on one connection (see Database.transaction)."""

    def __init__(self, connection: Any, dialect: Dialect) -> None:
        self.connection = connection
        self.dialect = dialect

    def execute(self, sql: str, params: Params = ()) -> Any:
        return self.connection.execute(self.dialect.sql(sql), tuple(params))

    def one(self, sql: str, params: Params = ()) -> Optional[tuple]:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Params = ()) -> list[tuple]:
        return list(self.execute(sql, params).fetchall())

    def insert(self, sql: str, params: Params = ()) -> int:
        """Run an INSERT; the new row's id."""
        if self.dialect.returning:
            row = self.execute(sql + " RETURNING id", params).fetchone()
            return int(row[0])
        return int(self.execute(sql, params).lastrowid or 0)


class Lost(Exception):
    """Raised inside a transaction when another process did the work first:
    roll back, do nothing (Database.transaction lets it through)."""


class Closed(Exception):
    """The store was used after it was closed (a thread outlived its service)."""


#: Idle connections kept for reuse; more are closed when given back.
MAX_IDLE = 8


class Database:
    """A pool of connections to one database."""

    def __init__(self, connect: Callable[[], Any], dialect: Dialect, where: str) -> None:
        self._connect = connect
        self.dialect = dialect
        #: For messages: the database's file or address (never a password).
        self.where = where
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A connection of this thread's own until the block ends."""
        with self._lock:
            if self._closed:
                raise Closed(f"the store ({self.where}) is closed")
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = self._connect()
        try:
            yield connection
        finally:
            # A connection the server dropped (a restart, a failover) is not reused.
            broken = getattr(connection, "broken", False) or getattr(connection, "closed", False)
            with self._lock:
                keep = not self._closed and not broken and len(self._idle) < MAX_IDLE
                if keep:
                    self._idle.append(connection)
            if not keep:
                with contextlib.suppress(Exception):
                    connection.close()

    def run(self, sql: str, params: Params = ()) -> int:
        """One statement on its own (committed at once); the rows it changed."""
        with self.connection() as connection:
            return int(Transaction(connection, self.dialect).execute(sql, params).rowcount)

    def one(self, sql: str, params: Params = ()) -> Optional[tuple]:
        with self.connection() as connection:
            return Transaction(connection, self.dialect).one(sql, params)

    def all(self, sql: str, params: Params = ()) -> list[tuple]:
        with self.connection() as connection:
            return Transaction(connection, self.dialect).all(sql, params)

    def scalar(self, sql: str, params: Params = (), default: Any = None) -> Any:
        row = self.one(sql, params)
        return default if row is None or row[0] is None else row[0]

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A transaction: committed when the block ends, rolled back when it
        raises (and the exception goes on)."""
        with self.connection() as connection:
            connection.execute(self.dialect.begin)
            try:
                yield Transaction(connection, self.dialect)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def close(self) -> None:
        """Close the idle connections; ones in use close when given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):  # closing must not hide the cause
                connection.close()
