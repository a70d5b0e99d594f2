"""Small helpers the test modules share (imported as ``helpers``, like ``sinks``)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import pytest

#: The ``host`` of the events this machine's handler receives (in identities and keys).
HOST = socket.gethostname()

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: The project's own documentation (docs/*.md): its examples are tests.
DOCS = REPO / "docs"


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


def queue_rows(
    store: Any,
    urls: list[str],
    *,
    identity: str = "Daily",
    status: str = "failure",
    title: Optional[str] = None,
    body: Optional[str] = None,
    now: Optional[float] = None,
) -> list[int]:
    """Journal an EndScript event about ``identity`` with one outbox row per
    URL (queued at ``now``); the rows' ids. The notification's title and
    body are the identity and the status unless given."""
    from datetime import datetime

    from router.store import JournalEntry, OutboxItem
    from router.urls import mask_url

    entry = JournalEntry(
        received=datetime.now() if now is None else datetime.fromtimestamp(now),
        name="EndScript",
        identity=identity,
        status=status,
        streak=1,
        host="backup-1",
        fields={},
        args=[],
    )
    title = identity if title is None else title
    body = status if body is None else body
    items = [
        OutboxItem("rule", "ops", url, mask_url(url), title, body, "failure", "text")
        for url in urls
    ]
    return store.record(entry, items, now=now)[1]


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown page."""

    page: str
    #: The line of the block's first line of text (after the opening fence).
    line: int
    #: The info string after the fence, split: ``rules invalid`` is ("rules", "invalid").
    info: tuple[str, ...]
    text: str

    @property
    def lang(self) -> str:
        return self.info[0] if self.info else ""

    @property
    def name(self) -> str:
        """``page:line``, as a test id and in failure messages."""
        return f"{self.page}:{self.line}"


def code_blocks(markdown: str, page: str = "<markdown>") -> list[Block]:
    """Every fenced (```) code block of ``markdown``, in order. The one
    extraction the doc tests use, so that what is tested is what a reader
    sees: a block's text is exactly the lines between its fences."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        opening = lines[index].strip()
        if not opening.startswith("```"):
            index += 1
            continue
        info = tuple(opening[3:].split())
        # A block in a list item is indented as the item is: not its text.
        indent = len(lines[index]) - len(lines[index].lstrip(" "))
        start, body = index + 1, []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            line = lines[index]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))) :])
            index += 1
        blocks.append(Block(page, start + 1, info, "\n".join(body) + "\n"))
        index += 1
    return blocks


def doc_blocks(page: str, lang: Optional[str] = None) -> list[Block]:
    """The code blocks of ``docs/PAGE`` (those of one language when given)."""
    blocks = code_blocks((DOCS / page).read_text(encoding="utf-8"), page)
    return [b for b in blocks if lang is None or b.lang == lang]


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
connect_timeout = 1
read_timeout = 2
deadline = 5
"""

Arg = Union[str, bytes, Path]


def _installed(name: str, fallback: list[str]) -> list[str]:
    script = BIN / name
    return [str(script)] if script.is_file() else fallback


#: The executable Retrospect runs: the console script the package installs.
HANDLER = _installed("retroeventhandler", [sys.executable, str(REPO / "retroeventhandler")])
ROUTER = router_command()


@dataclass
class Run:
    """One finished process."""

    args: list[Arg]
    code: int
    out: str
    err: str
    seconds: float


