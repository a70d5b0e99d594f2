"""Fixtures shared by the tests: real local sinks that Apprise can deliver to,
and ``router serve`` in a directory of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest
from helpers import Router
from sinks import HttpSink, SmtpSink


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
