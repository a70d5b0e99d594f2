"""``router serve``: the long-running service (docs/design.md).

One process that keeps the ruleset loaded and does for every event what the
inline handler does, with the same library code: evaluate -> render ->
journal + outbox (``router.dispatch.process``). Handlers reach it on the
local socket and perform only the local steps it sends back; remote engines
and clients post events over HTTP (``router.service.http``).

Threads, each with its own SQLite connection (a connection is never used by
two threads at once):

- ingest: the socket and HTTP servers' connection threads; evaluation and
  journaling happen one event at a time under a lock, on one connection;
- rules: ``router.watch.RulesWatcher`` swaps in good rule edits, reports
  broken ones to the ``admin`` target;
- delivery: a dispatcher wakes when an event queues rows (or at the next
  due time, or every ``POLL`` seconds for rows other processes queued) and
  hands each destination URL to a worker of a pool of
  ``[delivery] concurrency``; a URL's rows go one after another, so one
  dead or slow target never delays another. A failing URL is held back
  with the same exponential backoff as its rows; rows that die (past
  ``max_age``) are dead letters, reported to ``admin``;
- timers: ``router.timers.tick`` about every second (expect windows,
  digests) and the journal's retention.

SIGTERM or SIGINT: stop accepting (the socket file goes first, so new
handlers take the inline path at once), finish the events in progress, let
the sends in flight finish (bounded by their timeouts), exit 0. After a
kill -9 nothing is lost: events were journaled with their outbox rows
before they were answered; rows being sent at the kill are leased, and come
due again when the lease runs out (so only those can arrive twice).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

from router import timers
from router.config import Config, ConfigError
from router.delivery import drain
from router.dispatch import (
    ADMIN_RULE,
    BROKEN_RULES_TITLE,
    Outcome,
    admin_report,
    mask_results,
    process,
    report_broken_rules,
)
from router.events import event_from_argv
from router.loader import use_caches
from router.service.client_limits import ClientLimits
from router.service.http import HttpServer
from router.service.local_socket import LocalServer
from router.service.metrics import Metrics
from router.service.requests import EventRequest
from router.store import Store, open_store
from router.store import ensure_private_dir as _ensure_private_dir
from router.watch import RulesWatcher

log = logging.getLogger("router.service")

#: At the latest, look at the outbox this often: handlers that fell back to
#: the inline path queue rows the service hears nothing about.
POLL = 2.0
#: Rows one worker takes for one URL before the dispatcher looks again.
BATCH = 20
#: How often timers run.
TIMER_TICK = 1.0


class Service:
    """The service's state and threads; ``start``, then ``stop`` once."""

    def __init__(self, config: Config, *, listen: Optional[str] = None, poll: bool = False):
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.policy = config.delivery
        self.admin = list(config.admin)
        self.poll = poll
        listen = listen or config.listen
        limits = ClientLimits(rate=config.rate_limit, max_per_client=config.max_client_connections)
        local_mode = config.local_socket
        token, require_token = config.token, config.require_token
        self.local = LocalServer(self, self.state_dir, local_mode)
        self.http = HttpServer(self, listen, token, require_token, limits) if listen else None

        #: Set when a stop is asked for (a signal); the servers watch it.
        self.stopping = threading.Event()
        self.rules: Any = None
        self.started = time.time()
        self._ingest_lock = threading.Lock()
        #: The state (each thread gets its own connection), open from start to stop.
        self.store: Optional[Store] = None
        self._threads: list[threading.Thread] = []

        # Delivery: the dispatcher waits on _cond; _wake says "look again".
        self._cond = threading.Condition()
        self._wake = False
        self._delivery_stop = False
        self._busy: set[str] = set()
        #: URL -> the time before which it is not tried (its failed row's next attempt).
        self._held: dict[str, float] = {}

        # Metrics (Prometheus counters since start), under _metrics_lock.
        self._metrics = Metrics()
        self._metrics_lock = threading.Lock()

    # ------------------------------------------------------------------
    # Lifecycle
    # ------------------------------------------------------------------

    def start(self) -> None:
        _ensure_private_dir(self.state_dir)
        use_caches(self.state_dir)
        self.store = open_store(self.config)
        self._metrics.seen_id = self._store().journal.last_id()
        freed = self._store().outbox.release_abandoned_claims()
        if freed:
            log.info("took back %d outbox row(s) claimed by a deliverer that is gone", freed)
        self.rules = self._load_rules()
        if not self.rules.last_reload_ok:
            self._report_broken_rules(self.rules.last_errors)
        self.local.start()
        if self.http is not None:
            self.http.start()
        self._spawn(self._warm_up, "router-warm-up", daemon=True)
        self._spawn(self._delivery_loop, "router-delivery")
        self._spawn(self._timer_loop, "router-timers")
        self.rules.start()
        where = self.local.describe()
        if self.http is not None:
            where += ", " + self.http.describe()
        log.info(
            "ready: %d rules from %s; %s",
            self.rules.ruleset.size,
            self.config.rules_dir,
            where,
        )

    def _load_rules(self) -> Any:
        return RulesWatcher(
            self.config.rules_dir,
            self.state_dir,
            self.config.date_order,
            on_swap=lambda ruleset: None,
            on_error=self._on_reload_error,
            poll=self.poll,
        )

    def request_stop(self) -> None:
        self.stopping.set()

    def stop(self) -> None:
        """Stop accepting, finish what is in progress, release everything."""
        self.stopping.set()
        log.info("stopping: no new events; finishing the events and sends in progress")
        for server in (self.local, self.http):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop_accepting()
        if self.rules is not None:
            with contextlib.suppress(Exception):
                self.rules.stop()
        for server in (self.local, self.http):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.close()
        with self._cond:
            self._delivery_stop = True
            self._cond.notify_all()
        for thread in self._threads:
            if not thread.daemon:
                thread.join()
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.close()
        log.info("stopped")

    def _spawn(self, target: Callable[[], None], name: str, daemon: bool = False) -> None:
        thread = threading.Thread(target=target, name=name, daemon=daemon)
        thread.start()
        self._threads.append(thread)

    def _store(self) -> Store:
        assert self.store is not None, "the service is not started"
        return self.store

    def _warm_up(self) -> None:
        """Import what the first event and the first send need, before they come."""
        try:
            import apprise  # noqa: F401

            import router.templates  # noqa: F401
        except Exception:  # only ever saves time
            pass

    # ------------------------------------------------------------------
    # Events
    # ------------------------------------------------------------------

    def ingest(self, request: EventRequest, *, origin: str) -> Outcome:
        """Evaluate, render and journal one event (with its outbox rows).

        One at a time: throttles and ``previous`` read what the event
        before wrote. The delivery dispatcher is woken for the new rows.
        """
        event = event_from_argv(
            request.argv,
            date_order=self.config.date_order,
            host=request.host,
            received=request.received,
        )
        rules = self.rules
        problems = []
        if not rules.last_reload_ok:
            problems.append(
                "the rules have errors; the last good ruleset stays in force: "
                + "; ".join(rules.last_errors)
            )
        with self._ingest_lock:
            outcome = process(
                event,
                rules.ruleset,
                self._store(),
                extra_errors=problems,
                origin=origin,
                uid=request.uid,
                run_env=self.config.run_env,
            )
        if outcome.outbox_ids:
            self.wake_delivery()
        return outcome

    def issue_steps_token(self, event_id: int) -> Optional[str]:
        """A one-time token for reporting the steps of an event received over
        HTTP (the store keeps only its hash); None if its steps cannot be
        reported any more (reported already, or not received over HTTP)."""
        token = secrets.token_urlsafe(24)
        with self._ingest_lock:
            return token if self._store().journal.set_steps_token(event_id, token) else None

    def record_steps(
        self, event_id: int, results: list[dict[str, Any]], steps_token: Optional[str] = None
    ) -> str:
        """Store what the local steps did, once (``Store.record_steps``), their
        output masked: ``router.store.STEPS_RECORDED``, or why nothing was stored."""
        results = mask_results(results, ruleset=self.rules.ruleset, extra=self.admin)
        with self._ingest_lock:
            return self._store().journal.record_steps(event_id, results, steps_token)

    # ------------------------------------------------------------------
    # The admin target
    # ------------------------------------------------------------------

    def report_to_admin(self, title: str, body: str, kind: str = "failure") -> None:
        """Tell the ``admin`` target about the router's own trouble
        (``dispatch.admin_report``); it is logged whether or not one is set."""
        log.error("%s\n%s", title, body)
        self._queue_report(
            lambda store: admin_report(store, self.admin, title, body, "service", kind)
        )

    def _report_broken_rules(self, errors: list[str]) -> None:
        """Broken rule files: logged, and reported to ``admin`` once per
        broken version, whoever notices first (this service or a handler)."""
        log.error("%s\n%s", BROKEN_RULES_TITLE, "\n".join(errors))
        fingerprint = str(getattr(self.rules, "fingerprint", ""))
        self._queue_report(
            lambda store: report_broken_rules(store, self.admin, fingerprint, errors, "service")
        )

    def _queue_report(self, report: Callable[[Store], Any]) -> None:
        if not self.admin:
            return
        try:
            with self._ingest_lock:
                queued = report(self._store())
        except Exception:
            log.exception("could not queue the report to the admin target")
            return
        if queued:
            with self._metrics_lock:
                self._metrics.admin_reports += 1
            self.wake_delivery()

    def reload_on_request(self) -> None:
        """SIGHUP: read the rules again now, and say what came of it (a good
        reload and a broken one say so themselves; "unchanged" is said here)."""
        if not self.rules.reload_now():
            if self.rules.last_reload_ok:
                log.info(
                    "reload asked for: the rule files are unchanged; %d rules in force",
                    self.rules.ruleset.size,
                )
            else:
                log.info("reload asked for: the rule files still have errors (above)")

    def _on_reload_error(self, errors: list[str]) -> None:
        self._report_broken_rules(errors)

    # ------------------------------------------------------------------
    # Delivery
    # ------------------------------------------------------------------

    def wake_delivery(self) -> None:
        with self._cond:
            self._wake = True
            self._cond.notify_all()

    def _delivery_loop(self) -> None:
        store = self._store()
        pool = ThreadPoolExecutor(
            max_workers=self.policy.concurrency, thread_name_prefix="router-send"
        )
        try:
            while True:
                with self._cond:
                    if self._delivery_stop:
                        break
                    self._wake = False
                try:
                    self._dispatch(store, pool)
                    wait = self._next_wait(store)
                except Exception:
                    log.exception("delivery: reading the outbox failed")
                    wait = POLL
                with self._cond:
                    if not self._wake and not self._delivery_stop:
                        self._cond.wait(wait)
        finally:
            pool.shutdown(wait=True)  # the sends in flight finish

    def _dispatch(self, store: Store, pool: ThreadPoolExecutor) -> None:
        """Hand the due rows of each idle URL to a worker.

        URLs first, then each chosen URL's rows: a long backlog for one
        (held back, failing) URL must not hide the rows of the others.
        """
        now = time.time()
        due = store.outbox.due_urls(now)
        with self._cond:
            chosen = []
            for url, url_masked in due:
                if len(self._busy) >= self.policy.concurrency:
                    break
                if url in self._busy or self._held.get(url, 0.0) > now:
                    continue
                self._busy.add(url)
                chosen.append((url, url_masked))
        for index, (url, url_masked) in enumerate(chosen):
            try:
                ids = store.outbox.due_ids(url, now, BATCH)
                pool.submit(self._deliver_url, url, url_masked, ids)
            except BaseException:
                with self._cond:  # not handed over: free them for the next look
                    self._busy.difference_update(u for u, _ in chosen[index:])
                raise

    def _next_wait(self, store: Store) -> float:
        """Seconds until a row of an idle URL comes due (at most POLL)."""
        now = time.time()
        rows = store.outbox.next_due_by_url()
        with self._cond:
            if len(self._busy) >= self.policy.concurrency:
                return POLL  # a worker that finishes wakes the dispatcher
            due = [
                max(float(at), self._held.get(url, 0.0))
                for url, at in rows
                if url not in self._busy
            ]
        if not due:
            return POLL
        return min(max(min(due) - now, 0.005), POLL)

    def _deliver_url(self, url: str, url_masked: str, ids: list[int]) -> None:
        """Send ``ids`` (all to ``url``) one after another, each its own claim.

        A failure holds the URL back (backoff per URL as well as per row):
        the rows behind a failing one would only fail too.
        """
        try:
            store = self._store()
            for row_id in ids:
                with self._cond:
                    if self._delivery_stop:
                        return
                report = drain(store, self.policy, ids=[row_id], limit=1)
                self._count(url_masked, report)
                for dead in report.dead:
                    self._dead_letter(store, dead)
                if report.sent:
                    with self._cond:
                        self._held.pop(url, None)
                elif report.failed:
                    # The rows behind a failing one would only fail too: the URL
                    # waits as long as that row's own backoff says.
                    row = store.outbox.row(row_id)
                    until = row.next_attempt if row is not None else time.time()
                    with self._cond:
                        self._held[url] = until
                    log.warning(
                        "delivery to %s failed (%s); trying it again in %.0f s, at %s",
                        url_masked,
                        report.errors.get(row_id, "failed"),
                        max(until - time.time(), 0.0),
                        datetime.fromtimestamp(until).strftime("%H:%M:%S"),
                    )
                    return
                # dead: past max_age; the next rows (as old?) are tried at once
        except Exception:
            log.exception("delivery to %s failed unexpectedly", url_masked)
        finally:
            with self._cond:
                self._busy.discard(url)
                self._wake = True
                self._cond.notify_all()

    def _count(self, url_masked: str, report: Any) -> None:
        with self._metrics_lock:
            for outcome, ids in (
                ("sent", report.sent),
                ("failed", report.failed),
                ("dead", report.dead),
            ):
                if ids:
                    self._metrics.count_sends(url_masked, outcome, len(ids))

    def _dead_letter(self, store: Store, row_id: int) -> None:
        row = store.outbox.row(row_id)
        if row is None:
            return
        rule, target, url_masked, attempts = row.rule, row.target, row.url_masked, row.attempts
        error, event_id, title = row.last_error, row.event_id, row.title
        if rule == ADMIN_RULE:  # never report a report: that could loop forever
            log.error("a report to the admin target (%s) is a dead letter: %s", url_masked, error)
            return
        self.report_to_admin(
            f"retro-router: a notification to {target} could not be delivered",
            f"Outbox row #{row_id} (event #{event_id}, rule {rule}) to {url_masked}"
            f" failed {attempts} times and is kept as a dead letter.\n"
            f"Title: {title}\nLast error: {error}\n"
            f"Retry it with: router outbox retry {row_id}",
        )

    # ------------------------------------------------------------------
    # Timers
    # ------------------------------------------------------------------

    def _timer_loop(self) -> None:
        store = self._store()
        last_error = None
        event_log = self.config.event_log
        while not self.stopping.wait(TIMER_TICK):
            try:
                report = timers.tick(self.rules.ruleset, store, event_log=event_log)
                if report.outbox_ids:
                    self.wake_delivery()
                for error in report.errors:
                    if error != last_error:
                        log.error("timers: %s", error)
                    last_error = error
                store.apply_retention(self.config.retention)
            except Exception as exc:
                if repr(exc) != last_error:  # once per distinct error, not every second
                    log.exception("timers failed")
                last_error = repr(exc)

    # ------------------------------------------------------------------
    # Health and metrics
    # ------------------------------------------------------------------

    def _rules_status(self) -> dict[str, Any]:
        rules = self.rules
        return {
            "ok": bool(rules.last_reload_ok),
            "rules": rules.ruleset.size,
            "reloads": int(rules.reloads),
            "last_reload": rules.last_reload_time,
            "errors": list(rules.last_errors),
        }

    def health(self) -> dict[str, Any]:
        """``/healthz``: ``status`` is ``ok``, or ``degraded`` with the
        ``problems`` that make it so (the rules on disk are broken and the
        last good ones are in force): still serving, but someone should look."""
        with self._ingest_lock:
            depth = self._store().outbox.depth()
        ruleset = self._rules_status()
        problems = []
        if not ruleset["ok"]:
            problems.append("the rule files have errors; the last good rules are in force")
        return {
            "status": "degraded" if problems else "ok",
            "ok": not problems,
            "problems": problems,
            "ruleset": ruleset,
            "outbox_depth": depth,
            "uptime_seconds": round(time.time() - self.started, 3),
        }

    def _rule_labels(self) -> set[str]:
        ruleset = self.rules.ruleset
        return {rule.label for rule in (*ruleset.rules, *ruleset.expects)}

    def metrics_text(self) -> str:
        """Counts the events journaled since the last look (by this service
        or by handlers that fell back to the inline path), then renders."""
        rules = self._rule_labels()
        with self._ingest_lock:
            store = self._store()
            with self._metrics_lock:
                entries = store.journal.events_since(self._metrics.seen_id)
                for row_id, name, origin, decisions in entries:
                    self._metrics.count_event(name, origin, decisions, rules)
                    self._metrics.seen_id = row_id
            depth = store.outbox.depth()
            dead = store.outbox.dead_count()
        status = self._rules_status()
        with self._metrics_lock:
            return self._metrics.render(rules, depth, dead, status)


