"""A real PostgreSQL server for the tests: Debian's ``postgresql`` package,
a cluster in a temporary directory on a free loopback port, started once per
test session; each test gets a database of its own.

PostgreSQL refuses to run as root, and CI runs as root: then the cluster is
the ``postgres`` user's (``runuser``). Without a server binary the tests
that need one are skipped, saying why, unless ROUTER_REQUIRE_POSTGRES is
set (CI sets it: there a skip is a failure).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from sinks import free_port

REASON = "needs a PostgreSQL server (Debian: apt-get install postgresql)"


def server_bin() -> Optional[Path]:
    """The directory of initdb and pg_ctl (the newest version installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Server:
    """One cluster: ``start``, ``url(database)``, ``new_database()``, ``stop``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="router-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self._names = itertools.count(1)

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> Server:
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
            "-o", options, "-w", "start",
        )  # fmt: skip
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (self.data / "postmaster.pid").exists():
            time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)
