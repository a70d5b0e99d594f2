"""What an action kind sees while ``router check`` checks it: the
``CheckContext`` of ``router/actions/contexts.py``. The kinds do their own
checks (``Action.check``); this is their view of the rule and the ruleset."""

from __future__ import annotations

from datetime import timedelta
from typing import Callable, Optional

from router.actions import Action
from router.catalog import EVENTS
from router.checker.files import REFUSAL_HINT
from router.checker.report import Checking
from router.checker.scope import Scope, Variables
from router.checker.templates import TemplateChecker
from router.language import nodes as n
from router.suggest import did_you_mean


class ActionCheck:
    """One rule's actions being checked."""

    catalog = EVENTS

    def __init__(
        self,
        checking: Checking,
        rule: n.Rule,
        scope: Scope,
        variables: Variables,
        check_action: Callable[[Action, ActionCheck], None],
    ) -> None:
        self.checking = checking
        self._check_action = check_action
        self.rule = rule
        self.variables = variables
        self.events = scope.events
        self.base_dir = self.checking.base_dir
        self.is_expect = rule.is_expect
        self.templates = TemplateChecker(self.checking)

    def error(self, span: n.Span, code: str, message: str, hint: Optional[str] = None) -> None:
        self.checking.error(span, code, message, hint)

    def warning(self, span: n.Span, code: str, message: str, hint: Optional[str] = None) -> None:
        self.checking.warning(span, code, message, hint)

    def refuse(self, span: n.Span, reason: str) -> None:
        self.checking.error(span, "insecure-permissions", f"refused: {reason}", REFUSAL_HINT)

    def check_template(self, template: n.Template) -> None:
        self.templates.check(template, self.variables)

    def check_action(self, action: Action) -> None:
        self._check_action(action, self)

    def check_window(self, window: Optional[timedelta], span: n.Span, what: str) -> None:
        self.checking.check_window(window, span, what)

    def use_target(self, name: str, span: n.Span) -> None:
        checking = self.checking
        if name in checking.targets:
            checking.used_targets.add(name)
            return
        checking.error(
            span,
            "unknown-target",
            f"unknown target '{name}'" + did_you_mean(name, checking.targets),
            'declare it: target NAME = "apprise://url"',
        )
