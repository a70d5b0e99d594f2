"""The timer loop: expect windows, digests, the journal's retention and the
replicas' heartbeats, every second.

``router.timers.tick`` keeps its windows in the store, never in memory, so
this loop holds nothing a restart could lose: it only says when to look.
Without a service, each handler looks after its event instead.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Optional

from router import timers
from router.config import RUN_TIMEOUT
from router.engine import Ruleset
from router.store import Store

#: The service's log lines keep the name they have always had.
log = logging.getLogger("router.service")

#: How often timers run.
TIMER_TICK = 1.0


class TimerLoop:
    """Ticks the timers until ``stopping`` is set; ``start``, then ``join``.

    ``ruleset()`` is asked at every tick (a reload swaps it);
    ``on_queued()`` is called when a tick queued outbox rows.
    """

    def __init__(
        self,
        store: Store,
        ruleset: Callable[[], Ruleset],
        *,
        event_log: Optional[Path],
        retention: float,
        run_timeout: float = RUN_TIMEOUT,
        on_queued: Callable[[], None],
        stopping: threading.Event,
        interval: float = TIMER_TICK,
    ) -> None:
        self.store = store
        self.ruleset = ruleset
        self.event_log = event_log
        self.retention = retention
        self.run_timeout = run_timeout
        self.on_queued = on_queued
        self.stopping = stopping
        self.interval = interval
        #: The last error logged: a timer that keeps failing says so once,
        #: not every second.
        self._last_error: Optional[str] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="router-timers")
        self._thread.start()

    def join(self) -> None:
        """Wait for the loop to end (``stopping`` must be set)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def tick(self) -> timers.TickReport:
        """Fire what is due, apply the retention; its errors logged once each."""
        report = timers.tick(
            self.ruleset(), self.store, event_log=self.event_log, run_timeout=self.run_timeout
        )
        if report.outbox_ids:
            self.on_queued()
        for error in report.errors:
            if error != self._last_error:
                log.error("timers: %s", error)
            self._last_error = error
        self.store.apply_retention(self.retention)
        # Replicas: say this one is alive, and take back the claims of one that is not.
        self.store.outbox.heartbeat()
        if self.store.outbox.release_abandoned_claims():
            self.on_queued()
        return report

    def _run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.tick()
            except Exception as exc:
                if repr(exc) != self._last_error:
                    log.exception("timers failed")
                self._last_error = repr(exc)
