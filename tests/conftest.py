"""Fixtures shared by the tests: the machine kept out of every test, real
local sinks that Apprise can deliver to, and ``router serve`` in a directory
of its own."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from helpers import Router
from sinks import HttpSink, SmtpSink

#: Settings a developer's or a CI machine may have that must never reach a test.
MACHINE_VARIABLES = (
    "ROUTER_STATE_DIR",
    "ROUTER_RULES_DIR",
    "ROUTER_STATE_URL",
    "ROUTER_TOKEN",
    "ROUTER_FORWARD_TOKEN",
)
#: What every router process started by a test gets unless the test says
#: otherwise: its own (empty) router.toml, home and data directories.
ISOLATING = ("ROUTER_CONFIG", "HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "config_discovery: the test finds router.toml itself (beside the executable),"
        " so its processes are not handed the session's ROUTER_CONFIG",
    )


@pytest.fixture(scope="session", autouse=True)
def machine_kept_out(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No test reads the machine's router.toml (beside the checkout, in
    /etc/retro-router) or writes its state (the user's data directory): the
    whole session runs with its own empty router.toml, home and data
    directories, in this process and in every process it starts."""
    root = tmp_path_factory.mktemp("machine")
    config = root / "router.toml"
    config.write_text("# the test session's own (empty) configuration\n", encoding="utf-8")
    config.chmod(0o600)
    values = {
        "ROUTER_CONFIG": str(config),
        "HOME": str(root / "home"),
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_CONFIG_HOME": str(root / "config"),
    }
    for name in ("home", "data", "config"):
        (root / name).mkdir(mode=0o700)
    saved = {name: os.environ.get(name) for name in (*ISOLATING, *MACHINE_VARIABLES)}
    for name in MACHINE_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield root
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(autouse=True)
def processes_kept_out(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process started with an environment of its own (``env=``) that does
    not name a router.toml, home or data directory gets the session's, so a
    bare environment (as Retrospect gives) never falls back on the machine's."""
    discovery = request.node.get_closest_marker("config_discovery") is not None
    original = subprocess.Popen.__init__

    def isolated_init(self: subprocess.Popen, *args: object, **kwargs: object) -> None:
        env = kwargs.get("env")
        if isinstance(env, dict):
            env = dict(env)
            if not discovery:
                env.setdefault("ROUTER_CONFIG", os.environ["ROUTER_CONFIG"])
            if "HOME" not in env:  # a test that gives its own home means its data there
                for name in ISOLATING[1:]:
                    env.setdefault(name, os.environ[name])
            kwargs["env"] = env
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(subprocess.Popen, "__init__", isolated_init)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A private (0700) state directory, as the router requires."""
    directory = tmp_path / "state"
    directory.mkdir(mode=0o700)
    directory.chmod(0o700)  # whatever the umask
    return directory


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    """An HTTP server on 127.0.0.1 (a free port) that records every request."""
    with HttpSink() as sink:
        yield sink


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """An SMTP server on 127.0.0.1 that accepts any login and records every message."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def router_at(tmp_path: Path):
    """Make ``Router``s under tmp_path (each its own service and directories);
    whatever still runs at the end is killed."""
    made: list[Router] = []

    def make(rules: str, settings: str = "", env: Optional[dict] = None, name: str = "r"):
        router = Router(tmp_path / name, rules, settings, env)
        made.append(router)
        return router

    yield make
    for router in made:
        router.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A real PostgreSQL server for the session (tests/postgres_server.py)."""
    from postgres_server import REASON, Server, server_bin

    bin_dir = server_bin()
    if bin_dir is None:
        if os.environ.get("ROUTER_REQUIRE_POSTGRES"):
            pytest.fail(f"ROUTER_REQUIRE_POSTGRES is set, but: {REASON}")
        pytest.skip(REASON)
    server = Server(bin_dir).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: Any) -> str:
    """The URL of a fresh database of the session's PostgreSQL server."""
    return postgres_server.new_database()
