"""``router check`` and ``router events``: for the admin writing rules,
whether they hold, and which events and fields they can name."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from router import config as settings
from router.catalog import EVENTS, catalog_json, describe_catalog, describe_event
from router.cli.shared import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, known_event, load_config
from router.config import ConfigError


def cmd_check(args: argparse.Namespace) -> int:
    from router.checker import check_paths
    from router.language.diagnostics import render_json, render_text
    from router.loader import use_caches

    if args.paths:
        paths = [Path(p) for p in args.paths]
        # Explicit paths need no configuration; a broken one only costs the grammar cache.
        with contextlib.suppress(ConfigError):
            use_caches(settings.load(args.config).state_dir)
    else:
        config = load_config(args)
        use_caches(config.state_dir)
        paths = [config.rules_dir]
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


def cmd_events(args: argparse.Namespace) -> int:
    if args.name is None:
        if args.format == "json":
            print(json.dumps(catalog_json(), indent=2))
        else:
            print(describe_catalog())
        return EXIT_OK
    name = known_event(args.name, "events")
    if name is None:
        return EXIT_USAGE
    if args.format == "json":
        print(json.dumps(next(e for e in catalog_json() if e["name"] == name), indent=2))
    else:
        print(describe_event(EVENTS[name]))
    return EXIT_OK
