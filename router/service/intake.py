"""What the intake servers (the local socket, HTTP) need from their owner.

The servers receive and answer; what an event turns into is their owner's
business (``router.service.Service``). They see it only through this small
protocol, so they import nothing of the service, and a test can hand them
an owner of its own.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional, Protocol, TypeVar

from router.dispatch import Outcome
from router.service.requests import EventRequest
from router.status import Status
from router.store import Store

T = TypeVar("T")


class IntakeOwner(Protocol):
    """Where an intake server hands what it received."""

    #: Set once a stop is asked for: a handler still performing its steps
    #: is then waited for only a little longer.
    stopping: threading.Event

    def ingest(self, request: EventRequest, *, origin: str) -> Outcome:
        """Evaluate, render and journal one event; ``origin`` says which way
        it came in (``service``: the local socket, ``http``: then the
        outcome's ``steps_token`` is the one its steps are reported with)."""
        ...

    def record_steps(
        self, event_id: int, results: list[dict[str, Any]], steps_token: Optional[str] = None
    ) -> str:
        """Store what the event's local steps did: ``router.store.STEPS_RECORDED``,
        or why nothing was stored."""
        ...

    def health(self) -> dict[str, Any]:
        """``GET /healthz``'s body; its ``ok`` picks the status code."""
        ...

    def metrics_text(self) -> str:
        """``GET /metrics``: the Prometheus exposition text."""
        ...

    #: How Retrospect's dates read (a silence's ``until``).
    date_order: str

    def use_store(self, work: Callable[[Store], T]) -> T:
        """``work(store)``, beside the events (``/silences``, the status page)."""
        ...

    def backup_status(self) -> Status:
        """Every backup at a glance (the status page, ``/api/status``)."""
        ...


def serve_in_thread(server: Any, name: str) -> threading.Thread:
    """Run a socketserver's loop in a daemon thread (stopped with its
    ``shutdown``; the poll interval is how long that may take)."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=name, daemon=True
    )
    thread.start()
    return thread
