"""The ruleset as a whole: targets, defines and rules, each statement
visited once, and the names shared across files (duplicates, unused)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from router.actions import Action
from router.catalog import EVENTS, canonical_name
from router.checker.actions import ActionCheck
from router.checker.conditions import ConditionChecker, warn_outside_runs
from router.checker.files import REFUSAL_HINT, permission_problem
from router.checker.report import Checking, CheckingVisitor
from router.checker.reuse import FileCheck, FileChecks, self_contained, shared_names_key
from router.checker.scope import ANY_EVENT, Scope, template_variables
from router.language import nodes as n
from router.suggest import did_you_mean


class RulesetChecker(CheckingVisitor):
    """Walks every statement of every file once, collecting Diagnostics."""

    def __init__(self, checking: Checking) -> None:
        super().__init__(checking)
        self.conditions = ConditionChecker(checking)

    def run(self, files: list[n.RuleFile], memo: Optional[FileChecks] = None) -> None:
        """Check ``files`` as one ruleset. ``memo``: files checked before
        (a reload): one whose text and shared names are as they were is not
        checked again; what its check found is taken from there."""
        # A rule that did not parse may be the one using a target or define:
        # "never used" would then send the admin after the wrong problem.
        unparsed = any(d.code in ("syntax", "encoding") for d in self.checking.diagnostics)
        self.collect_names(files)
        shared = shared_names_key(self.checking) if memo is not None else ""
        keys = set()
        for rule_file in files:
            self.checking.base_dir = Path(rule_file.path).parent
            key = f"{rule_file.path}\0{rule_file.text}\0{shared}"
            keys.add(key)
            found = memo.get(key) if memo is not None else None
            if found is not None:
                found.apply(self.checking)
                continue
            checked = FileCheck.record(self.checking, lambda f=rule_file: self.visit_file(f))
            if memo is not None and self_contained(rule_file):
                memo[key] = checked
        if memo is not None:  # what no file is any more
            for key in [k for k in memo if k not in keys]:
                del memo[key]
        self.check_rule_names(files)
        if not unparsed:
            self.report_unused()

    def visit_file(self, rule_file: n.RuleFile) -> None:
        for statement in rule_file.statements:
            self.visit(statement)

    # -- names shared by every file

    def collect_names(self, files: list[n.RuleFile]) -> None:
        """Targets and defines are shared by every file, so gather them first."""
        checking = self.checking
        field_names = set(ANY_EVENT.all_fields)
        for rule_file in files:
            for statement in rule_file.statements:
                if not isinstance(statement, (n.TargetDef, n.Define)):
                    continue
                is_target = isinstance(statement, n.TargetDef)
                first = checking.targets.get(statement.name) or checking.defines.get(statement.name)
                if first is not None:
                    checking.error(
                        statement.name_span,
                        "duplicate-name",
                        f"'{statement.name}' is already defined at {first.name_span}",
                        "give each target and define its own name",
                    )
                elif not is_target and statement.name in field_names:
                    checking.error(
                        statement.name_span,
                        "duplicate-name",
                        f"define '{statement.name}' has the name of an event field",
                        "choose another name, so conditions stay unambiguous",
                    )
                elif is_target:
                    checking.targets[statement.name] = statement
                else:
                    checking.defines[statement.name] = statement

    def check_rule_names(self, files: list[n.RuleFile]) -> None:
        seen: dict[str, n.Rule] = {}
        for rule_file in files:
            for rule in rule_file.statements:
                if not isinstance(rule, n.Rule) or rule.name is None:
                    continue
                if rule.name in seen:
                    self.checking.error(
                        rule.span,
                        "duplicate-name",
                        f"rule name '{rule.name}' is already used at {seen[rule.name].span}",
                        "rule names identify rules in the journal and in replay --expect",
                    )
                else:
                    seen[rule.name] = rule

    def report_unused(self) -> None:
        checking = self.checking
        for name, target in checking.targets.items():
            if name not in checking.used_targets:
                checking.warning(
                    target.name_span, "unused-target", f"target '{name}' is never notified"
                )
        for name, define in checking.defines.items():
            if name not in checking.used_defines:
                checking.warning(
                    define.name_span, "unused-define", f"define '{name}' is never used"
                )

    # -- targets

    def visit_TargetDef(self, target: n.TargetDef) -> None:
        for source in target.sources:
            self.visit(source)

    def visit_Source(self, source: n.Source) -> None:
        from router.notifiers import problem as url_problem
        from router.urls import mask_url

        if source.kind == "url":
            problem = url_problem(source.value)
            if problem:
                self.checking.error(
                    source.span,
                    "bad-url",
                    f"'{mask_url(source.value)}' is not a usable Apprise URL: {problem}",
                    "see the Apprise wiki for the URL form of each service",
                )
        elif source.kind == "env":
            self.check_env_source(source)
        else:
            self.check_config_source(source)

    def check_env_source(self, source: n.Source) -> None:
        from router.notifiers import problem as url_problem
        from router.urls import mask_url

        value = os.environ.get(source.value)
        if not value:
            self.checking.warning(
                source.span,
                "unset-env",
                f"environment variable {source.value} is not set here",
                "it is read when the rule runs; set it in the router's environment",
            )
            return
        for url in filter(None, re.split(r"[\s,]+", value)):
            problem = url_problem(url)
            if problem:
                # A warning: the variable is read when the rule runs, and a bad
                # value then costs only this target, never the whole ruleset.
                self.checking.warning(
                    source.span,
                    "bad-url",
                    f"{source.value} holds '{mask_url(url)}', not a usable Apprise URL: {problem}",
                    "the other targets and rules are unaffected; fix the variable",
                )

    def check_config_source(self, source: n.Source) -> None:
        path = self.checking.base_dir / source.value
        if not path.is_file():
            self.checking.warning(
                source.span,
                "missing-config",
                f"Apprise config file '{source.value}' does not exist",
                "relative paths are relative to the rule file",
            )
            return
        refused = permission_problem(path)
        if refused:
            self.checking.error(
                source.span, "insecure-permissions", f"refused: {refused}", REFUSAL_HINT
            )
            return
        if source.tag is None:
            return
        import apprise

        config = apprise.AppriseConfig()
        config.add(str(path))
        # Apprise 2 renamed AppriseConfig.servers() to services().
        entries = getattr(config, "services", None) or config.servers
        tags = {str(tag) for server in entries() for tag in server.tags}  # AppriseTag in 2.x
        if source.tag not in tags:
            self.checking.warning(
                source.span,
                "unknown-tag",
                f"no entry of '{source.value}' has the tag '{source.tag}'"
                + did_you_mean(source.tag, tags),
            )

    # -- defines and rules

    def visit_Define(self, define: n.Define) -> None:
        self.conditions.check(define.condition, ANY_EVENT, (define.name,))

    def visit_Rule(self, rule: n.Rule) -> None:
        events = self.rule_events(rule)
        if rule.events and not events:
            return  # every event unknown: field checks would only repeat the error
        scope = Scope(events)
        if rule.condition is not None:
            self.conditions.check(rule.condition, scope)
        if rule.every is not None:
            self.checking.check_window(rule.every, rule.span, "every")
        if rule.within is not None:
            self.check_hung_run(rule)
        if rule.at is not None:
            self.check_schedule(rule)
        variables = template_variables(rule, scope)
        actions = ActionCheck(self.checking, rule, scope, variables, self.check_action)
        for action in rule.actions:
            self.check_action(action, actions)
        seen: dict[str, n.Throttle] = {}
        for option in rule.options:
            self.visit(option, scope, rule, seen)

    def check_hung_run(self, rule: n.Rule) -> None:
        """``expect EVENTS within D after StartScript``: a run's start (the
        only event a run is known to start with) and how long it may take."""
        assert rule.within is not None and rule.after is not None
        self.checking.check_window(rule.within, rule.span, "within")
        name, span = rule.after
        if canonical_name(name) != "StartScript":
            self.checking.error(
                span,
                "bad-after",
                f"'within ... after {name}': a run is watched from its StartScript",
                "write: expect EndScript within 12h after StartScript",
            )

    def check_schedule(self, rule: n.Rule) -> None:
        """``at "CRON" [tz "ZONE"]``: an expression cronsim takes, a zone
        this machine knows (docs/rules.md, "Schedules")."""
        from router.schedules import cron_problem, zone_problem

        assert rule.at is not None
        problem = cron_problem(str(rule.at.value))
        if problem is not None:
            self.checking.error(
                rule.at.span,
                "bad-cron",
                f"not a cron expression: {problem}",
                'five fields: minute hour day-of-month month day-of-week, as in "0 2 * * 1-5"',
            )
        if rule.tz is not None:
            problem = zone_problem(str(rule.tz.value))
            if problem is not None:
                self.checking.error(
                    rule.tz.span,
                    "bad-zone",
                    problem + did_you_mean(str(rule.tz.value), _zones()),
                    'an IANA zone name, as in "Europe/Paris" or "America/New_York"',
                )

    def rule_events(self, rule: n.Rule) -> list[str]:
        """The rule's events by their canonical names; unknown ones reported."""
        events: list[str] = []
        for name, span in rule.events:
            canonical = canonical_name(name)
            if canonical is None:
                self.checking.error(
                    span,
                    "unknown-event",
                    f"unknown event '{name}'" + did_you_mean(name, EVENTS),
                    "`router events` lists every event",
                )
            elif canonical in events:
                self.checking.warning(span, "duplicate-event", f"event '{name}' is listed twice")
            else:
                events.append(canonical)  # aliases resolve, as the handler resolves them
        return events

    def visit_Throttle(
        self, option: n.Throttle, scope: Scope, rule: n.Rule, seen: dict[str, n.Throttle]
    ) -> None:
        """``throttle`` and ``digest``: once each, a window above zero, known ``by`` fields."""
        if option.kind in seen:
            self.checking.error(option.span, "duplicate-option", f"'{option.kind}' is given twice")
        seen[option.kind] = option
        self.checking.check_window(option.window, option.span, option.kind)
        for by_field in option.by:
            if by_field.path == ("run",):
                warn_outside_runs(self.checking, by_field, scope)
            else:
                self.conditions.check_field(by_field, scope)
        if option.kind == "digest" and not any(a.notifies for a in rule.actions):
            self.checking.warning(
                option.span,
                "digest-without-notify",
                "digest collects notifications, and this rule sends none",
            )

    def check_action(self, action: Action, context: ActionCheck) -> None:
        """Refused in an expect rule if its kind says so; then its kind's checks."""
        if not isinstance(action, Action):
            self.generic_visit(action)
            return
        refusal = action.refused_in_expect if context.is_expect else None
        if refusal is not None:
            code, message, hint = refusal
            self.checking.error(action.span, code, message, hint)
        action.check(context)


def _zones() -> list[str]:
    """Every zone name this machine knows (for a suggestion)."""
    from zoneinfo import available_timezones

    return sorted(available_timezones())
