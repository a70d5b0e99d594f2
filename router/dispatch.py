"""One event through the pipeline: evaluate -> render -> journal + outbox.

This is the code the inline handler, the service and ``router test`` share:
they differ only in whether the result is recorded and who performs the
local steps. Nothing here sends a notification or runs a program; it turns
an event into the rendered notifications and the local steps, and (when
asked) records both in one transaction.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from router.actions import Notification, Step
from router.engine import (
    History,
    Plan,
    Ruleset,
    ThrottleState,
    decision_records,
    evaluate,
    identity_of,
)
from router.engine.silences import NO_SILENCES, Muted, Silencer, mark_silenced, mute
from router.events import Event
from router.rendering import render_plan
from router.runs import Run, follow
from router.store import (
    DigestItem,
    ExpectMatch,
    JournalEntry,
    OutboxItem,
    Store,
    ThrottleUpdate,
    token_hash,
)


@dataclass
class Outcome:
    """What one event turned into."""

    event: Event
    plan: Plan
    identity: str
    streak: int
    #: Every notification rendered, muted ones too (only ``outbox`` is sent).
    notifications: list[Notification]
    steps: list[Step]
    outbox: list[OutboxItem]
    #: Router-side problems (template errors, unresolvable targets, a broken ruleset).
    errors: list[str]
    event_id: Optional[int] = None
    outbox_ids: list[int] = field(default_factory=list)
    #: Notifications a silence kept from being sent (not in ``outbox``).
    muted: list[Muted] = field(default_factory=list)
    #: The one-time token with which its HTTP sender reports its local
    #: steps (None: no steps, or not received over HTTP).
    steps_token: Optional[str] = None


# ---------------------------------------------------------------------------
# The whole path for one event
# ---------------------------------------------------------------------------


def outbox_items(
    ruleset: Ruleset, notifications: list[Notification]
) -> tuple[list[OutboxItem], list[str]]:
    """One outbox item per destination URL of each notification's target.
    A target that cannot be resolved (unset variable, malformed URL, broken
    config file) costs only its own notifications."""
    from router.delivery import resolve_target
    from router.urls import mask_url

    items: list[OutboxItem] = []
    problems: list[str] = []
    resolved: dict[str, list[tuple[str, str]]] = {}
    for note in notifications:
        if note.target not in resolved:
            resolved[note.target] = []
            target = ruleset.targets.get(note.target)
            if target is None:
                problems.append(f"target '{note.target}' is not defined")
                continue
            try:
                urls, target_problems = resolve_target(target, Path(target.span.file).parent)
                resolved[note.target] = [(url, mask_url(url)) for url in urls]
            except Exception as exc:  # noqa: BLE001 - one bad target, not the event
                target_problems = [f"cannot be resolved: {type(exc).__name__}"]
            problems.extend(f"target '{note.target}': {p}" for p in target_problems)
        for url, masked in resolved[note.target]:
            items.append(
                OutboxItem(
                    note.rule,
                    note.target,
                    url,
                    masked,
                    note.title,
                    note.body,
                    note.type,
                    note.format,
                )
            )
    return items, problems


def process(
    event: Event,
    ruleset: Ruleset,
    store: Optional[Store],
    *,
    record: bool = True,
    explain: bool = False,
    extra_errors: Optional[list[str]] = None,
    origin: str = "handler",
    uid: Optional[str] = None,
    run_env: tuple[str, ...] = (),
    steps_token: Optional[str] = None,
) -> Outcome:
    """Evaluate and render ``event``; when ``record``, journal it with its
    outbox rows in one transaction. ``store`` None means no history (a dry
    run on a machine with no state yet, or a store that cannot be used).
    ``steps_token``: kept (hashed) with an event that has local steps, for
    its HTTP sender to report their outcomes with."""
    identity = identity_of(event)
    errors = list(extra_errors or [])
    history = History()
    open_runs: list[Run] = []
    if store is not None:
        try:
            history = store.journal.history(event.name, identity)
            host, script = (str(event.fields.get(k, "")) for k in ("host", "script"))
            open_runs = store.runs.open_of(host, script, event.name)
        except Exception as exc:  # noqa: BLE001 - decide without history, say so
            errors.append(f"history unavailable ({type(exc).__name__}: {exc}): previous is empty")
    current = follow(event.name, event.fields, open_runs).current
    if current is not None:
        history.run = current.view()

    def throttles(rule: str, key: str) -> ThrottleState:
        if store is None:
            return ThrottleState()
        try:
            return store.state.throttle(rule, key)
        except Exception:  # noqa: BLE001 - the history error above says it
            return ThrottleState()

    plan = evaluate(ruleset, event, history, throttles, explain=explain)
    notifications, steps, render_errors = render_plan(ruleset, plan, history, run_env)
    errors += plan.errors + render_errors
    now = event.fields["received"].timestamp()
    items, muted = queued(ruleset, store, notifications, plan.fields, now, errors)
    outcome = Outcome(event, plan, identity, plan.streak, notifications, steps, items, errors)
    outcome.muted = muted
    if record and store is not None:
        record_outcome(store, outcome, origin, uid, steps_token)
    return outcome


def queued(
    ruleset: Ruleset,
    store: Optional[Store],
    notifications: list[Notification],
    fields: dict[str, Any],
    now: float,
    errors: list[str],
) -> tuple[list[OutboxItem], list[Muted]]:
    """The outbox items of the notifications no silence in force at ``now``
    mutes, and the muted ones: what an event and every timer firing queue.
    Problems (a broken silence, an unresolvable target) go to ``errors``."""
    muted: list[Muted] = []
    if notifications:
        silencer = silencer_at(ruleset, store, now, errors)
        notifications, muted = mute(notifications, fields, silencer)
    items, problems = outbox_items(ruleset, notifications)
    errors.extend(problems)
    return items, muted


def silencer_at(
    ruleset: Ruleset, store: Optional[Store], now: float, errors: list[str]
) -> Silencer:
    """The store's silences in force at ``now``. A store that cannot be read
    mutes nothing, and says so in ``errors``: a notification too many beats
    one lost."""
    if store is None:
        return NO_SILENCES
    try:
        silences = store.silences.current(now)
    except Exception as exc:  # noqa: BLE001 - notify rather than lose
        errors.append(f"silences unavailable ({type(exc).__name__}: {exc}): none honoured")
        return NO_SILENCES
    silencer = Silencer(silences, now, ruleset.date_order)
    errors.extend(silencer.problems)
    return silencer


def record_outcome(
    store: Store,
    outcome: Outcome,
    origin: str,
    uid: Optional[str] = None,
    steps_token: Optional[str] = None,
) -> None:
    """Journal an outcome with its outbox rows, throttles, expect matches and
    digest items, in one transaction (idempotent per ``uid``), and the hash
    of ``steps_token`` when it has local steps."""
    # What expectations and digests keep of the event: its fields and streak
    # (its run is kept once, in the runs table).
    fields = {k: v for k, v in outcome.plan.fields.items() if k != "run"}
    event = outcome.event
    entry = journal_entry(outcome, origin, uid)
    if steps_token and outcome.steps:
        entry.steps_token = token_hash(steps_token)
    outcome.event_id, outcome.outbox_ids = store.record(
        entry,
        outcome.outbox,
        throttle_updates(outcome.plan),
        expect_matches=expect_matches(outcome.plan, fields),
        digest_items=digest_items(outcome.plan, fields),
        follow_run=lambda open_runs: follow(event.name, event.fields, open_runs).changed,
    )
    outcome.steps_token = steps_token if entry.steps_token else None


def journal_entry(outcome: Outcome, origin: str, uid: Optional[str] = None) -> JournalEntry:
    event = outcome.event
    return JournalEntry(
        received=event.fields["received"],
        name=event.name,
        identity=outcome.identity,
        status=str(event.fields.get("status", "info")),
        streak=outcome.streak,
        host=str(event.fields.get("host", "")),
        fields={k: v for k, v in event.fields.items() if k != "args"},
        args=list(event.args),
        warnings=list(event.warnings),
        decisions=mark_silenced(decision_records(outcome.plan), outcome.muted),
        steps=[{"kind": s.kind, "rule": s.rule, "outcome": "pending"} for s in outcome.steps],
        errors=list(outcome.errors),
        origin=origin,
        uid=uid,
    )


def throttle_updates(plan: Plan) -> list[ThrottleUpdate]:
    at = plan.event.fields["received"].timestamp()
    return [
        ThrottleUpdate(d.label, d.throttle_key, acted=d.reason is None, at=at)
        for d in plan.decisions
        if d.matched and d.throttle_key is not None
    ]


def expect_matches(plan: Plan, fields: dict[str, Any]) -> list[ExpectMatch]:
    """The expect windows this event re-arms (kept with its journal entry)."""
    at = plan.event.fields["received"].timestamp()
    return [ExpectMatch(hit.rule.label, hit.key, at, fields) for hit in plan.expect_matches]


def digest_items(plan: Plan, fields: dict[str, Any]) -> list[DigestItem]:
    """This event as an item of each digest that collected it (timers.tick sends them)."""
    at = plan.event.fields["received"].timestamp()
    items = []
    for planned in plan.digests:
        option = planned.rule.digest
        assert option is not None
        items.append(
            DigestItem(planned.rule.label, planned.key, at, option.window.total_seconds(), fields)
        )
    return items


def spooled(outcome: Outcome, origin: str, uid: Optional[str]) -> dict[str, Any]:
    """An outcome the journal could not take, as spool data (router.spool)."""
    from router import spool

    fields = outcome.plan.fields
    return spool.decided(
        journal_entry(outcome, origin, uid),
        outcome.outbox,
        throttle_updates(outcome.plan),
        expect_matches(outcome.plan, fields),
        digest_items(outcome.plan, fields),
    )


# ---------------------------------------------------------------------------
# Secrets in what programs print
# ---------------------------------------------------------------------------

_URL_WITH_SECRETS = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>]*[@?][^\s\"'<>]*")
_MASKED_KEYS = ("output", "error", "text")


def target_urls(ruleset: Optional[Ruleset]) -> list[str]:
    """Every URL the ruleset's targets stand for now (the secrets to mask)."""
    from router.delivery import resolve_target

    urls: list[str] = []
    for target in ruleset.targets.values() if ruleset is not None else ():
        try:
            urls.extend(resolve_target(target, Path(target.span.file).parent)[0])
        except Exception:  # noqa: BLE001 - an unresolvable target has no secret to mask
            continue
    return urls


