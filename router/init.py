"""``router init``: a working installation in three places.

Writes a commented router.toml (every key, from ``router/data/router.toml``),
a rules directory holding the shipped default rules and a README on where
to add one's own, and a private state directory: at the platform's
locations, under a prefix, or where the admin says. Never overwrites a file
that is already there: an admin's edits are never lost to a second run.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from router import locations
from router.trust import require_private_dir

TEMPLATE = Path(locations.package_dir()) / "data" / "router.toml"
RULES_README = """\
Rule files for retro-router: every *.rules file in this directory is loaded,
in name order (default.rules is the shipped default: it logs every event and
notifies the `admin` target, whose URLs come from ROUTER_NOTIFY_URL).

Add your own rules in files of your own beside it (say site.rules), check
them with `router check`, try them with `router test EVENT ARG...`. Keep
this directory and its files owned by root (or the router's user) and
writable by no one else: rules can run programs as the user Retrospect runs as.
"""


#: The handler ``router init --handler PATH`` writes (POSIX): Python itself
#: on the #! line, without site (-IS), so an event costs no shell and no
#: site; the inline path re-runs it with site, for the dependencies.
HANDLER = """\
#!{python} -IS
# Written by `router init --handler`: the program Retrospect runs for every
# event (RetroEventHandler EVENT ARG...). Python starts without site (-IS):
# when `router serve` runs, handing it the event needs only the standard
# library. Without the service, this file runs again with site (the inline
# path needs the router's dependencies). Run `router init --handler` again
# after moving the installation.
import os
import sys

os.environ.setdefault("ROUTER_CONFIG", {config})
if sys.flags.no_site:
    sys.path.insert(0, {package_parent})
    from router.handler import main_without_site

    main_without_site(lambda: os.execv(sys.executable, [sys.executable, __file__] + sys.argv[1:]))
from router.handler import run

run()
"""


@dataclass(frozen=True)
class Layout:
    """Where an installation's three parts go."""

    config: Path
    rules_dir: Path
    state_dir: Path


def layout(
    prefix: Optional[str] = None,
    config: Optional[str] = None,
    rules_dir: Optional[str] = None,
    state_dir: Optional[str] = None,
) -> Layout:
    """The platform's locations, or everything under ``prefix``; each of the
    three given explicitly wins."""
    if prefix is not None:
        base = Path(prefix).expanduser().absolute()
        default = Layout(base / locations.CONFIG_NAME, base / "rules", base / "state")
    else:
        home = Path(locations.platform_config_dir())
        default = Layout(
            home / locations.CONFIG_NAME, home / "rules", Path(locations.platform_state_dir())
        )
    return Layout(
        Path(config).expanduser().absolute() if config else default.config,
        Path(rules_dir).expanduser().absolute() if rules_dir else default.rules_dir,
        Path(state_dir).expanduser().absolute() if state_dir else default.state_dir,
    )


def _toml_path(path: Path, config: Path) -> str:
    """A path as a TOML string, relative to router.toml when it sits below it."""
    try:
        shown = str(path.relative_to(config.parent))
    except ValueError:
        shown = str(path)
    return json.dumps(shown)  # a JSON string is a TOML basic string


def config_text(where: Layout) -> str:
    text = TEMPLATE.read_text(encoding="utf-8")
    text = text.replace("@RULES_DIR@", _toml_path(where.rules_dir, where.config))
    return text.replace("@STATE_DIR@", _toml_path(where.state_dir, where.config))


def _write_new(path: Path, text: str, mode: int, said: list[str]) -> None:
    if path.exists():
        said.append(f"kept    {path} (it exists; not changed)")
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    said.append(f"wrote   {path}")


def initialise(where: Layout) -> list[str]:
    """Create the installation; returns what was done, one line each.
    Raises OSError (or trust.Untrusted) when a place cannot be used."""
    said: list[str] = []
    # router.toml may hold a token and the admin's URL: only its owner reads it.
    _write_new(where.config, config_text(where), 0o600, said)
    where.rules_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    for shipped in sorted(Path(locations.default_rules_dir()).glob("*.rules")):
        _write_new(where.rules_dir / shipped.name, shipped.read_text(encoding="utf-8"), 0o644, said)
    _write_new(where.rules_dir / "README.txt", RULES_README, 0o644, said)
    existed = where.state_dir.is_dir()
    require_private_dir(where.state_dir)
    verb = "kept   " if existed else "created"
    said.append(f"{verb} {where.state_dir} (private to this user: 0700)")
    return said


def handler_text(config: Path) -> str:
    """The handler script for this installation: its Python, where its
    ``router`` package is, and its router.toml (``config``). Raises
    ValueError where a #! line cannot say it."""
    if os.name == "nt":
        raise ValueError(
            "on Windows, copy the retroeventhandler.exe console script instead (README.md)"
        )
    python = sys.executable
    if not python or any(char.isspace() for char in python):
        raise ValueError(
            f"the #! line cannot name this Python ({python!r}: it has a space);"
            " link the retroeventhandler console script instead"
        )
    package_parent = Path(locations.package_dir()).resolve().parent
    return HANDLER.format(
        python=python, package_parent=repr(str(package_parent)), config=repr(str(config))
    )


def write_handler(path: Path, where: Layout, said: list[str]) -> None:
    """Write the handler script at ``path`` (kept if it exists), for the
    router.toml of ``where``."""
    _write_new(path, handler_text(where.config), 0o755, said)


def quote(path: Path) -> str:
    """A path as the admin would type it in this platform's shell."""
    if os.name == "nt":
        return f'"{path}"' if " " in str(path) else str(path)
    return shlex.quote(str(path))


def next_steps(where: Layout) -> list[str]:
    """The two commands that show the installation works."""
    config = quote(where.config)
    return [
        f"router check --config {config}",
        f'router test --config {config} EndScript "Daily Backup" 0 -530 "backup client not found"',
    ]
