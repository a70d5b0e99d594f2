"""``router silence add|list|expire``: mute notifications for a while
without editing rules (docs/rules.md, "Silences")."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from typing import Any

from router.cli.shared import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, existing_store, load_config


def add_parser(sub: Any) -> None:
    """``router silence`` and its three commands."""
    silence = sub.add_parser("silence", help="mute notifications for a while: add, list, expire")
    commands = silence.add_subparsers(dest="silence_command", parser_class=type(silence))
    add = commands.add_parser("add", help="mute the notifications a condition matches")
    add.add_argument(
        "condition", help="a rule condition; may test rule and target ('client == \"LAPTOP-7\"')"
    )
    how_long = add.add_mutually_exclusive_group(required=True)
    how_long.add_argument("--for", dest="duration", metavar="DURATION", help="as in 2h, 10d")
    how_long.add_argument("--until", metavar="TIME", help='as in "2026-12-01 08:00"')
    add.add_argument("--starts", metavar="TIME", help="start later than now")
    add.add_argument("--comment", default="", help="why (shown in lists and on the status page)")
    add.add_argument("--format", choices=("text", "json"), default="text")
    listing = commands.add_parser("list", help="silences in force or to come")
    listing.add_argument("--all", action="store_true", help="expired ones too (history)")
    listing.add_argument("--format", choices=("text", "json"), default="text")
    expire = commands.add_parser("expire", help="end a silence now (it is kept, for history)")
    expire.add_argument("id", type=int, help="the silence's id (router silence list)")
    silence.set_defaults(func=cmd_silence, silence_command=None)


def cmd_silence(args: argparse.Namespace) -> int:
    if args.silence_command is None:
        print("router silence: say add, list or expire (router silence -h)", file=sys.stderr)
        return EXIT_USAGE
    config = load_config(args)
    return {"add": _add, "list": _list, "expire": _expire}[args.silence_command](args, config)


def _add(args: argparse.Namespace, config: Any) -> int:
    from router import silencing
    from router.store import open_store

    now = time.time()
    try:
        starts, ends = silencing.window(
            now, args.duration, args.until, args.starts, config.date_order
        )
        with open_store(config) as store:
            added = silencing.add(store, args.condition, starts, ends, args.comment, _who(), now)
    except silencing.SilenceRefused as exc:
        print(f"router silence add: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for warning in added.warnings:
        print(warning, file=sys.stderr)
    silence = added.silence
    if args.format == "json":
        print(json.dumps(silence.record(now), indent=2, ensure_ascii=False))
        return EXIT_OK
    record = silence.record(now)
    when = f"from {record['starts']} " if record["state"] == "pending" else ""
    print(silence.id)
    print(
        f"router: silence #{silence.id} mutes {silence.condition} {when}until {record['ends']}",
        file=sys.stderr,
    )
    return EXIT_OK


def _list(args: argparse.Namespace, config: Any) -> int:
    from router import silencing

    store = existing_store(config, args.format, "silences")
    if store is None:
        return EXIT_OK
    now = time.time()
    with store:
        records = [s.record(now) for s in silencing.listed(store, args.all, now)]
    if args.format == "json":
        print(json.dumps(records, indent=2, ensure_ascii=False))
        return EXIT_OK
    if not records:
        print("no silences" + ("" if args.all else " in force (--all: the expired ones too)"))
    for record in records:
        print(f"#{record['id']:<4} {_describe(record)}")
    return EXIT_OK


def _expire(args: argparse.Namespace, config: Any) -> int:
    from router import silencing

    store = existing_store(config, "text", "silences")
    if store is None:
        return EXIT_ERRORS
    now = time.time()
    with store:
        before = store.silences.get(args.id)
        try:
            silence = silencing.expire(store, args.id, now)
        except LookupError as exc:
            print(f"router silence expire: {exc}", file=sys.stderr)
            return EXIT_ERRORS
    if before is not None and before.state(now) != "expired":
        print(f"silence #{silence.id} expired")
    else:
        print(f"silence #{silence.id} had ended already, at {silence.record(now)['ends']}")
    return EXIT_OK


def _describe(record: dict[str, Any]) -> str:
    """One silence on one line: its state, its window, what it mutes, why."""
    state = record["state"]
    if state == "pending":
        when = f"from {record['starts']} until {record['ends']}"
    elif state == "active":
        when = f"until {record['ends']}"
    else:
        when = f"ended {record['ends']}"
    why = f"  ({record['comment']})" if record["comment"] else ""
    by = f" [by {record['created_by']}]" if record["created_by"] else ""
    return f"{state:<8} {when}: {record['condition']}{why}{by}"


def _who() -> str:
    """Who adds a silence from this command line (shown with it)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name is no reason to refuse
        return ""
