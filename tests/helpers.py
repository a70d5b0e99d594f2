"""Small helpers the test modules share (imported as ``helpers``, like ``sinks``)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parent.parent
_BIN = Path(sys.executable).parent
#: The handler as Retrospect runs it: the installed script, else the checkout's.
HANDLER = (
    [str(_BIN / "retroeventhandler")]
    if (_BIN / "retroeventhandler").is_file()
    else [sys.executable, str(REPO / "retroeventhandler")]
)


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


DELIVERY = """
[delivery]
connect_timeout = 0.5
read_timeout = 1
first_delay = 0.3
max_delay = 1
"""


class Router:
    """A ``router serve`` in its own directory, and handlers that talk to it."""

    def __init__(self, root: Path, rules: str, settings: str = "", env: Optional[dict] = None):
        self.root = root
        self.state = root / "state"
        self.config = root / "router.toml"
        write_rules(root / "rules" / "test.rules", rules)
        self.config.write_text(
            f'rules_dir = "rules"\nstate_dir = "state"\n{settings}\n{DELIVERY}', encoding="utf-8"
        )
        self.env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(root),
            "ROUTER_CONFIG": str(self.config),
            **(env or {}),
        }
        self.process: Optional[subprocess.Popen] = None
        self.starts = 0

    # -- the service

    @property
    def log_path(self) -> Path:
        return self.root / f"serve-{self.starts}.log"

    def log(self) -> str:
        return "".join(
            (self.root / f"serve-{n}.log").read_text(encoding="utf-8", errors="replace")
            for n in range(1, self.starts + 1)
        )

    def start(self, *extra: str, wait: bool = True) -> Router:
        self.starts += 1
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                [*router_command(), "serve", *extra],
                cwd=self.root,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if wait:
            log_path = self.log_path
            wait_until(
                lambda: "ready:" in log_path.read_text(errors="replace") or self.exited(),
                "the service to start",
                timeout=30,
            )
            assert not self.exited(), self.log()
        return self

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def stop(self, how: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(how)
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    # -- handlers and the journal

    def handler(self, *args: str, python_options: tuple = ()) -> subprocess.CompletedProcess:
        command = [sys.executable, *python_options, HANDLER[-1]] if python_options else HANDLER
        return subprocess.run(
            [*command, *args],
            cwd="/",
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(str(self.state / "router.sqlite3"), timeout=10)

    def journal(self) -> list[dict[str, Any]]:
        with self.db() as db:
            rows = db.execute(
                "SELECT id, name, origin, uid, args, steps, errors FROM events ORDER BY id"
            ).fetchall()
        keys = ("id", "name", "origin", "uid", "args", "steps", "errors")
        entries = [dict(zip(keys, row)) for row in rows]
        for entry in entries:
            for key in ("args", "steps", "errors"):
                entry[key] = json.loads(entry[key])
        return entries

    def outbox(self) -> list[tuple]:
        with self.db() as db:
            return db.execute(
                "SELECT id, state, attempts, title, rule, target FROM outbox ORDER BY id"
            ).fetchall()


def call(port: int, method: str, path: str, body: Any = None, headers: Optional[dict] = None):
    """One request to 127.0.0.1:port; returns (status, parsed JSON or text)."""
    status, _, parsed = request(port, method, path, body, headers)
    return status, parsed


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: Optional[dict] = None,
    source: str = "127.0.0.1",
) -> tuple[int, Any, Any]:
    """``call`` from the loopback address ``source`` (the service bounds
    each client address); returns (status, headers, parsed JSON or text)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=(source, 0)
    )
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    connection.request(method, path, body=data, headers=headers or {})
    response = connection.getresponse()
    raw = response.read().decode("utf-8")
    connection.close()
    try:
        return response.status, response.headers, json.loads(raw)
    except ValueError:
        return response.status, response.headers, raw