def run_process(command: list[Arg], *, cwd: Path, env: dict[str, str], timeout: float = 60) -> Run:
    started = time.monotonic()
    proc = subprocess.run(
        [os.fsencode(a) if isinstance(a, Path) else a for a in command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )
    return Run(
        command,
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
        time.monotonic() - started,
    )


class Site:
    """One router installation in a temporary directory.

    ``router.toml`` (found through ``ROUTER_CONFIG``), a private rules
    directory, its own state directory, an empty working directory and an
    empty home, and Retrospect's directory for intervention files. Every
    output of every command is kept in ``outputs`` for the secret check.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rules = root / "rules"
        self.state = root / "state"
        self.cwd = root / "somewhere-else"
        self.home = root / "home"
        self.retrospect = root / "retrospect"
        for directory in (self.rules, self.cwd, self.home, self.retrospect):
            directory.mkdir(mode=0o700)
        self.config = root / "router.toml"
        self.config.write_text(
            f'rules_dir = "{self.rules}"\nstate_dir = "{self.state}"\n' + DELIVERY,
            encoding="utf-8",
        )
        self.env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "ROUTER_CONFIG": str(self.config),
        }
        self.outputs: list[str] = []
        self._files = 0

    def write_rules(self, text: str, name: str = "site.rules") -> Path:
        path = self.rules / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        path.chmod(0o600)
        return path

    def intervention_file(self, event: str) -> Path:
        """A fresh, empty file, as Retrospect creates one for each event that has one."""
        self._files += 1
        path = self.retrospect / f"retro-{self._files:02d}-{event}.txt"
        path.write_bytes(b"")
        return path

    def handler(self, *args: Arg, env: Optional[dict[str, str]] = None) -> Run:
        result = run_process(
            [*HANDLER, *args], cwd=self.cwd, env={**self.env, **(env or {})}, timeout=60
        )
        self.outputs += [result.out, result.err]
        return result

    def router(self, *args: str) -> Run:
        result = run_process([*ROUTER, *args], cwd=self.cwd, env=self.env, timeout=120)
        self.outputs += [result.out, result.err]
        return result

    def history(self) -> list[dict[str, Any]]:
        """The journal, oldest first, as ``router history --format json`` prints it."""
        result = self.router("history", "--format", "json", "--limit", "1000")
        assert (result.code, result.err) == (0, ""), result
        return list(reversed(json.loads(result.out)))

    def outbox_lines(self) -> list[str]:
        result = self.router("outbox", "--limit", "1000")
        assert (result.code, result.err) == (0, ""), result
        return [line for line in result.out.splitlines() if line.startswith("#")]


def write_program(path: Path, body: str) -> Path:
    """An executable Python program (this interpreter, so it runs in the bare environment)."""
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body), encoding="utf-8")
    path.chmod(0o700)
    return path


# ---------------------------------------------------------------------------
# Hostile machines: other users' files, read-only and full file systems
# ---------------------------------------------------------------------------

#: The user that owns what "another user" planted (nobody, on Debian and macOS).
OTHER_UID = 65534


def give_to_other_user(*paths: Path) -> None:
    """Make ``paths`` another user's, as an attacker's planted files would be
    (needs root: the tests that use it are skipped otherwise)."""
    for path in paths:
        os.chown(path, OTHER_UID, OTHER_UID, follow_symlinks=False)


NEEDS_ROOT = pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0,
    reason="making files another user's needs root (CI runs as root)",
)


def _namespaces_work() -> bool:
    if os.name != "posix" or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-r", "-m", "true"], capture_output=True)
    return probe.returncode == 0


NEEDS_NAMESPACES = pytest.mark.skipif(
    not _namespaces_work(), reason="needs `unshare -r -m` (user and mount namespaces)"
)


def in_mount_namespace(
    command: list[Any], *, read_only: Optional[Path] = None, full: Optional[Path] = None
) -> list[str]:
    """``command`` run in a private mount namespace where ``read_only`` is a
    read-only file system and ``full`` a file system with no space left: real
    EROFS and ENOSPC for the router, even as root, and nothing outside the
    namespace changes."""
    script = ["set -e"]
    if read_only is not None:
        script.append(f'mount --bind "{read_only}" "{read_only}"')
        script.append(f'mount -o remount,bind,ro "{read_only}"')
    if full is not None:
        script.append(f'mount -t tmpfs -o size=64k,mode=0700 tmpfs "{full}"')
        script.append(f'dd if=/dev/zero of="{full}/filler" bs=4k 2>/dev/null || true')
    script.append('exec "$@"')
    return ["unshare", "-r", "-m", "sh", "-c", "\n".join(script), "sh", *map(str, command)]


# ---------------------------------------------------------------------------
# router serve in a directory of its own
# ---------------------------------------------------------------------------

#: Short timeouts and backoff, so the service tests see retries quickly.
SERVICE_DELIVERY = """
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
            f'rules_dir = "rules"\nstate_dir = "state"\n{settings}\n{SERVICE_DELIVERY}',
            encoding="utf-8",
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


def toml_keys(text: str) -> set[tuple[str, str]]:
    """(section, key) of every key a router.toml text sets, commented-out
    keys included (``# name = value``): what a documented file covers."""
    import re

    found: set[tuple[str, str]] = set()
    section = ""
    for line in text.splitlines():
        header = re.match(r"\s*#?\s*\[(\w+)\]", line)
        if header:
            section = header.group(1)
            continue
        key = re.match(r"\s*#?\s*(\w+)\s*=", line)
        if key:
            found.add((section, key.group(1)))
    return found


def every_config_key() -> set[tuple[str, str]]:
    from router.config import KEYS

    return {(key.section, key.name) for key in KEYS}
