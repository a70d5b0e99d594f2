"""One event through the pipeline: evaluate -> render -> journal + outbox.

This is the code the inline handler, the service and ``router test`` share:
they differ only in whether the result is recorded and who performs the
local steps. Nothing here sends a notification or runs a program; it turns
an event into the rendered notifications and the local steps, and (when
asked) records both in one transaction.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Optional

from router.engine import (
    History,
    Plan,
    PlannedAction,
    Ruleset,
    ThrottleState,
    evaluate,
    identity_of,
)
from router.events import INTERVENTION_FILE, Event
from router.language import nodes as n
from router.steps import DEFAULT_RUN_TIMEOUT, Step
from router.store import (
    DigestItem,
    ExpectMatch,
    JournalEntry,
    OutboxItem,
    Store,
    ThrottleUpdate,
)

#: Without ``type``, a notification's type follows the event's status.
TYPE_FOR_STATUS = {"failure": "failure", "warning": "warning", "success": "success"}


@dataclass
class Notification:
    """A rendered notification for one target (before its URLs are resolved)."""

    rule: str
    target: str
    title: str
    body: str
    type: str
    format: str


@dataclass
class Outcome:
    """What one event turned into."""

    event: Event
    plan: Plan
    identity: str
    streak: int
    notifications: list[Notification]
    steps: list[Step]
    outbox: list[OutboxItem]
    #: Router-side problems (template errors, unresolvable targets, a broken ruleset).
    errors: list[str]
    event_id: Optional[int] = None
    outbox_ids: list[int] = field(default_factory=list)


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def env_value(value: Any) -> str:
    """A field as text for a ``RETRO_*`` environment variable."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        return str(int(seconds)) if seconds == int(seconds) else str(seconds)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def retro_variables(fields: dict[str, Any]) -> dict[str, str]:
    """Every field as ``RETRO_FIELD`` (upper case), as ``run`` promises (docs/rules.md)."""
    return {f"RETRO_{name.upper()}": env_value(value) for name, value in fields.items()}


_TEMPLATE_MARK = re.compile(r"{[{%]")


def confined_path(
    source: str, rendered: str, base_dir: Optional[Path]
) -> tuple[str, Optional[str]]:
    """The file a ``log ... to`` path names, and why it may not be written
    (or None).

    A path without template marks is taken as written (relative to the rule
    file). A rendered one must stay inside the directory its literal part
    names: event values are data, never a path of their own, so a client
    called ``../../etc/x`` cannot move the file out of ``/var/log/backup/``.
    """

    def absolute(text: str) -> str:
        if base_dir is not None and not os.path.isabs(text):
            text = os.path.join(str(base_dir), text)
        return os.path.normpath(text)

    if "\0" in rendered:
        return rendered, "the path has a NUL character"
    mark = _TEMPLATE_MARK.search(source)
    if mark is None:
        return absolute(rendered), None
    literal = source[: mark.start()]
    root = absolute(literal if literal.endswith(("/", os.sep)) else os.path.dirname(literal) or ".")
    path = absolute(rendered)
    parts = rendered.replace(os.sep, "/").split("/")
    if ".." in parts or os.path.commonpath([root, path]) != root or path == root:
        return path, f"the rendered path {rendered!r} leaves {root}"
    return path, None


