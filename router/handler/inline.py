"""The inline path: the whole event in this process.

No service, or it did not answer in time: argv -> Event -> ruleset (cached)
-> journal + outbox -> local steps (run, abort, log) -> deliver within a
deadline. What is not delivered by then stays queued for the next handler,
the service or ``router outbox retry``. An event that cannot be journaled
is still decided, its steps performed, its notifications sent directly, and
it is kept in the spool until a later handler or the service records it.

The heavy modules (the engine, SQLite, Lark, Jinja, Apprise) are imported
inside the functions, not here: when one of them is broken or missing,
importing this module still works, so ``keep_raw`` can keep the event.
"""

from __future__ import annotations

import time

from router import config as settings
from router import locations
from router.handler.stderr import say
from router.steps import perform

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Optional


def handle(
    args: list[str],
    config_path: Optional[str] = None,
    uid: Optional[str] = None,
    started: Optional[float] = None,
) -> int:
    """The whole event in this process. The local steps are performed
    whatever happens to the journal: an event that cannot be recorded (full
    disk, read-only or refused state directory, damaged database) is decided
    without history, its steps performed, its notifications sent directly,
    and kept in the spool until a later handler or the service records it."""
    from router import spool
    from router.dispatch import process, record_outcome
    from router.events import event_from_argv
    from router.loader import load_ruleset, use_caches
    from router.store import open_store

    started = time.time() if started is None else started
    problems: list[str] = []
    try:
        config = settings.load(config_path)
        problems.extend(config.warnings)
    except settings.ConfigError as exc:
        problems.append(f"configuration: {exc}; using the defaults")
        config = settings.defaults()
    if config.forward:  # an engine of a fleet: the central routers decide
        from router.handler import forward

        for problem in problems:
            say(problem)
        return forward.handle(args, config, uid or "", started)
    event = event_from_argv(args, date_order=config.date_order)
    store: Optional[Any] = None
    try:
        store = open_store(config)
        use_caches(config.state_dir)  # private (Store checked it): caches may live there
    except Exception as exc:  # Untrusted, OSError, sqlite3.Error
        problems.append(f"the journal in {config.state_dir} cannot be used: {_reason(exc)}")
    try:
        # Only this event's rules, unless spooled events wait: they are
        # decided now too, and may be of any event.
        waiting = store is not None and spool.pending(config.state_dir)
        loaded = load_ruleset(
            config.rules_dir,
            config.state_dir,
            config.date_order,
            event=None if waiting else event,
        )
        if loaded.errors:
            problems.append(
                "the rules have errors; the last good ruleset stays in force: "
                + "; ".join(loaded.errors)
            )
        problems.extend(loaded.warnings)
        for problem in problems:
            say(problem)
        if store is not None:
            _flush_spool(store, config, loaded.ruleset)
            if loaded.errors:
                _report_broken_rules(store, config, loaded)
        outcome = process(
            event,
            loaded.ruleset,
            store,
            record=False,
            extra_errors=problems,
            uid=uid,
            run_env=config.run_env,
        )
        recorded = False
        if store is not None:
            try:
                record_outcome(store, outcome, "handler", uid)
                recorded = True
            except Exception as exc:
                say(f"the event could not be journaled: {_reason(exc)}")
        if recorded:
            return finish(outcome, store, config, loaded.ruleset, started)
        return _finish_unrecorded(outcome, config, loaded.ruleset, uid, started)
    finally:
        if store is not None:
            store.close()


