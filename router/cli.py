"""``router``: the admin's command line. Each subcommand is a thin shell over
the library; the work happens in the pipeline modules."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from router import __version__
from router.config import ConfigError, load_config
from router.events import CATALOG, EVENTS, canonical_name, catalog_json, describe_catalog
from router.events import describe_event as describe_one

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but bad usage exits 2 with one line, as ``router check`` promises."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="router", description="Route Retrospect events through rules.")
    parser.add_argument("--version", action="version", version=f"retro-router {__version__}")
    parser.add_argument("--config", help="router.toml to use (default: ROUTER_CONFIG, ...)")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    check = sub.add_parser("check", help="validate rule files like a compiler")
    check.add_argument("paths", nargs="*", help="rule files or directories (default: rules_dir)")
    check.add_argument("--strict", action="store_true", help="treat warnings as errors")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.set_defaults(func=cmd_check)

    events = sub.add_parser("events", help="list Retrospect's events and their fields")
    events.add_argument("name", nargs="?", help="one event (its fields in argument order)")
    events.add_argument("--format", choices=("text", "json"), default="text")
    events.set_defaults(func=cmd_events)
    return parser


def cmd_events(args: argparse.Namespace) -> int:
    if args.name is None:
        if args.format == "json":
            print(json.dumps(catalog_json(), indent=2))
        else:
            print(describe_catalog())
        return EXIT_OK
    name = canonical_name(args.name)
    if name is None:
        from router.language.diagnostics import did_you_mean

        suggestion = did_you_mean(args.name, [spec.name for spec in CATALOG])
        print(f"router events: unknown event {args.name!r}{suggestion}", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "json":
        print(json.dumps(next(e for e in catalog_json() if e["name"] == name), indent=2))
    else:
        print(describe_one(EVENTS[name]))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from router.language.checker import check_paths
    from router.language.diagnostics import render_json, render_text

    paths = [Path(p) for p in args.paths] if args.paths else [load_config(args.config).rules_dir]
    result = check_paths(paths)
    if result.usage_error:
        print(f"router check: {result.usage_error}", file=sys.stderr)
        return EXIT_USAGE
    diagnostics = result.diagnostics
    if args.format == "json":
        print(render_json(diagnostics))
    elif diagnostics:
        print(render_text(diagnostics, result.sources))
    errors = sum(d.is_error for d in diagnostics)
    warnings = len(diagnostics) - errors
    if args.format == "text":
        summary = (
            f"{result.files} file(s), {result.rules} rule(s):"
            f" {errors} error(s), {warnings} warning(s)"
        )
        print(summary, file=sys.stderr if diagnostics else sys.stdout)
    failed = errors > 0 or (args.strict and warnings > 0)
    return EXIT_ERRORS if failed else EXIT_OK


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"router: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
