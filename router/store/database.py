"""Connections, transactions and the SQL dialect, for the store's parts.

The store's SQL is written once, in SQLite's spelling with ``?`` for
parameters; a ``Dialect`` says the few things each database spells its own
way (how a write transaction begins, the id of an inserted row, locking
rows being claimed, the larger of two values, a JSON field). Nothing else
in the router writes SQL, and nothing above the store knows which
database holds the state.

Each thread gets its own connection (SQLite's and psycopg's connections
are not for two threads at once), made on first use and closed with the
database.
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


class Database:
    """The connections to one database, one per thread."""

    def __init__(self, connect: Callable[[], Any], dialect: Dialect, where: str) -> None:
        self._connect = connect
        self.dialect = dialect
        #: For messages: the database's file or address (never a password).
        self.where = where
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    def connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self._closed:
                raise Closed(f"the store ({self.where}) is closed")
            connection = self._local.connection = self._connect()
            with self._lock:
                self._all.append(connection)
        return connection

    def execute(self, sql: str, params: Params = ()) -> Any:
        """One statement on its own (committed at once)."""
        return Transaction(self.connection(), self.dialect).execute(sql, params)

    def one(self, sql: str, params: Params = ()) -> Optional[tuple]:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Params = ()) -> list[tuple]:
        return list(self.execute(sql, params).fetchall())

    def scalar(self, sql: str, params: Params = (), default: Any = None) -> Any:
        row = self.one(sql, params)
        return default if row is None or row[0] is None else row[0]

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A transaction: committed when the block ends, rolled back when it
        raises (and the exception goes on)."""
        connection = self.connection()
        connection.execute(self.dialect.begin)
        try:
            yield Transaction(connection, self.dialect)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._all = self._all, []
        for connection in connections:
            with contextlib.suppress(Exception):  # closing must not hide the cause
                connection.close()
        self._local = threading.local()
