"""``router db upgrade``: bring the store's schema up to date, now.

Every process that writes upgrades the store when it opens it (``router
serve`` at start-up included), so this is for the admin who wants to do it
first, by hand: before starting replicas of a new version, say. Versioned
and idempotent: a second run applies nothing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from router.cli.shared import EXIT_ERRORS, EXIT_OK, load_config


def add_parser(sub: Any) -> None:
    db = sub.add_parser("db", help="the store's schema: 'db upgrade' brings it up to date")
    commands = db.add_subparsers(dest="db_command", parser_class=type(db))
    commands.add_parser("upgrade", help="apply the schema versions the store lacks")
    db.set_defaults(func=cmd_db, db_command=None)


def cmd_db(args: argparse.Namespace) -> int:
    from router.store import open_store, schema

    if args.db_command != "upgrade":
        print("router db: say upgrade (router db -h)", file=sys.stderr)
        return EXIT_ERRORS
    config = load_config(args)
    try:
        store = open_store(config)
    except Exception as exc:  # noqa: BLE001 - a database that cannot be reached, in words
        print(f"router db upgrade: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERRORS
    with store:
        for migration in store.upgraded:
            print(f"applied version {migration.version}: {migration.about}")
        print(f"{store.where}: schema at version {schema.version(store.db)} (the latest)")
    return EXIT_OK
