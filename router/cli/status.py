"""``router status``: did everything back up? (docs/operating.md, "Seeing
every backup"). From the store, with or without the service."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from router.cli.shared import EXIT_OK, EXIT_USAGE, load_config


def add_parser(sub: Any) -> None:
    status = sub.add_parser("status", help="did everything back up? every backup at a glance")
    status.add_argument("--format", choices=("text", "json", "prometheus"), default="text")
    status.add_argument(
        "--output",
        metavar="FILE",
        help="write there instead, atomically (a node_exporter textfile: *.prom)",
    )
    status.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from router import status
    from router.store import open_existing_store

    config = load_config(args)
    store = open_existing_store(config)
    if store is None:
        empty = {"text": f"no journal yet in {config.state_dir}", "json": "{}", "prometheus": ""}
        return _emit(empty[args.format], args.output)
    with store:
        ruleset, rules = rules_in_force(config)
        seen = status.gather(store, ruleset, rules, config.status_forget)
    if args.format == "json":
        shown = json.dumps(status.as_json(seen), indent=2, ensure_ascii=False)
    elif args.format == "prometheus":
        shown = status.prometheus(seen)
    else:
        shown = status.text(seen)
    return _emit(shown, args.output)


def rules_in_force(config: Any) -> tuple[Any, dict[str, Any]]:
    """The ruleset the handlers run (its cache, else checked) and its health."""
    from router.loader import load_ruleset

    loaded = load_ruleset(config.rules_dir, config.state_dir, config.date_order)
    health = {"ok": not loaded.errors, "rules": loaded.ruleset.size, "errors": loaded.errors}
    return loaded.ruleset, health


def _emit(text: str, output: Any) -> int:
    if output is None:
        print(text, end="" if text.endswith("\n") else "\n")
        return EXIT_OK
    path = Path(output)
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)  # the textfile collector reads it as another user
        os.replace(temporary, path)
    except OSError as exc:
        print(f"router status: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
