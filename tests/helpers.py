"""Small helpers the test modules share (imported as ``helpers``, like ``sinks``)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable


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


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``condition`` until it is truthy and return its value; fail
    saying ``what`` was awaited after ``timeout`` seconds. For conditions
    nothing notifies about (a log line, a database row, a file's state)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