# ---------------------------------------------------------------------------
# router serve
# ---------------------------------------------------------------------------


def serve(config: Config, *, listen: Optional[str] = None, poll: bool = False) -> int:
    """Run the service until SIGTERM or SIGINT. Returns the exit status."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    # Apprise's own log lines are not masked and say little: delivery captures
    # them for the outbox's (masked) error, and the service logs that instead.
    apprise_log = logging.getLogger("apprise")
    apprise_log.setLevel(logging.WARNING)
    apprise_log.propagate = False
    apprise_log.addHandler(logging.NullHandler())
    try:
        service = Service(config, listen=listen, poll=poll)
    except (ConfigError, ValueError, RuntimeError) as exc:
        log.error("cannot start: %s", exc)
        return 2

    def on_signal(number: int, _frame: Any) -> None:
        if service.stopping.is_set():
            log.info("already stopping (signal %d)", number)
        service.request_stop()

    def on_hangup(_number: int, _frame: Any) -> None:
        if service.rules is not None:
            threading.Thread(target=service.reload_on_request, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_hangup)
    try:
        service.start()
    except (RuntimeError, OSError, ConfigError) as exc:
        log.error("cannot start: %s", exc)
        service.stop()
        return 2
    while not service.stopping.wait(1.0):
        pass
    service.stop()
    return 0