class Renderer:
    """Renders one plan's templates, collecting errors instead of raising."""

    def __init__(
        self,
        ruleset: Ruleset,
        event: Event,
        fields: dict[str, Any],
        history: History,
        run_env: tuple[str, ...] = (),
    ):
        from router.templates import event_variables

        self.ruleset = ruleset
        self.event = event
        self.fields = fields
        self.previous = history.previous
        self.run_env = list(run_env)
        self.errors: list[str] = []
        self._variables = event_variables
        self._env = retro_variables(fields)

    def source(self, template: Optional[n.Template], default: str) -> str:
        if template is None:
            return default
        if template.path is not None:
            return self.ruleset.template_files.get(template, "")
        return template.source

    def text(
        self,
        template: Optional[n.Template],
        variables: dict[str, Any],
        message: str = "",
        part: str = "body",
        one_line: bool = False,
    ) -> str:
        """``template`` rendered; without one, ``part`` of the built-in
        ``message`` (default: the event's). Errors are kept, never raised."""
        from router.templates import render, render_message, render_title

        if template is None:
            rendered = render_message(message or self.event.name, part, variables)
        else:
            rendered = (render_title if one_line else render)(self.source(template, ""), variables)
        if rendered.error:
            where = f"{template.span}" if template is not None else "built-in message"
            self.errors.append(f"template error at {where}: {rendered.error}")
        return rendered.text

    def exact(self, template: n.Template, variables: dict[str, Any]) -> tuple[str, Optional[str]]:
        """A template that must render exactly (a program argument, a path):
        a variable the event lacks is an error, and an error means no text."""
        from router.templates import render

        rendered = render(self.source(template, ""), variables, strict=True)
        if rendered.error:
            message = f"{template.source!r} at {template.span}: {rendered.error}"
            self.errors.append(f"template error at {template.span}: {rendered.error}")
            return "", message
        return rendered.text, None

    def variables(self, planned: PlannedAction) -> dict[str, Any]:
        return self._variables(self.fields, self.previous, planned.variables)

    def notifications(
        self,
        planned: PlannedAction,
        action: n.Notify,
        message: str = "",
        default_type: Optional[str] = None,
    ) -> list[Notification]:
        """One notification per target of ``action``. Without title or body,
        the built-in ``message`` (default: the event's); without ``type``,
        ``default_type`` (default: from the event's status)."""
        variables = self.variables(planned)
        title = self.text(action.title, variables, message, "title", one_line=True)
        body = self.text(action.body, variables, message, "body")
        status = str(self.fields.get("status", "info"))
        default = default_type or TYPE_FOR_STATUS.get(status, "info")
        kind = action.type[0] if action.type else default
        body_format = action.format[0] if action.format else "text"
        return [
            Notification(planned.rule.label, name, title, body, kind, body_format)
            for name, _ in action.targets
        ]

    def step(self, planned: PlannedAction, action: n.Action) -> Optional[Step]:
        variables = self.variables(planned)
        label = planned.rule.label
        if isinstance(action, n.Run):
            argv: list[str] = []
            problem = None
            for template in (action.program, *action.args):
                text, problem = self.exact(template, variables)
                if problem is not None:
                    break
                argv.append(text)
            timeout = action.timeout.total_seconds() if action.timeout else DEFAULT_RUN_TIMEOUT
            fallback = self.step(planned, action.fallback) if action.fallback else None
            return Step(
                "run",
                label,
                argv=[] if problem else argv,
                env=dict(self._env),
                pass_env=self.run_env,
                timeout=timeout,
                fallback=fallback,
                error=f"not started: {problem}" if problem else None,
            )
        if isinstance(action, n.Abort):
            path = self.fields.get(INTERVENTION_FILE)
            text = self.text(action.text, variables)
            return Step("abort", label, text=text, path=str(path) if path else None)
        if isinstance(action, n.Log):
            text = self.text(action.text, variables)
            if action.path is None:
                return Step("log", label, text=text)
            rendered, problem = self.exact(action.path, variables)
            base = Path(planned.rule.rule.span.file).parent if planned.rule.rule.span.file else None
            path = None
            if problem is None:
                path, problem = confined_path(action.path.source, rendered, base)
                if problem:
                    self.errors.append(f"log path at {action.path.span}: {problem}")
            error = f"not written: {problem}" if problem else None
            return Step("log", label, text=text, path=path, error=error)
        return None  # stop: already applied by evaluate()


def render_plan(
    ruleset: Ruleset,
    plan: Plan,
    fields: dict[str, Any],
    history: History,
    run_env: tuple[str, ...] = (),
) -> tuple[list[Notification], list[Step], list[str]]:
    """Every planned action rendered; one that fails in an unexpected way
    costs only itself (its error is kept), never another rule its action."""
    renderer = Renderer(ruleset, plan.event, fields, history, run_env)
    notifications: list[Notification] = []
    steps: list[Step] = []
    for planned in plan.actions:
        try:
            if isinstance(planned.action, n.Notify):
                notifications.extend(renderer.notifications(planned, planned.action))
            else:
                step = renderer.step(planned, planned.action)
                if step is not None:
                    steps.append(step)
        except Exception as exc:  # noqa: BLE001 - isolate one rule's failure
            renderer.errors.append(
                f"rule {planned.rule.label}: {type(planned.action).__name__.lower()}"
                f" at {planned.action.span} failed: {type(exc).__name__}: {exc}"
            )
    return notifications, steps, renderer.errors


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
) -> Outcome:
    """Evaluate and render ``event``; when ``record``, journal it with its
    outbox rows in one transaction. ``store`` None means no history (a dry
    run on a machine with no state yet, or a store that cannot be used)."""
    identity = identity_of(event)
    errors = list(extra_errors or [])
    history = History()
    if store is not None:
        try:
            history = store.journal.history(event.name, identity)
        except Exception as exc:  # noqa: BLE001 - decide without history, say so
            errors.append(f"history unavailable ({type(exc).__name__}: {exc}): previous is empty")

    def throttles(rule: str, key: str) -> ThrottleState:
        if store is None:
            return ThrottleState()
        try:
            return store.state.throttle(rule, key)
        except Exception:  # noqa: BLE001 - the history error above says it
            return ThrottleState()

    plan = evaluate(ruleset, event, history, throttles, explain=explain)
    fields = dict(event.fields)
    streak = history.streak_for(str(fields.get("status")))
    fields["streak"] = streak
    notifications, steps, render_errors = render_plan(ruleset, plan, fields, history, run_env)
    items, problems = outbox_items(ruleset, notifications)
    errors += plan.errors + render_errors + problems
    outcome = Outcome(event, plan, identity, streak, notifications, steps, items, errors)
    if record and store is not None:
        record_outcome(store, outcome, origin, uid)
    return outcome


def record_outcome(store: Store, outcome: Outcome, origin: str, uid: Optional[str] = None) -> None:
    """Journal an outcome with its outbox rows, throttles, expect matches and
    digest items, in one transaction (idempotent per ``uid``)."""
    fields = dict(outcome.event.fields, streak=outcome.streak)
    outcome.event_id, outcome.outbox_ids = store.record(
        journal_entry(outcome, origin, uid),
        outcome.outbox,
        throttle_updates(outcome.plan),
        expect_matches=expect_matches(outcome.plan, fields),
        digest_items=digest_items(outcome.plan, fields),
    )


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
        decisions=[asdict(d) for d in outcome.plan.decisions],
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

    fields = dict(outcome.event.fields, streak=outcome.streak)
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
