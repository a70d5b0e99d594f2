"""``router serve``: the long-running service (docs/design.md).

One process that keeps the ruleset loaded and does for every event what the
inline handler does, with the same library code: evaluate -> render ->
journal + outbox (``router.dispatch.process``). Handlers reach it on the
local socket and perform only the local steps it sends back; remote engines
and clients post events over HTTP.

``Service`` wires its parts, each a module of this package and each
working alone, around one store (one object; each thread gets its own
SQLite connection inside):

- intake (``local_socket``, ``http``, both checking what arrives with
  ``requests``): the connection threads; they hand events to the service
  (``intake.IntakeOwner``), which evaluates and journals them one at a
  time, under a lock;
- rules: ``router.watch.RulesWatcher`` swaps in good rule edits, reports
  broken ones to the ``admin`` target;
- delivery (``scheduler``): a dispatcher and a pool of workers, one URL
  each, woken when an event queues rows; dead letters are reported to
  ``admin``;
- timers (``timer_loop``): ``router.timers.tick`` about every second
  (expect windows, digests) and the journal's retention;
- ``metrics``: the counters ``GET /metrics`` shows.

SIGTERM or SIGINT: stop accepting (the socket file goes first, so new
handlers take the inline path at once), finish the events in progress, let
the sends in flight finish (bounded by their timeouts), exit 0. After a
kill -9 nothing is lost: events were journaled with their outbox rows
before they were answered; rows being sent at the kill are leased, and come
due again when the lease runs out (so only those can arrive twice). SIGHUP
reads the rules again at once.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from router.config import Config, ConfigError
from router.dispatch import (
    BROKEN_RULES_TITLE,
    Outcome,
    admin_report,
    mask_results,
    process,
    report_broken_rules,
)
from router.engine import Ruleset
from router.events import event_from_argv
from router.loader import use_caches
from router.service.client_limits import ClientLimits
from router.service.http import HttpServer
from router.service.listening import tls_of
from router.service.local_socket import LocalServer
from router.service.metrics import Metrics
from router.service.requests import EventRequest
from router.service.scheduler import DeliveryScheduler
from router.service.timer_loop import TimerLoop
from router.status import Status, gather, prometheus
from router.store import Store, open_store
from router.store import ensure_private_dir as _ensure_private_dir
from router.watch import RulesWatcher

log = logging.getLogger("router.service")
T = TypeVar("T")


class Service:
    """The service's parts, wired; ``start``, then ``stop`` once.

    The intake servers' owner (``router.service.intake.IntakeOwner``): they
    hand it events and steps reports, and ask it for health and metrics.
    """

    def __init__(
        self,
        config: Config,
        *,
        listen: Optional[str] = None,
        poll: bool = False,
        tls: Optional[tuple[str, str]] = None,
    ):
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.admin = list(config.admin)
        self.poll = poll
        listen = listen or config.listen
        limits = ClientLimits(rate=config.rate_limit, max_per_client=config.max_client_connections)
        token, require_token = config.token, config.require_token
        self.local = LocalServer(self, self.state_dir, config.local_socket)
        self.http = None
        if listen:
            context, insecure = tls_of(config, tls), config.insecure_http
            self.http = HttpServer(self, listen, token, require_token, limits, context, insecure)

        #: Set when a stop is asked for (a signal); the servers watch it.
        self.stopping = threading.Event()
        self.rules: Any = None
        self.started = time.time()
        #: Events are evaluated and journaled one at a time.
        self._ingest_lock = threading.Lock()
        #: The state, open from start to stop, and the parts that need it.
        self.store: Optional[Store] = None
        self.scheduler: Optional[DeliveryScheduler] = None
        self.timer_loop: Optional[TimerLoop] = None
        #: Prometheus counters since start.
        self.metrics = Metrics()

    # ------------------------------------------------------------------
    # Lifecycle
    # ------------------------------------------------------------------

    def start(self) -> None:
        _ensure_private_dir(self.state_dir)
        use_caches(self.state_dir)
        store = self.store = open_store(self.config)
        self.metrics.seen_id = store.journal.last_id()
        self.scheduler = DeliveryScheduler(
            store, self.config.delivery, self.metrics, self.report_to_admin
        )
        self.timer_loop = TimerLoop(
            store,
            self._ruleset,
            event_log=self.config.event_log,
            retention=self.config.retention,
            run_timeout=self.config.run_timeout,
            on_queued=self.scheduler.wake,
            stopping=self.stopping,
        )
        freed = store.outbox.release_abandoned_claims()
        if freed:
            log.info("took back %d outbox row(s) claimed by a deliverer that is gone", freed)
        self.rules = self._load_rules()
        if not self.rules.last_reload_ok:
            self._report_broken_rules(self.rules.last_errors)
        self.local.start()
        if self.http is not None:
            self.http.start()
        threading.Thread(target=_warm_up, name="router-warm-up", daemon=True).start()
        self.scheduler.start()
        self.timer_loop.start()
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

    def _ruleset(self) -> Ruleset:
        """The ruleset in force now (a reload swaps it)."""
        return self.rules.ruleset

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
        if self.scheduler is not None:
            self.scheduler.stop()  # the sends in flight finish
        if self.timer_loop is not None:
            self.timer_loop.join()
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.close()
        log.info("stopped")

    def _store(self) -> Store:
        assert self.store is not None, "the service is not started"
        return self.store

    @property
    def date_order(self) -> str:
        return self.config.date_order

    def use_store(self, work: Callable[[Store], T]) -> T:
        """``work(store)``, beside the events, not in turn with them: the
        store serves many threads (a connection each), and the status page's
        reads or a new silence need not hold up an event, nor wait for one."""
        return work(self._store())

    def backup_status(self) -> Status:
        """Every backup at a glance, from the store and the rules in force."""
        forget = self.config.status_forget
        return self.use_store(
            lambda store: gather(store, self.rules.ruleset, self._rules_status(), forget)
        )

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
                # Over HTTP, a one-time token to report the local steps with
                # (its hash journaled with the event, in the same transaction).
                steps_token=secrets.token_urlsafe(24) if origin == "http" else None,
            )
        if outcome.outbox_ids:
            self.wake_delivery()
        return outcome

    def record_steps(
        self, event_id: int, results: list[dict[str, Any]], steps_token: Optional[str] = None
    ) -> str:
        """Store what the local steps did, once (``Store.record_steps``), their
        output masked: ``router.store.STEPS_RECORDED``, or why nothing was stored."""
        results = mask_results(results, ruleset=self.rules.ruleset, extra=self.admin)
        with self._ingest_lock:
            return self._store().journal.record_steps(event_id, results, steps_token)

    def wake_delivery(self) -> None:
        """Rows were queued: the scheduler looks at the outbox now."""
        assert self.scheduler is not None, "the service is not started"
        self.scheduler.wake()

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
            self.metrics.count_admin_report()
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
        last good ones are in force: still serving, but someone should
        look), or ``unavailable`` while the store does not answer."""
        return _health(self)

    def _rule_labels(self) -> set[str]:
        return set(self.rules.ruleset.labels)

    def metrics_text(self) -> str:
        """Counts the events journaled since the last look (by this service
        or by handlers that fell back to the inline path), then renders."""
        rules = self._rule_labels()
        with self._ingest_lock:
            store = self._store()
            self.metrics.count_journal(store.journal, rules)
            depth = store.outbox.depth()
            dead = store.outbox.dead_count()
        own = self.metrics.render(rules, depth, dead, self._rules_status())
        return own + prometheus(self.backup_status())


