"""One event through the pipeline: evaluate -> render -> journal + outbox.

This is the code the inline handler, the service and ``router test`` share:
they differ only in whether the result is recorded and who performs the
local steps. Nothing here sends a notification or runs a program; it turns
an event into the rendered notifications and the local steps, and (when
asked) records both in one transaction.
"""

from __future__ import annotations

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
from router.store import (
    DigestItem,
    ExpectMatch,
    JournalEntry,
    OutboxItem,
    Store,
    ThrottleUpdate,
)

DEFAULT_RUN_TIMEOUT = 300.0
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
class LocalStep:
    """Something that must happen on the engine's machine, in the handler.

    Plain data (it crosses the service's socket in the thin-handler path).
    """

    kind: str  # "run", "abort" or "log"
    rule: str
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_RUN_TIMEOUT
    fallback: Optional[LocalStep] = None
    #: The abort reason, or the log line.
    text: str = ""
    #: The intervention file (abort) or log file (log); None for the router's event log.
    path: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LocalStep:
        data = dict(data)
        if data.get("fallback"):
            data["fallback"] = cls.from_json(data["fallback"])
        return cls(**data)


@dataclass
class Outcome:
    """What one event turned into."""

    event: Event
    plan: Plan
    identity: str
    streak: int
    notifications: list[Notification]
    steps: list[LocalStep]
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


def program_environment(fields: dict[str, Any]) -> dict[str, str]:
    """Every field as ``RETRO_FIELD`` (upper case), as LANGUAGE.md's ``run`` promises."""
    return {f"RETRO_{name.upper()}": env_value(value) for name, value in fields.items()}


class Renderer:
    """Renders one plan's templates, collecting errors instead of raising."""

    def __init__(self, ruleset: Ruleset, event: Event, fields: dict[str, Any], history: History):
        from router.templates import event_variables

        self.ruleset = ruleset
        self.event = event
        self.fields = fields
        self.previous = history.previous
        self.errors: list[str] = []
        self._variables = event_variables
        self._env = program_environment(fields)

    def text(
        self,
        template: Optional[n.Template],
        variables: dict[str, Any],
        default: str,
        one_line: bool = False,
    ) -> str:
        from router.templates import render, render_title

        if template is None:
            source = default
        elif template.path is not None:
            source = self.ruleset.template_files.get(template, "")
        else:
            source = template.source
        rendered = (render_title if one_line else render)(source, variables)
        if rendered.error:
            where = f"{template.span}" if template is not None else "default message"
            self.errors.append(f"template error at {where}: {rendered.error}")
        return rendered.text

    def variables(self, planned: PlannedAction) -> dict[str, Any]:
        return self._variables(self.fields, self.previous, planned.variables)

    def notifications(self, planned: PlannedAction, action: n.Notify) -> list[Notification]:
        from router.templates import default_message

        variables = self.variables(planned)
        default_title, default_body = default_message(self.event.name)
        title = self.text(action.title, variables, default_title, one_line=True)
        body = self.text(action.body, variables, default_body)
        status = str(self.fields.get("status", "info"))
        kind = action.type[0] if action.type else TYPE_FOR_STATUS.get(status, "info")
        body_format = action.format[0] if action.format else "text"
        return [
            Notification(planned.rule.label, name, title, body, kind, body_format)
            for name, _ in action.targets
        ]

    def step(self, planned: PlannedAction, action: n.Action) -> Optional[LocalStep]:
        variables = self.variables(planned)
        label = planned.rule.label
        if isinstance(action, n.Run):
            argv = [self.text(t, variables, "") for t in (action.program, *action.args)]
            timeout = action.timeout.total_seconds() if action.timeout else DEFAULT_RUN_TIMEOUT
            fallback = self.step(planned, action.fallback) if action.fallback else None
            return LocalStep(
                "run", label, argv=argv, env=dict(self._env), timeout=timeout, fallback=fallback
            )
        if isinstance(action, n.Abort):
            path = self.fields.get(INTERVENTION_FILE)
            text = self.text(action.text, variables, "")
            return LocalStep("abort", label, text=text, path=str(path) if path else None)
        if isinstance(action, n.Log):
            path = self.text(action.path, variables, "") if action.path else None
            if path and planned.rule.rule.span.file and not Path(path).is_absolute():
                path = str(Path(planned.rule.rule.span.file).parent / path)
            return LocalStep("log", label, text=self.text(action.text, variables, ""), path=path)
        return None  # stop: already applied by evaluate()


def render_plan(
    ruleset: Ruleset, plan: Plan, fields: dict[str, Any], history: History
) -> tuple[list[Notification], list[LocalStep], list[str]]:
    renderer = Renderer(ruleset, plan.event, fields, history)
    notifications: list[Notification] = []
    steps: list[LocalStep] = []
    for planned in plan.actions:
        if isinstance(planned.action, n.Notify):
            notifications.extend(renderer.notifications(planned, planned.action))
        else:
            step = renderer.step(planned, planned.action)
            if step is not None:
                steps.append(step)
    return notifications, steps, renderer.errors


# ---------------------------------------------------------------------------
# The whole path for one event
# ---------------------------------------------------------------------------


def outbox_items(
    ruleset: Ruleset, notifications: list[Notification]
) -> tuple[list[OutboxItem], list[str]]:
    """One outbox item per destination URL of each notification's target."""
    from router.delivery import resolve_target
    from router.urls import mask_url

    items: list[OutboxItem] = []
    problems: list[str] = []
    resolved: dict[str, list[str]] = {}
    for note in notifications:
        if note.target not in resolved:
            target = ruleset.targets.get(note.target)
            if target is None:
                problems.append(f"target '{note.target}' is not defined")
                resolved[note.target] = []
                continue
            urls, target_problems = resolve_target(target, Path(target.span.file).parent)
            problems.extend(f"target '{note.target}': {p}" for p in target_problems)
            resolved[note.target] = urls
        for url in resolved[note.target]:
            items.append(
                OutboxItem(
                    note.rule,
                    note.target,
                    url,
                    mask_url(url),
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
) -> Outcome:
    """Evaluate and render ``event``; when ``record``, journal it with its
    outbox rows in one transaction. ``store`` None means no history (a dry
    run on a machine with no state yet)."""
    identity = identity_of(event)
    history = store.history(event.name, identity) if store is not None else History()

    def throttles(rule: str, key: str) -> ThrottleState:
        return store.throttle_state(rule, key) if store is not None else ThrottleState()

    plan = evaluate(ruleset, event, history, throttles, explain=explain)
    fields = dict(event.fields)
    streak = history.streak_for(str(fields.get("status")))
    fields["streak"] = streak
    notifications, steps, errors = render_plan(ruleset, plan, fields, history)
    items, problems = outbox_items(ruleset, notifications)
    errors = list(extra_errors or []) + errors + problems
    outcome = Outcome(event, plan, identity, streak, notifications, steps, items, errors)
    if record and store is not None:
        outcome.event_id, outcome.outbox_ids = store.record_event(
            journal_entry(outcome, origin, uid),
            items,
            throttle_updates(plan),
            expect_matches=expect_matches(plan, fields),
            digest_items=digest_items(plan, fields),
        )
    return outcome


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
