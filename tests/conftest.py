"""Fixtures shared by the tests: real local sinks that Apprise can deliver to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
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
