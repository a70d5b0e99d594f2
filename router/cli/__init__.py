"""``router``: the admin's command line. Each subcommand is a thin shell over
the library; the work happens in the pipeline modules. This module is the
parser and ``main``; the commands are grouped by topic in the modules beside
it (checking, routing, history, serving)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional

from router import __version__
from router.cli.checking import cmd_check, cmd_events
from router.cli.database import add_parser as add_db_parser
from router.cli.forwarding import add_parser as add_forward_parser
from router.cli.history import cmd_history, cmd_outbox
from router.cli.routing import cmd_replay, cmd_test
from router.cli.runs import cmd_runs
from router.cli.serving import cmd_init, cmd_serve
from router.cli.shared import EXIT_BROKEN_PIPE, EXIT_OK, EXIT_STATUSES, EXIT_USAGE
from router.cli.silences import add_parser as add_silence_parser
from router.cli.status import add_parser as add_status_parser
from router.config import ConfigError


class _Parser(argparse.ArgumentParser):
    """argparse, but bad usage exits 2 with one line, as ``router check`` promises."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="router",
        description="Route Retrospect events through rules.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"retro-router {__version__}")
    parser.add_argument("--config", help="router.toml to use (default: ROUTER_CONFIG, ...)")
    # --config is also taken after the command (`router check --config FILE`);
    # SUPPRESS keeps a subcommand without it from undoing the one given before.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="router.toml to use")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    original = sub.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return original(name, parents=[common], **kwargs)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    init = sub.add_parser(
        "init", help="write router.toml, the default rules and a private state directory"
    )
    init.add_argument("--prefix", metavar="DIR", help="put all three under DIR")
    init.add_argument("--rules-dir", metavar="DIR", help="the rules directory to create")
    init.add_argument("--state-dir", metavar="DIR", help="the state directory to create")
    init.add_argument(
        "--handler",
        metavar="PATH",
        help="also write the handler Retrospect runs at PATH (POSIX: no shell, no site)",
    )
    init.set_defaults(func=cmd_init)

    check = sub.add_parser("check", help="validate rule files like a compiler")
    check.add_argument("paths", nargs="*", help="rule files or directories (default: rules_dir)")
    check.add_argument("--strict", action="store_true", help="treat warnings as errors")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.set_defaults(func=cmd_check)

    events = sub.add_parser("events", help="list Retrospect's events and their fields")
    events.add_argument("name", nargs="?", help="one event (its fields in argument order)")
    events.add_argument("--format", choices=("text", "json"), default="text")
    events.set_defaults(func=cmd_events)

    test = sub.add_parser("test", help="dry run: what would this event do? (sends nothing)")
    test.add_argument(
        "--rules", action="append", help="rule file or directory (default: rules_dir)"
    )
    test.add_argument("--format", choices=("text", "json"), default="text")
    test.add_argument(
        "--at", metavar="TIME", help='evaluate as if received then ("2026-12-01 02:30")'
    )
    test.add_argument("event", help="the event name, as Retrospect passes it")
    test.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    test.set_defaults(func=cmd_test)

    replay = sub.add_parser("replay", help="run a file of handler invocations through the rules")
    replay.add_argument("file", help="one invocation per line, shell-quoted")
    replay.add_argument("--rules", action="append", help="rule file or directory")
    replay.add_argument(
        "--expect", help="file of the rules each line must fire; exit 1 on a difference"
    )
    replay.add_argument("--save-expect", help="write the rules each line fires, for later --expect")
    replay.add_argument(
        "--live", action="store_true", help="really process each line (journal, deliver, run)"
    )
    replay.add_argument("--format", choices=("text", "json"), default="text")
    replay.set_defaults(func=cmd_replay)

    history = sub.add_parser("history", help="recent events from the journal")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument(
        "--since", metavar="WHEN", help='a time ("2024-05-01 03:00") or how long ago ("2h", "1d")'
    )
    history.add_argument("--event", help="only this event name")
    history.add_argument("--script", help="only events of this script")
    history.add_argument("--client", help="only events of this client")
    history.add_argument("--host", help="only events from this engine")
    history.add_argument("--status", choices=("failure", "warning", "success", "info"))
    history.add_argument("--format", choices=("text", "json"), default="text")
    history.set_defaults(func=cmd_history)

    runs = sub.add_parser("runs", help="backup runs (one script's events as one), newest first")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--script", help="only runs of this script")
    runs.add_argument("--host", help="only runs on this engine")
    runs.add_argument("--format", choices=("text", "json"), default="text")
    runs.set_defaults(func=cmd_runs)

    add_silence_parser(sub)
    add_status_parser(sub)
    add_db_parser(sub)
    add_forward_parser(sub)

    outbox = sub.add_parser("outbox", help="queued notifications; 'outbox retry' sends again")
    outbox.add_argument("--dead", action="store_true", help="only dead letters")
    outbox.add_argument("--limit", type=int, default=50)
    outbox.add_argument("--format", choices=("text", "json"), default="text")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", parser_class=_Parser)
    retry = outbox_sub.add_parser("retry", help="make rows due now and deliver them")
    retry.add_argument("id", nargs="?", type=int, help="one row (see `router outbox`)")
    retry.add_argument("--all", action="store_true", help="every pending and dead row")
    outbox.set_defaults(func=cmd_outbox)

    serve = sub.add_parser(
        "serve", help="run the service: local socket, HTTP, delivery, hot reload, timers"
    )
    serve.add_argument(
        "--listen", metavar="HOST:PORT", help="serve HTTP here (default: the listen setting; none)"
    )
    serve.add_argument(
        "--poll", action="store_true", help="poll the rules directory (network file systems)"
    )
    serve.add_argument("--tls-cert", metavar="FILE", help="HTTPS: the certificate chain (PEM)")
    serve.add_argument("--tls-key", metavar="FILE", help="HTTPS: its private key (PEM)")
    serve.set_defaults(func=cmd_serve)

    completion = sub.add_parser("completion", help="shell completion: source its output")
    completion.add_argument("shell", choices=("bash", "zsh", "fish"))
    completion.set_defaults(func=cmd_completion)
    return parser


def cmd_completion(args: argparse.Namespace) -> int:
    from router.completion import script

    print(script(args.shell, build_parser()))
    return EXIT_OK


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        status = args.func(args)
        sys.stdout.flush()
        return status
    except ConfigError as exc:
        print(f"router: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader (head, less) went away: nothing more to say, and no
        # traceback when Python flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