def mask_text(text: str, urls: Iterable[str]) -> str:
    """``text`` without the secrets of ``urls`` and with every URL that
    carries credentials or parameters masked (a program may print one the
    router does not know)."""
    from router.delivery import scrub
    from router.urls import mask_url

    for url in sorted(set(urls), key=len, reverse=True):
        text = scrub(text, url)
    return _URL_WITH_SECRETS.sub(lambda match: mask_url(match.group(0)), text)


def mask_results(
    results: list[dict[str, Any]],
    outbox: Iterable[OutboxItem] = (),
    ruleset: Optional[Ruleset] = None,
    extra: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Steps' outcomes as they may be stored and shown: programs' output and
    errors masked (the URLs of this event's notifications, of every target,
    and ``extra`` ones such as the admin URLs)."""
    urls = [item.url for item in outbox] + target_urls(ruleset) + list(extra)
    masked = []
    for result in results:
        clean = dict(result)
        for key in _MASKED_KEYS:
            if isinstance(clean.get(key), str) and clean[key]:
                clean[key] = mask_text(clean[key], urls)
        masked.append(clean)
    return masked


# ---------------------------------------------------------------------------
# The router's own trouble, to the admin target
# ---------------------------------------------------------------------------

#: The rule label and target name of the router's own notifications.
ADMIN_RULE = "(router)"
ADMIN_TARGET = "admin"


def admin_report(
    store: Store, urls: Iterable[str], title: str, body: str, origin: str, kind: str = "failure"
) -> Optional[int]:
    """Journal the router's own trouble (event ``router``) with one outbox row
    per ``admin`` URL, so it is delivered, retried and shown like any
    notification. Returns the journal id (None without admin URLs)."""
    from router.urls import mask_url

    urls = list(urls)
    if not urls:
        return None
    now = datetime.now()
    host = socket.gethostname()
    entry = JournalEntry(
        received=now,
        name="router",
        identity="router",
        status=kind,
        streak=0,
        host=host,
        fields={"event": "router", "status": kind, "host": host, "received": now, "title": title},
        args=[title],
        origin=origin,
    )
    items = [
        OutboxItem(ADMIN_RULE, ADMIN_TARGET, url, mask_url(url), title, body, kind, "text")
        for url in urls
    ]
    return store.record(entry, items)[0]


BROKEN_RULES_TITLE = "retro-router: the rules have errors; the last good rules stay in force"


def report_broken_rules(
    store: Store, urls: Iterable[str], fingerprint: str, errors: list[str], origin: str
) -> bool:
    """Tell the admin target a rule edit is broken, once per broken version of
    the files, whoever notices first (the service, or a handler when none
    runs). Returns whether this call reported it."""
    urls = list(urls)
    if not urls or not store.meta.remember("reported_broken_rules", fingerprint):
        return False
    admin_report(store, urls, BROKEN_RULES_TITLE, "\n".join(errors), origin)
    return True
