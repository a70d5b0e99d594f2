"""``router runs``: the backup runs, newest first (docs/rules.md, "Runs")."""

from __future__ import annotations

import argparse
import json
from typing import Any

from router.cli.shared import EXIT_OK, existing_store, load_config


def cmd_runs(args: argparse.Namespace) -> int:
    store = existing_store(load_config(args), args.format)
    if store is None:
        return EXIT_OK
    with store:
        runs = store.runs.recent(limit=args.limit, host=args.host, script=args.script)
    views = [run.view() for run in runs]
    if args.format == "json":
        print(json.dumps([_json(view) for view in views], indent=2, ensure_ascii=False))
        return EXIT_OK
    for view in reversed(views):
        ended = f"{view['ended']:%H:%M}" if "ended" in view else "open"
        print(
            f"{view['started']:%Y-%m-%d %H:%M}-{ended} {view['host']} {view['script']}"
            f" [{view['status']}] {view['source_count']} source(s),"
            f" {view['failed_count']} failed, {view['errors']} error(s)"
        )
        for source in view["failed"]:
            print(f"    failed: {source['source']}: {source.get('error_message') or '?'}")
        if "fatal" in view:
            print(f"    fatal: {view['fatal'].get('reason') or view['fatal'].get('error_message')}")
        if view["media_requests"]:
            print(f"    waited for media {view['media_requests']} time(s)")
    return EXIT_OK


def _json(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in view.items()}