def _report_broken_rules(store: Any, config: Any, loaded: Any) -> None:
    """No service to tell the admin target about a broken rule edit: the
    first handler to see this broken version does (it goes out with the
    event's own deliveries)."""
    from router.dispatch import report_broken_rules

    try:
        report_broken_rules(store, config.admin, loaded.fingerprint, loaded.errors, "handler")
    except Exception as exc:
        say(f"the report to the admin target was not queued: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """An exception in words: its own message when that says it all."""
    text = str(exc) or type(exc).__name__
    plain = type(exc).__name__ in ("Untrusted", "OSError")
    return text if plain else f"{type(exc).__name__}: {text}"


def finish(
    outcome: Any, store: Any, config: Any, ruleset: Any = None, started: Optional[float] = None
) -> int:
    """Local steps, the timers (when ``ruleset`` is given), then delivery
    until the deadline (counted from ``started``). Returns the exit status."""
    import contextlib

    from router.delivery import drain
    from router.dispatch import mask_results

    results, aborted = perform(outcome.steps, config.event_log)
    try:
        if outcome.event_id is not None and results:
            store.journal.record_steps(
                outcome.event_id, mask_results(results, outcome.outbox, ruleset)
            )
        if ruleset is not None:
            _tick_timers(ruleset, store, config)
        policy = config.delivery
        deadline = (time.time() if started is None else started) + policy.deadline
        drain(store, policy, deadline=deadline, ids=outcome.outbox_ids)
        if time.time() < deadline:
            drain(store, policy, deadline=deadline)  # older rows still waiting
        store.apply_retention(config.retention)
    except Exception as exc:  # the event and its steps are done; say what was not
        say(f"after the event was journaled: {_reason(exc)}")
        if outcome.event_id is not None:
            with contextlib.suppress(Exception):
                store.journal.add_error(outcome.event_id, f"after journaling: {_reason(exc)}")
    return 1 if aborted else 0


def _finish_unrecorded(
    outcome: Any, config: Any, ruleset: Any, uid: Optional[str], started: float
) -> int:
    """The event could not be journaled: spool it, perform its steps, send
    its notifications directly within the deadline, note what was sent."""
    from router import spool
    from router.delivery import send_now
    from router.dispatch import mask_results, spooled

    data = spooled(outcome, "handler", uid)
    path = _spool(spool, data, config)
    results, aborted = perform(outcome.steps, config.event_log)
    data["steps"] = mask_results(results, outcome.outbox, ruleset)
    policy = config.delivery
    sent = send_now(outcome.outbox, policy, deadline=started + policy.deadline)
    data["sent"] = sent
    if path is not None:
        path = _spool(spool, data, config) or path
    unsent = len(outcome.outbox) - len(sent)
    if outcome.outbox:
        say(f"sent {len(sent)} of {len(outcome.outbox)} notification(s) directly")
    if path is None and unsent:
        say(f"{unsent} notification(s) were not sent and could not be kept")
    return 1 if aborted else 0


def _spool(spool: Any, data: dict[str, Any], config: Any) -> Optional[Any]:
    try:
        path = spool.save(data, config.state_dir)
    except Exception as exc:
        say(f"the event could not be kept for later either: {_reason(exc)}")
        return None
    say(f"event kept in {path}; it is journaled when the state directory takes it again")
    return path


def _flush_spool(store: Any, config: Any, ruleset: Any) -> None:
    """Record the events earlier handlers had to spool, before this one."""
    from datetime import datetime

    from router import spool
    from router.dispatch import process
    from router.events import event_from_argv

    def decide(data: dict[str, Any]) -> None:
        received = datetime.fromisoformat(data["received"])
        event = event_from_argv(data["argv"], date_order=config.date_order, received=received)
        error = f"recorded late from the spool: {data.get('error')}"
        process(event, ruleset, store, extra_errors=[error], origin="spool", uid=data.get("uid"))

    try:
        problems = spool.flush(store, config.state_dir, decide)[1]
    except Exception as exc:
        problems = [_reason(exc)]
    for problem in problems:
        say(f"spool: {problem}")


def _tick_timers(ruleset: Any, store: Any, config: Any) -> None:
    """Without a service, handlers run the timers (expect windows, digests)
    that have come due; their rows are delivered with the event's."""
    from router.timers import tick

    report = tick(ruleset, store, event_log=config.event_log, run_timeout=config.run_timeout)
    for error in report.errors:
        say(f"timers: {error}")


def keep_raw(args: list[str], uid: Optional[str], error: str, config_path: Optional[str]) -> None:
    """Last resort when the handler failed before deciding: keep the
    arguments in the spool, so the event is decided once things work."""
    try:
        from router import spool
        from router.events import decode_arg

        found = settings.fast_settings(config_path)
        state_dir = found.state_dir if found is not None else locations.default_state_dir()
        data = spool.raw([decode_arg(a) for a in args], uid, error)
        say(f"event kept in {spool.save(data, state_dir)}")
    except Exception as exc:
        say(f"the event could not be kept: {type(exc).__name__}: {exc}")
