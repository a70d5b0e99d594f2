"""The delivery scheduler: which outbox rows go out when, and on which worker.

A dispatcher thread wakes when an event queues rows (``wake``), when a send
ends, at the next due time, or every ``POLL`` seconds (handlers that fell
back to the inline path queue rows the service hears nothing about), and
hands due rows to a pool of ``[delivery] concurrency`` workers, at most
``per_url`` of them sending to one URL, so one dead or slow target never
delays another and a burst never floods one. Which rows of a URL may go
side by side is ``router.delivery.sendable``'s rule (one backup's
notifications in order). A failing URL is held back with the same
exponential backoff as its rows; rows that die (past ``max_age``) are dead
letters, reported to the admin target.

Rows being sent are leased in the store (``router.delivery.drain``): after
a kill -9 they come due again when the lease runs out.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Callable, Optional

from router.config import Delivery
from router.delivery import drain, sendable
from router.dispatch import ADMIN_RULE
from router.service.metrics import Metrics
from router.store import DueRow, Store

#: The service's log lines keep the name they have always had.
log = logging.getLogger("router.service")

#: At the latest, look at the outbox this often: handlers that fell back to
#: the inline path queue rows the service hears nothing about.
POLL = 2.0
#: Due rows of one URL the dispatcher looks at each time.
BATCH = 50


class DeliveryScheduler:
    """Sends the outbox's due rows; ``start``, then ``stop`` once.

    ``report_to_admin(title, body)`` is told about every dead letter.
    """

    def __init__(
        self,
        store: Store,
        policy: Delivery,
        metrics: Metrics,
        report_to_admin: Callable[[str, str], None],
    ) -> None:
        self.store = store
        self.policy = policy
        self.metrics = metrics
        self.report_to_admin = report_to_admin
        # The dispatcher waits on _cond; _wake says "look again".
        self._cond = threading.Condition()
        self._wake = False
        self._stop = False
        #: The rows being sent now, by URL.
        self._busy: dict[str, list[DueRow]] = {}
        #: URL -> the time before which it is not tried (its failed row's next attempt).
        self._held: dict[str, float] = {}
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="router-delivery")
        self._thread.start()

    def wake(self) -> None:
        """Rows were queued: look at the outbox now."""
        with self._cond:
            self._wake = True
            self._cond.notify_all()

    def stop(self) -> None:
        """Start no new send; wait for the sends in flight (bounded by their timeouts)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def held_until(self, url: str) -> Optional[float]:
        """When a failing ``url`` may be tried again; None if it is not held."""
        with self._cond:
            return self._held.get(url)

    # ------------------------------------------------------------------
    # The dispatcher
    # ------------------------------------------------------------------

    def _run(self) -> None:
        pool = ThreadPoolExecutor(
            max_workers=self.policy.concurrency, thread_name_prefix="router-send"
        )
        try:
            while True:
                with self._cond:
                    if self._stop:
                        break
                    self._wake = False
                try:
                    self._dispatch(pool)
                    wait = self._next_wait()
                except Exception:
                    log.exception("delivery: reading the outbox failed")
                    wait = POLL
                with self._cond:
                    if not self._wake and not self._stop:
                        self._cond.wait(wait)
        finally:
            pool.shutdown(wait=True)  # the sends in flight finish

    def _dispatch(self, pool: ThreadPoolExecutor) -> None:
        """Hand due rows to workers, within the bounds (all, per URL).

        URLs first, then each chosen URL's rows: a long backlog for one
        (held back, failing) URL must not hide the rows of the others.
        """
        now = time.time()
        for url, url_masked in self.store.outbox.due_urls(now):
            with self._cond:
                free = self.policy.concurrency - self._in_flight()
                if free <= 0:
                    return
                going = list(self._busy.get(url, ()))
                slots = min(free, self.policy.per_url - len(going))
                if slots <= 0 or self._held.get(url, 0.0) > now:
                    continue
            rows = sendable(self.store.outbox.due_rows(url, now, BATCH), going, slots)
            for index, row in enumerate(rows):
                with self._cond:
                    self._busy.setdefault(url, []).append(row)
                try:
                    pool.submit(self._deliver_row, url, url_masked, row)
                except BaseException:
                    with self._cond:  # not handed over: free them for the next look
                        for undone in rows[index:]:
                            self._finished(url, undone)
                    raise

    def _in_flight(self) -> int:
        return sum(len(rows) for rows in self._busy.values())

    def _finished(self, url: str, row: DueRow) -> None:
        """``row`` is no longer being sent (the caller holds ``_cond``)."""
        rows = self._busy.get(url, [])
        if row in rows:
            rows.remove(row)
        if not rows:
            self._busy.pop(url, None)

    def _next_wait(self) -> float:
        """Seconds until a row of a URL with a free slot comes due (at most POLL)."""
        now = time.time()
        rows = self.store.outbox.next_due_by_url()
        with self._cond:
            if self._in_flight() >= self.policy.concurrency:
                return POLL  # a worker that finishes wakes the dispatcher
            due = [
                max(float(at), self._held.get(url, 0.0))
                for url, at in rows
                if len(self._busy.get(url, ())) < self.policy.per_url
            ]
        if not due:
            return POLL
        return min(max(min(due) - now, 0.005), POLL)

    # ------------------------------------------------------------------
    # A worker
    # ------------------------------------------------------------------

    def _deliver_row(self, url: str, url_masked: str, due: DueRow) -> None:
        """Send one row (its own claim). A failure holds the URL back
        (backoff per URL as well as per row): the rows behind a failing one
        would only fail too."""
        try:
            with self._cond:
                if self._stop:
                    return
            report = drain(self.store, self.policy, ids=[due.id], limit=1)
            self.metrics.count_delivery(url_masked, report)
            for dead in report.dead:
                self._dead_letter(dead)
            if report.sent:
                with self._cond:
                    self._held.pop(url, None)
            elif report.failed:
                # The URL waits as long as that row's own backoff says.
                row = self.store.outbox.row(due.id)
                until = row.next_attempt if row is not None else time.time()
                with self._cond:
                    self._held[url] = max(until, self._held.get(url, 0.0))
                log.warning(
                    "delivery to %s failed (%s); trying it again in %.0f s, at %s",
                    url_masked,
                    report.errors.get(due.id, "failed"),
                    max(until - time.time(), 0.0),
                    datetime.fromtimestamp(until).strftime("%H:%M:%S"),
                )
        except Exception:
            log.exception("delivery to %s failed unexpectedly", url_masked)
        finally:
            with self._cond:
                self._finished(url, due)
                self._wake = True
                self._cond.notify_all()

    def _dead_letter(self, row_id: int) -> None:
        row = self.store.outbox.row(row_id)
        if row is None:
            return
        if row.rule == ADMIN_RULE:  # never report a report: that could loop forever
            log.error(
                "a report to the admin target (%s) is a dead letter: %s",
                row.url_masked,
                row.last_error,
            )
            return
        self.report_to_admin(
            f"retro-router: a notification to {row.target} could not be delivered",
            f"Outbox row #{row_id} (event #{row.event_id}, rule {row.rule}) to {row.url_masked}"
            f" failed {row.attempts} times and is kept as a dead letter.\n"
            f"Title: {row.title}\nLast error: {row.last_error}\n"
            f"Retry it with: router outbox retry {row_id}",
        )
