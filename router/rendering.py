"""A plan's actions rendered: templates -> Notifications and local Steps.

Each action kind renders itself (``router/actions/``) through an
``ActionRendering``: the event's fields and variables for one planned
action, the templates, and the list where errors are kept. A template
error never raises: it is kept with the event, and the action goes out with
what did render (a ``run`` argument or a path that must render exactly is
not used at all).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Optional

from router.actions import Action, Notification, Step
from router.actions.notify import TYPE_FOR_STATUS
from router.catalog import INTERVENTION_FILE
from router.engine import History, Plan, PlannedAction, Ruleset
from router.events import Event
from router.language import nodes as n


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
    """Every field as ``RETRO_FIELD`` (upper case), as ``run`` promises."""
    return {f"RETRO_{name.upper()}": env_value(value) for name, value in fields.items()}


class Renderer:
    """Renders one event's (or one timer's) planned actions.

    ``message`` is the built-in message used where a notify has no title or
    body (default: the event's own; timers use ``_expect`` and ``_digest``),
    ``default_type`` a notify's type where it gives none (default: from the
    event's status).
    """

    def __init__(
        self,
        ruleset: Ruleset,
        event: Event,
        fields: dict[str, Any],
        history: History,
        run_env: tuple[str, ...] = (),
        message: str = "",
        default_type: Optional[str] = None,
    ) -> None:
        self.ruleset = ruleset
        self.event = event
        self.fields = fields
        self.previous = history.previous
        self.run_env = list(run_env)
        self.message = message or event.name
        status = str(fields.get("status", "info"))
        self.default_type = default_type or TYPE_FOR_STATUS.get(status, "info")
        self.retro_env = retro_variables(fields)
        path = fields.get(INTERVENTION_FILE)
        self.intervention_file = str(path) if path else None
        self.errors: list[str] = []

    def render(self, planned: PlannedAction) -> list[Any]:
        """What one planned action turns into (Notifications, Steps)."""
        return planned.action.render(ActionRendering(self, planned))

    def source(self, template: n.Template) -> str:
        if template.path is not None:
            return self.ruleset.template_files.get(template, "")
        return template.source


class ActionRendering:
    """What an action kind sees while it renders (``RenderContext``)."""

    def __init__(self, renderer: Renderer, planned: PlannedAction) -> None:
        from router.templates import event_variables

        self.renderer = renderer
        self.planned = planned
        self.rule = planned.rule.label
        span_file = planned.rule.rule.span.file
        self.rule_dir = Path(span_file).parent if span_file else None
        self.default_type = renderer.default_type
        self.retro_env = renderer.retro_env
        self.run_env = renderer.run_env
        self.intervention_file = renderer.intervention_file
        self.variables = event_variables(renderer.fields, renderer.previous, planned.variables)

    def text(
        self, template: Optional[n.Template], part: str = "body", one_line: bool = False
    ) -> str:
        """``template`` rendered; without one, ``part`` of the built-in message."""
        from router.templates import render, render_message, render_title

        renderer = self.renderer
        if template is None:
            rendered = render_message(renderer.message, part, self.variables)
        else:
            render_text = render_title if one_line else render
            rendered = render_text(renderer.source(template), self.variables)
        if rendered.error:
            where = f"{template.span}" if template is not None else "built-in message"
            self.error(f"template error at {where}: {rendered.error}")
        return rendered.text

    def exact(self, template: n.Template) -> tuple[str, Optional[str]]:
        """A template that must render exactly (a program argument, a path):
        a variable the event lacks is an error, and an error means no text."""
        from router.templates import render

        rendered = render(self.renderer.source(template), self.variables, strict=True)
        if rendered.error:
            self.error(f"template error at {template.span}: {rendered.error}")
            return "", f"{template.source!r} at {template.span}: {rendered.error}"
        return rendered.text, None

    def error(self, message: str) -> None:
        self.renderer.errors.append(message)

    def render(self, action: Action) -> list[Any]:
        return action.render(self)


def render_plan(
    ruleset: Ruleset,
    plan: Plan,
    history: History,
    run_env: tuple[str, ...] = (),
) -> tuple[list[Notification], list[Step], list[str]]:
    """Every planned action rendered; one that fails in an unexpected way
    costs only itself (its error is kept), never another rule its action."""
    renderer = Renderer(ruleset, plan.event, plan.fields, history, run_env)
    notifications, steps = render_all(renderer, plan.actions)
    return notifications, steps, renderer.errors


def render_all(
    renderer: Renderer, planned_actions: list[PlannedAction]
) -> tuple[list[Notification], list[Step]]:
    """The planned actions rendered in order, split into notifications and steps."""
    notifications: list[Notification] = []
    steps: list[Step] = []
    for planned in planned_actions:
        try:
            products = renderer.render(planned)
        except Exception as exc:  # noqa: BLE001 - isolate one rule's failure
            renderer.errors.append(
                f"rule {planned.rule.label}: {planned.action.keyword}"
                f" at {planned.action.span} failed: {type(exc).__name__}: {exc}"
            )
            continue
        notifications.extend(p for p in products if isinstance(p, Notification))
        steps.extend(p for p in products if isinstance(p, Step))
    return notifications, steps
