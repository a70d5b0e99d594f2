"""Small helpers the test modules share (imported as ``helpers``, like ``sinks``)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def router_command() -> list[str]:
    """The installed ``router`` console script beside this interpreter."""
    script = Path(sys.executable).parent / ("router.exe" if os.name == "nt" else "router")
    if script.is_file():
        return [str(script)]
    found = shutil.which("router")
    return [found] if found else [sys.executable, "-m", "router.cli"]


def write_rules(path: Path, text: str) -> Path:
    """Write a rule file the router accepts: private directory, file 0600.

    The router refuses rule files and directories that other users can
    write, so a permissive umask must not decide a test's outcome.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path
