"""``router forward --flush``: an engine's spooled events to the central
routers, in order (docs/operating.md, "Many engines")."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from router.cli.shared import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, load_config

#: How long one ``router forward --flush`` keeps sending (seconds).
FLUSH_BUDGET = 60.0


def add_parser(sub: Any) -> None:
    forward = sub.add_parser("forward", help="an engine's spooled events to the central routers")
    forward.add_argument("--flush", action="store_true", help="send the spool now, in order")
    forward.add_argument("--format", choices=("text", "json"), default="text")
    forward.set_defaults(func=cmd_forward)


def cmd_forward(args: argparse.Namespace) -> int:
    import json
    import time

    from router import forwarding

    config = load_config(args)
    if not config.forward:
        print("router forward: forward names no central router in router.toml", file=sys.stderr)
        return EXIT_USAGE
    sent, problems = forwarding.flush(config, time.time() + FLUSH_BUDGET) if args.flush else (0, [])
    waiting = len(forwarding.pending(config.state_dir))
    if args.format == "json":
        print(json.dumps({"forwarded": sent, "waiting": waiting, "problems": problems}))
    else:
        print(f"{sent} forwarded, {waiting} waiting" + (f": {problems[0]}" if problems else ""))
    return EXIT_ERRORS if problems else EXIT_OK
