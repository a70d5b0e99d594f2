"""Timers: ``expect`` windows and ``digest`` flushes, read from the store.

``tick(ruleset, store)`` does whatever has come due by now, and nothing
else; the service calls it about once a second, and the inline handler
after each event, so both work without the other. Every window lives in
the store (``expect_state``, ``digest_items``), never in memory: a restart
picks up where the last process left off, and two processes ticking at
once (the service and a handler, or several handlers) fire each window
once, because the firing is claimed in the same transaction that journals
it and queues its notifications.

expect (docs/rules.md): a window is counted from the rule's last match (kept
with the matching event's journal entry), or from when it was first armed;
it fires when ``every + grace`` has passed without a match, once per missed
window, and again each ``every`` while the matches stay missing. A match
re-arms it. A rule whose pinned fields are all literals (or that pins none)
has a single window, armed at the first tick that sees the rule; one that
pins a field to another field gets a window per key at its first match.

digest: a window opens at the first collected event and lasts the rule's
digest duration; events arriving meanwhile join it. When it closes, one
notification per target of the rule's notify actions, rendered with the
last event's fields plus ``events`` (every collected event's fields, in
order) and ``count``.

Each firing is journaled as a synthetic entry (event ``expect`` or
``digest``, origin ``timer``), so its outbox rows have an event and
``router history`` shows it.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Optional, Union

from router.actions import Notification, Step
from router.actions.notify import TYPE_FOR_STATUS
from router.catalog import canonical_name
from router.config import RUN_TIMEOUT
from router.dispatch import queued
from router.engine import (
    CompiledRule,
    History,
    PlannedAction,
    RuleDecision,
    Ruleset,
    static_expect_key,
)
from router.engine.silences import Muted, mark_silenced
from router.events import Event
from router.rendering import Renderer, render_all
from router.runs import SCRIPT, Run, overdue
from router.schedules import latest_missed, next_after, zone
from router.steps import perform
from router.store import DigestBatch, ExpectState, JournalEntry, Store

#: Deadlines are sums of floats read back from SQLite: equal within this.
EPSILON = 1e-6
#: Items of a digest rule that is not in the ruleset are kept this long past
#: their window (a broken or stale ruleset in one process must not lose them),
#: then dropped with a journaled error.
ORPHAN_DIGEST_AFTER = 86400.0
#: An overdue expect is a warning unless its notify says otherwise.
EXPECT_TYPE = "warning"
_SEVERITY = {"failure": 3, "warning": 2, "success": 1}

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


@dataclass
class Fired:
    """One timer that went off: its journal entry and outbox rows."""

    kind: str  # "expect" or "digest"
    rule: str
    key: str
    event_id: int
    outbox_ids: list[int]
    #: digest: how many events it collected.
    count: int = 0
    #: expect: how long since the last match (or the arming).
    overdue: Optional[timedelta] = None
    errors: list[str] = field(default_factory=list)
    #: Its notifications a silence kept from being sent.
    muted: list[Muted] = field(default_factory=list)


@dataclass
class TickReport:
    now: float
    fired: list[Fired] = field(default_factory=list)
    #: Expect windows started by this tick: (rule, key).
    armed: list[tuple[str, str]] = field(default_factory=list)
    #: Problems that kept a timer from running (its state is unchanged: the
    #: next tick tries again). Rendering problems are in each Fired and its
    #: journal entry instead.
    errors: list[str] = field(default_factory=list)
    #: Runs this tick closed as incomplete (silent for ``run_timeout``).
    runs_ended: list[Run] = field(default_factory=list)

    @property
    def outbox_ids(self) -> list[int]:
        return [row for fired in self.fired for row in fired.outbox_ids]


# ---------------------------------------------------------------------------
# tick
# ---------------------------------------------------------------------------


def tick(
    ruleset: Ruleset,
    store: Store,
    now: Optional[float] = None,
    *,
    event_log: Optional[Union[str, Path]] = None,
    run_timeout: float = RUN_TIMEOUT,
) -> TickReport:
    """Close the runs silent for ``run_timeout``, fire the expect windows and
    flush the digests due at ``now``.

    Never raises for a timer's failure (it lands in the report's errors,
    and the timer is retried at the next tick): the inline handler calls
    this with Retrospect waiting. ``event_log`` is where a ``log`` action
    without ``to`` writes (default: events.log in the store's directory).
    """
    now = time.time() if now is None else now
    report = TickReport(now)
    log_path = Path(event_log) if event_log is not None else None
    try:
        report.runs_ended = store.runs.end(overdue(store.runs.all_open(), now, run_timeout))
    except Exception as exc:  # noqa: BLE001 - a broken timer must not stop the caller
        report.errors.append(f"runs: {type(exc).__name__}: {exc}")
    for part in (_tick_expects, _tick_hung_runs, _tick_digests):
        try:
            part(ruleset, store, now, report, log_path)
        except Exception as exc:  # noqa: BLE001 - a broken timer must not stop the caller
            report.errors.append(f"{part.__name__[6:]}: {type(exc).__name__}: {exc}")
    return report


# -- expect


def _tick_expects(
    ruleset: Ruleset, store: Store, now: float, report: TickReport, log: Optional[Path]
) -> None:
    if not ruleset.expects:
        return
    states: dict[str, list[ExpectState]] = {}
    for state in store.state.expect_states():
        states.setdefault(state.rule, []).append(state)
    to_arm = []
    windows: list[tuple[CompiledRule, ExpectState]] = []
    for rule in ruleset.expects:
        if rule.rule.within is not None:
            continue  # a hung-run rule (_tick_hung_runs)
        known = states.get(rule.label, [])
        key = static_expect_key(rule)
        if key is None:  # keys come from matches
            windows.extend((rule, state) for state in known)
            continue
        # A rule whose pins are all literals: this machine's window is
        # watched from start-up; other engines' (the same key but for the
        # host, which is pinned first) from their first match. A row under
        # any other key is a leftover of an edited rule and is not watched.
        state = next((s for s in known if s.key == key), None)
        if state is None:
            to_arm.append((rule.label, key))
            state = ExpectState(rule.label, key, now, None, None, None)
        windows.append((rule, state))
        same = _without_host(key)
        windows.extend(
            (rule, other)
            for other in known
            if other.key != key and _without_host(other.key) == same
        )
    if to_arm:
        store.state.arm_expects(to_arm, now)
        report.armed.extend(to_arm)
    for rule, state in windows:
        deadline = due_deadline(rule, state, now)
        if deadline is None:
            continue
        try:
            fired = fire_expect(ruleset, store, rule, state, deadline, now, log)
        except Exception as exc:  # noqa: BLE001 - the others still run
            report.errors.append(f"expect '{rule.label}': {type(exc).__name__}: {exc}")
            continue
        if fired is not None:
            report.fired.append(fired)


def _tick_hung_runs(
    ruleset: Ruleset, store: Store, now: float, report: TickReport, log: Optional[Path]
) -> None:
    """``expect ... within D after StartScript``: each script run still open
    D after it started fires the rule once (its window is keyed by the run)."""
    rules = [rule for rule in ruleset.expects if rule.rule.within is not None]
    if not rules:
        return
    runs = [run for run in store.runs.all_open() if run.kind == SCRIPT]
    states = {(s.rule, s.key): s for s in store.state.expect_states()}
    for rule in rules:
        assert rule.rule.within is not None
        within = rule.rule.within.total_seconds()
        grace = _grace(rule)
        for run in runs:
            deadline = run.started + within + grace
            fields = {"script": run.script, "host": run.host, "run": run.view(now)}
            if now < deadline or not _holds(rule, fields):
                continue
            state = states.get((rule.label, run.id))
            if state is None:
                store.state.arm_expects([(rule.label, run.id)], run.started)
                state = ExpectState(rule.label, run.id, run.started, None, None, None)
            if state.fired_for is not None:
                continue  # once per run
            try:
                done = fire_expect(ruleset, store, rule, state, deadline, now, log, run=run)
            except Exception as exc:  # noqa: BLE001 - the others still run
                report.errors.append(f"expect '{rule.label}': {type(exc).__name__}: {exc}")
                continue
            if done is not None:
                report.fired.append(done)


def _holds(rule: CompiledRule, fields: dict[str, Any]) -> bool:
    """Whether a hung run is one the rule's ``where`` is about."""
    try:
        return bool(rule.test(fields, {}))
    except Exception:  # noqa: BLE001 - a condition that cannot be decided does not fire
        return False


def _without_host(key: str) -> str:
    """An expect window's key without its first part, the ``host``."""
    return key.partition("\x1f")[2]


def due_deadline(rule: CompiledRule, state: ExpectState, now: float) -> Optional[float]:
    """The deadline of the missed window to fire for at ``now``, or None.

    The first window ends ``every + grace`` after the base (last match or
    arming); each later one ``every`` after the previous. Only the latest
    missed window fires: a router that was down for three windows sends one
    notification, not three.
    """
    if rule.rule.at is not None:
        return _schedule_deadline(rule, state, now)
    every_delta = rule.rule.every
    if every_delta is None or every_delta.total_seconds() <= 0:
        return None
    every = every_delta.total_seconds()
    grace = _grace(rule)
    first = state.base + every + grace
    if now < first:
        return None
    deadline = first + ((now - first) // every) * every
    if state.fired_for is not None and state.fired_for >= deadline - EPSILON:
        return None
    return deadline


def next_due(rule: CompiledRule, matched: float) -> Optional[tuple[datetime, datetime]]:
    """When an expect rule that an event matched at ``matched`` next wants a
    match: (the time expected, the deadline after its grace), in the
    schedule's zone; None for a rule that watches runs (``within``)."""
    grace, where = _grace(rule), _zone(rule)
    if rule.rule.at is not None:
        expected = next_after(str(rule.rule.at.value), where, matched)
    elif rule.rule.every is not None:
        expected = matched + rule.rule.every.total_seconds()
    else:
        return None
    if expected is None:
        return None
    return (
        datetime.fromtimestamp(expected, where),
        datetime.fromtimestamp(expected + grace, where),
    )


def _grace(rule: CompiledRule) -> float:
    """An expect rule's grace, in seconds (0 without one)."""
    return rule.rule.grace.total_seconds() if rule.rule.grace else 0.0


def _zone(rule: CompiledRule) -> Optional[tzinfo]:
    """A schedule's zone (None: the router's local time)."""
    return zone(str(rule.rule.tz.value) if rule.rule.tz is not None else None)


def _schedule_deadline(rule: CompiledRule, state: ExpectState, now: float) -> Optional[float]:
    """``at "CRON"``: the deadline (scheduled time + grace) of the latest
    scheduled time with no matching event since, not fired yet; None."""
    assert rule.rule.at is not None
    grace = _grace(rule)
    missed = latest_missed(str(rule.rule.at.value), _zone(rule), state.base, now, grace)
    if missed is None:
        return None
    deadline = missed + grace
    if state.fired_for is not None and state.fired_for >= deadline - EPSILON:
        return None
    return deadline


def expect_variables(
    ruleset: Ruleset,
    rule: CompiledRule,
    state: ExpectState,
    now: float,
    run: Optional[Run] = None,
    deadline: Optional[float] = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields an expect rule's templates see (pinned fields, host,
    received) and its extra variables (rule, overdue, last, what the
    built-in message says, and for a hung run, ``run``)."""
    pinned: dict[str, Any] = {}
    for name in rule.pinned:
        if state.last_fields is not None and name in state.last_fields:
            pinned[name] = state.last_fields[name]
        elif rule.pinned_values is not None and name in rule.pinned_values:
            pinned[name] = rule.pinned_values[name]
    fields = {"host": socket.gethostname(), "received": datetime.fromtimestamp(now), **pinned}
    names = [canonical_name(name) or name for name, _ in rule.rule.events]
    condition = rule.rule.condition
    extra = {
        "rule": rule.label,
        "overdue": timedelta(seconds=now - state.base),
        "last": dict(state.last_fields) if state.last_fields is not None else None,
        "expected": " or ".join(names) if names else "event",
        "condition": ruleset.source_text(condition.span) if condition is not None else "",
        "every": rule.rule.every,
        "grace": rule.rule.grace,
    }
    if run is not None:
        fields.update(script=run.script, host=run.host)
        extra["run"] = run.view(now)
    if rule.rule.at is not None and deadline is not None:
        grace = _grace(rule)
        where = _zone(rule)
        extra["scheduled"] = datetime.fromtimestamp(deadline - grace, where)  # in its zone
        extra["deadline"] = datetime.fromtimestamp(deadline, where)
        extra["overdue"] = timedelta(seconds=now - (deadline - grace))
    return fields, extra


def fire_expect(
    ruleset: Ruleset,
    store: Store,
    rule: CompiledRule,
    state: ExpectState,
    deadline: float,
    now: float,
    log: Optional[Path] = None,
    run: Optional[Run] = None,
) -> Optional[Fired]:
    """Render, journal and queue one expect window's notifications; None when
    another process fired it (or a match re-armed it) first. ``run``: the
    hung run a ``within ... after`` rule fires for."""
    fields, extra = expect_variables(ruleset, rule, state, now, run, deadline)
    event = Event(name="expect", known=False, fields=fields, args=[])
    renderer = Renderer(
        ruleset, event, fields, History(), message="_expect", default_type=EXPECT_TYPE
    )
    allowed: list[PlannedAction] = []
    skipped: list[str] = []
    for action in rule.rule.actions:
        if action.refused_in_expect is None:
            allowed.append(PlannedAction(rule, action, extra))
        else:
            skipped.append(
                f"'{action.keyword}' in expect rule '{rule.label}' at {action.span} was not"
                " performed: a timer has no event, and no Retrospect waiting on this machine"
            )
    notifications, steps = render_all(renderer, allowed)
    errors = renderer.errors + skipped
    items, muted = queued(ruleset, store, notifications, fields, now, errors)
    identity = rule.label + (f"\x1f{state.key}" if state.key else "")
    overdue = extra["overdue"]
    entry = JournalEntry(
        received=fields["received"],
        name="expect",
        identity=identity,
        status=EXPECT_TYPE,
        streak=1,
        host=fields["host"],
        fields={
            "rule": rule.label,
            **{k: v for k, v in fields.items() if k not in ("host", "received")},
            "overdue": overdue,
            "since": datetime.fromtimestamp(state.base),
            "window_end": datetime.fromtimestamp(deadline),
            "matched_before": state.last_match is not None,
            **({"run_id": run.id} if run is not None else {}),
        },
        args=[],
        decisions=mark_silenced([RuleDecision(rule.label, True).record()], muted),
        steps=[{"kind": s.kind, "rule": s.rule, "outcome": "pending"} for s in steps],
        errors=errors,
        origin="timer",
    )
    recorded = store.state.fire_expect(entry, items, state, deadline, now)
    if recorded is None:
        return None
    event_id, ids = recorded
    _perform_steps(store, event_id, steps, log)
    return Fired(
        "expect", rule.label, state.key, event_id, ids, overdue=overdue, errors=errors, muted=muted
    )


# -- digest


def _tick_digests(
    ruleset: Ruleset, store: Store, now: float, report: TickReport, log: Optional[Path]
) -> None:
    batches = store.state.due_digests(now) + _ended_run_digests(ruleset, store)
    if not batches:
        return
    for batch in batches:
        rule = ruleset.rule_named(batch.rule)
        if rule is None and now - batch.window_end < ORPHAN_DIGEST_AFTER:
            continue  # perhaps this process's ruleset is stale: leave it to another tick
        try:
            fired = flush_digest(ruleset, store, rule, batch, now)
        except Exception as exc:  # noqa: BLE001 - the others still run
            report.errors.append(f"digest '{batch.rule}': {type(exc).__name__}: {exc}")
            continue
        if fired is not None:
            report.fired.append(fired)


def _ended_run_digests(ruleset: Ruleset, store: Store) -> list[DigestBatch]:
    """The ``digest run`` windows whose run has ended (or was given up)."""
    ended = []
    for batch in store.state.digests_of(ruleset.run_digest_labels()):
        run = store.runs.get(batch.key)
        if run is not None and not run.open:
            ended.append(batch)
    return ended


def flush_digest(
    ruleset: Ruleset,
    store: Store,
    rule: Optional[CompiledRule],
    batch: DigestBatch,
    now: float,
) -> Optional[Fired]:
    """One notification per target for a closed digest window: journaled,
    queued and the items forgotten in one transaction. ``rule`` None (no
    longer in the rules) journals the loss instead. None when another
    process flushed the window first."""
    events = [item.fields for item in batch.items]
    count = len(events)
    last = dict(events[-1])
    notifications: list[Notification] = []
    errors: list[str] = []
    if rule is None:
        errors.append(
            f"rule '{batch.rule}' is no longer in the rules: its digest of {count}"
            f" event{'s' if count != 1 else ''} was not sent"
        )
    else:
        previous = store.journal.previous_of(batch.items[-1].event_id)
        name = str(last.get("event", ""))
        event = Event(name=name, known=canonical_name(name) is not None, fields=last, args=[])
        worst = max((str(e.get("status", "info")) for e in events), key=_severity)
        renderer = Renderer(
            ruleset,
            event,
            last,
            History(previous=previous),
            message="_digest",
            default_type=TYPE_FOR_STATUS.get(worst, "info"),
        )
        notifies = [a for a in rule.rule.actions if a.notifies]
        extra: dict[str, Any] = {
            "rule": rule.label,
            "suppressed": 0,
            "events": events,
            "count": count,
        }
        if rule.digest is not None and rule.digest.per_run:
            ended = store.runs.get(batch.key)
            if ended is not None:
                extra["run"] = ended.view()
        if any(a.title is None or a.body is None for a in notifies):
            extra["summaries"] = _summaries(rule.label, events)
        notifications, _ = render_all(renderer, [PlannedAction(rule, a, extra) for a in notifies])
        if not notifies:
            errors.append(
                f"rule '{rule.label}' has no notify action any more: its digest of {count}"
                f" event{'s' if count != 1 else ''} was not sent"
            )
        errors.extend(renderer.errors)
    items, muted = queued(ruleset, store, notifications, last, now, errors)
    statuses = [str(e.get("status", "info")) for e in events]
    entry = JournalEntry(
        received=datetime.fromtimestamp(now),
        name="digest",
        identity=batch.rule + (f"\x1f{batch.key}" if batch.key else ""),
        status=max(statuses, key=_severity),
        streak=1,
        host=socket.gethostname(),
        fields={
            "rule": batch.rule,
            "key": batch.key,
            "count": count,
            "first": events[0].get("received"),
            "last": last.get("received"),
            "window_end": datetime.fromtimestamp(batch.window_end),
            "event_ids": [item.event_id for item in batch.items],
        },
        args=[],
        decisions=mark_silenced([RuleDecision(batch.rule, True).record()], muted),
        errors=errors,
        origin="timer",
    )
    recorded = store.state.flush_digest(entry, items, batch, now)
    if recorded is None:
        return None
    event_id, ids = recorded
    return Fired(
        "digest", batch.rule, batch.key, event_id, ids, count=count, errors=errors, muted=muted
    )


def _summaries(label: str, events: list[dict[str, Any]]) -> list[str]:
    """Each collected event's built-in title, for the built-in digest body."""
    from router.templates import event_variables, render_message

    lines = []
    for fields in events:
        variables = event_variables(fields, {}, {"rule": label})
        lines.append(render_message(str(fields.get("event", "")), "title", variables).text)
    return lines


def _severity(status: str) -> int:
    return _SEVERITY.get(status, 0)


def _perform_steps(store: Store, event_id: int, steps: list[Step], log: Optional[Path]) -> None:
    """A timer's local steps (an expect may ``log``), after its journal entry,
    as the handler performs an event's."""
    if steps:
        outcomes, _ = perform(steps, log)
        store.journal.record_steps(event_id, outcomes)
