"""What the ``router`` commands share: exit statuses, the configuration,
event names."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Optional

from router import config as settings
from router.catalog import CATALOG, canonical_name

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 141  # as a program killed by SIGPIPE: the reader went away
EXIT_STATUSES = """\
exit status:
  0    done (check: no errors; warnings allowed unless --strict)
  1    errors: check found errors, replay differs from --expect, a retried send
       failed, or the rules could not be loaded
  2    bad usage: an unknown command, option, event name or file; a broken router.toml
  141  the output pipe was closed (router history | head)"""


def load_config(args: argparse.Namespace) -> Any:
    """The configuration (``--config``, or where it is found), its warnings
    (unknown keys) said on stderr."""
    config = settings.load(args.config)
    for warning in config.warnings:
        print(f"router: {warning}", file=sys.stderr)
    return config


def existing_store(config: Any, output: str, what: str = "journal") -> Any:
    """The store, to read; None after saying there is none yet (``[]`` for
    ``--format json``): reading commands create nothing."""
    from router.store import open_existing_store

    store = open_existing_store(config)
    if store is None:
        print("[]" if output == "json" else f"no {what} yet in {config.state_dir}")
    return store


def known_event(name: str, command: str, also: tuple[str, ...] = ()) -> Optional[str]:
    """The catalog's name for ``name``, or None after saying, with a
    suggestion, that there is no such event."""
    canonical = canonical_name(name)
    if canonical is not None or name in also:
        return canonical or name
    from router.suggest import did_you_mean

    suggestion = did_you_mean(name, [spec.name for spec in CATALOG] + list(also))
    print(
        f"router {command}: unknown event {name!r}{suggestion}; `router events` lists them",
        file=sys.stderr,
    )
    return None