def _health(service: Service) -> dict[str, Any]:
    problems = []
    depth = None
    try:
        with service._ingest_lock:
            depth = service._store().outbox.depth()  # the database answers
    except Exception as exc:  # noqa: BLE001 - not ready: say why, not a traceback
        problems.append(f"the store ({service._store().where}) does not answer: {exc}")
    ruleset = service._rules_status()
    if not ruleset["ok"]:
        problems.append("the rule files have errors; the last good rules are in force")
    return {
        "status": ("unavailable" if depth is None else "degraded") if problems else "ok",
        "ok": not problems,
        "problems": problems,
        "ruleset": ruleset,
        "outbox_depth": depth,
        "uptime_seconds": round(time.time() - service.started, 3),
    }


def _warm_up() -> None:
    """Import what the first event and the first send need, before they come."""
    try:
        import apprise  # noqa: F401

        import router.templates  # noqa: F401
    except Exception:  # only ever saves time
        pass


# ---------------------------------------------------------------------------
# router serve
# ---------------------------------------------------------------------------


def serve(
    config: Config,
    *,
    listen: Optional[str] = None,
    poll: bool = False,
    tls: Optional[tuple[str, str]] = None,
) -> int:
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
        service = Service(config, listen=listen, poll=poll, tls=tls)
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
