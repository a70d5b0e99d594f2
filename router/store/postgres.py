"""The PostgreSQL backend: the fleet's shared state (``state =
"postgresql://..."`` in router.toml, or ROUTER_STATE_URL).

Several ``router serve`` replicas share one database: outbox rows are
claimed with ``FOR UPDATE SKIP LOCKED`` and a lease, timers are claimed in
the transaction that journals their firing, and the schema is upgraded by
one replica at a time (an advisory lock). psycopg 3 is an optional extra
(``pip install 'retro-router[postgres]'``); it is imported only here.
"""

from __future__ import annotations

from typing import Any

from router.store.database import Database, Dialect

#: URL schemes that choose this backend.
SCHEMES = ("postgresql://", "postgres://")
#: Seconds to wait for the server when connecting (a dead database must not
#: hold a handler past its deadline).
CONNECT_TIMEOUT = 5

POSTGRES = Dialect(
    name="postgresql",
    marker="%s",
    begin="BEGIN",
    lock_rows=" FOR UPDATE SKIP LOCKED",
    greatest="GREATEST",
    returning=True,
    json_text="({column}::jsonb ->> '{key}')",
    types=(("id", "BIGSERIAL PRIMARY KEY"), ("int", "BIGINT"), ("real", "DOUBLE PRECISION")),
    # One replica at a time upgrades the schema (any number may start at once).
    lock_schema="SELECT pg_advisory_xact_lock(727274)",
    lock_key="SELECT pg_advisory_xact_lock(727275, hashtext(?))",
)


class MissingDriver(RuntimeError):
    """psycopg is not installed."""


def is_url(state: str) -> bool:
    return state.startswith(SCHEMES)


def shown(url: str) -> str:
    """The URL as messages show it: user, host, port and database, never
    the password (nor query parameters, which may hold one)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        user = f"{parts.username}{':****' if parts.password else ''}@" if parts.username else ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return url.split("://", 1)[0] + "://****"
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def database(url: str) -> Database:
    """A pool of connections to the database at ``url`` (checked at once:
    a wrong URL or a server that does not answer fails here)."""
    try:
        import psycopg
    except ImportError:
        raise MissingDriver(
            "state is a PostgreSQL URL, but psycopg is not installed:"
            " pip install 'retro-router[postgres]'"
        ) from None

    def connect() -> Any:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)

    db = Database(connect, POSTGRES, where=shown(url))
    with db.connection():
        pass
    return db
