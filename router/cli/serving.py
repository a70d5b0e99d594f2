"""``router init`` and ``router serve``: setting the router up, and
running its service."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from router.cli.shared import EXIT_ERRORS, EXIT_OK, load_config


def cmd_init(args: argparse.Namespace) -> int:
    from router.init import initialise, layout, next_steps, write_handler
    from router.trust import Untrusted

    where = layout(args.prefix, args.config, args.rules_dir, args.state_dir)
    try:
        said = initialise(where)
        if args.handler:
            write_handler(Path(args.handler).expanduser().absolute(), where, said)
    except (OSError, Untrusted, ValueError) as exc:
        print(f"router init: {exc}", file=sys.stderr)
        if isinstance(exc, PermissionError):
            print("router init: run it as root, or choose places with --prefix", file=sys.stderr)
        return EXIT_ERRORS
    print("\n".join(said))
    print("\nNext:")
    print("\n".join(f"  {command}" for command in next_steps(where)))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from router.service import serve

    if bool(args.tls_cert) != bool(args.tls_key):
        print("router serve: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    return serve(load_config(args), listen=args.listen, poll=args.poll, tls=tls)
