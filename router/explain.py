"""What one event would do, explained: ``router test``'s report.

The report is plain data first (``report``), printed as text (``text``) or
as JSON (``router test --format json``) from the same dict, so the two
formats always say the same thing. It is built from the Outcome that
``dispatch.process`` returns for a dry run: nothing here evaluates,
records, sends or runs anything.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Optional

from router.catalog import fields_of
from router.dispatch import Outcome
from router.engine import ExpectHit
from router.engine.silences import silenced_rules
from router.steps import describe
from router.templates import duration_filter
from router.timers import next_due


def _type_name(outcome: Outcome, name: str, value: Any) -> str:
    """The field's type as docs/events.md names it; says so when a value
    arrived as text that did not parse."""
    event = outcome.event
    spec = fields_of(event.name).get(name) if event.known else None
    if spec is not None:
        if isinstance(value, str) and spec.type not in ("str", "path"):
            return f"str (not a valid {spec.type})"
        return spec.type
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, timedelta):
        return "duration"
    return type(value).__name__


def _plain(value: Any) -> Any:
    """A field's value as JSON can hold it: dates as ISO text, durations in seconds."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _window(seconds: float) -> str:
    return duration_filter(seconds)


def report(
    outcome: Outcome, collected: Optional[dict[tuple[str, str], int]] = None
) -> dict[str, Any]:
    """Everything ``router test`` says about one event, as plain data.
    ``collected``: how many events each (digest rule, key) already holds."""
    collected = collected or {}
    event = outcome.event
    plan = outcome.plan
    fields = dict(event.fields, streak=outcome.streak)
    digests = {d.rule.label: d for d in plan.digests}
    muted_rules = silenced_rules(outcome.muted)
    rules = []
    for decision in plan.decisions:
        entry: dict[str, Any] = {"rule": decision.label, "matched": decision.matched}
        if decision.reason is not None:
            entry["reason"] = decision.reason
        if decision.reason == "throttled":
            entry["held_back"] = decision.suppressed
        if decision.label in muted_rules:
            entry["silenced_by"] = muted_rules[decision.label]
        digest = digests.get(decision.label)
        if digest is not None and digest.rule.digest is not None:
            entry["digest"] = {
                "window": "run"
                if digest.rule.digest.per_run
                else digest.rule.digest.window.total_seconds(),
                "key": digest.key,
                "targets": [name for action in digest.actions for name, _ in action.targets],
                "collected": collected.get((decision.label, digest.key), 0),
            }
        rules.append(entry)
    urls: dict[tuple[str, str], list[str]] = {}
    for item in outcome.outbox:
        urls.setdefault((item.rule, item.target), []).append(item.url_masked)
    silenced = {(m.rule, m.target): m.silence for m in outcome.muted}
    return {
        "event": {
            "name": event.name,
            "known": event.known,
            "fields": {
                name: {"type": _type_name(outcome, name, value), "value": _plain(value)}
                for name, value in fields.items()
            },
            "warnings": list(event.warnings),
        },
        "run": _plain(plan.fields.get("run")),
        "rules": rules,
        "stopped_by": plan.stopped_by,
        "expectations": [_expectation(hit, event) for hit in plan.expect_matches],
        "notifications": [
            {
                "rule": note.rule,
                "target": note.target,
                "urls": sorted(urls.get((note.rule, note.target), [])),
                "type": note.type,
                "format": note.format,
                "title": note.title,
                "body": note.body,
                "silenced_by": silenced.get((note.rule, note.target)),
            }
            for note in outcome.notifications
        ],
        "steps": [
            {k: v for k, v in step.to_json().items() if k != "env"} for step in outcome.steps
        ],
        "errors": list(outcome.errors),
    }


def _expectation(hit: ExpectHit, event: Any) -> dict[str, Any]:
    """An expectation this event meets, and when it next wants a match."""
    entry: dict[str, Any] = {"rule": hit.rule.label, "key": hit.key.replace("\x1f", " / ")}
    rule = hit.rule.rule
    if rule.at is not None:
        entry["at"] = str(rule.at.value)
        entry["tz"] = str(rule.tz.value) if rule.tz is not None else None
    due = next_due(hit.rule, event.fields["received"].timestamp())
    if due is not None:
        entry["next"] = {"expected": _plain(due[0]), "deadline": _plain(due[1])}
    return entry


def _expectation_line(hit: dict[str, Any]) -> str:
    key = f" ({hit['key']})" if hit["key"] else ""
    line = f"  {hit['rule']}: expects this event: its window{key} starts again"
    due = hit.get("next")
    if due is None:
        return line
    schedule = ""
    if "at" in hit:
        schedule = f' (at "{hit["at"]}"' + (f" tz {hit['tz']})" if hit["tz"] else ")")
    return (
        f"{line}; next expected {due['expected'][:16]}{schedule},"
        f" missed if none by {due['deadline'][:16]}"
    )


def _shown(field: dict[str, Any]) -> str:
    value, kind = field["value"], field["type"]
    if kind == "duration" and isinstance(value, (int, float)):
        return f"{value:g} s ({duration_filter(value)})"
    if kind == "datetime" and isinstance(value, str):
        return value
    return repr(value)


def _rule_line(entry: dict[str, Any]) -> str:
    if not entry["matched"]:
        return f"  {entry['rule']}: no: {entry.get('reason')}"
    if entry.get("reason") == "throttled":
        return f"  {entry['rule']}: matched, but throttled ({entry['held_back']} held back)"
    digest = entry.get("digest")
    if digest is not None:
        key = f", key {digest['key']!r}" if digest["key"] else ""
        held = f" (with {digest['collected']} collected so far)" if digest["collected"] else ""
        if digest["window"] == "run":
            return (
                f"  {entry['rule']}: matched: its notification to {', '.join(digest['targets'])}"
                f" waits in the digest of run {digest['key']}{held}, sent as one when the"
                " run ends"
            )
        return (
            f"  {entry['rule']}: matched: its notification to {', '.join(digest['targets'])}"
            f" waits in a digest ({_window(digest['window'])}{key}){held}, sent as one when"
            " the window closes"
        )
    if "silenced_by" in entry:
        return f"  {entry['rule']}: matched, silenced by #{entry['silenced_by']}"
    return f"  {entry['rule']}: matched"


def _run_lines(run: Any) -> list[str]:
    """The event's run (``run.`` in its rules), as the store has it with
    this event in it."""
    if not run:
        return ["", "run: none (this event belongs to no backup run)"]
    state = f"ended {run['ended']}" if "ended" in run else "open"
    lines = [
        "",
        f"run: {run['id']}: {run['script']} on {run['host']} ({run['kind']}),"
        f" started {run['started']}, {state}",
        f"  status {run['status']}: {run['source_count']} source(s), {run['failed_count']}"
        f" failed, {run['errors']} error(s), {run['media_requests']} media request(s)",
    ]
    lines.extend(f"  failed: {s['source']}: {s.get('error_message')}" for s in run["failed"])
    return lines


def text(outcome: Outcome, collected: Optional[dict[tuple[str, str], int]] = None) -> str:
    """The report as ``router test`` prints it."""
    data = report(outcome, collected)
    event = data["event"]
    lines = [
        "(a dry run: nothing is sent, run, written or recorded)",
        f"event: {event['name']}" + ("" if event["known"] else " (not in the catalog)"),
    ]
    width = max(len(name) for name in event["fields"])
    for name, field in event["fields"].items():
        lines.append(f"  {name:<{width}}  {field['type']:<8}  {_shown(field)}")
    lines.extend(f"  warning: {warning}" for warning in event["warnings"])
    lines.extend(_run_lines(data["run"]))
    lines += ["", "rules:"]
    if not data["rules"]:
        lines.append("  (no rule is written for this event)")
    lines.extend(_rule_line(entry) for entry in data["rules"])
    if data["stopped_by"]:
        lines.append(f"  (stop in {data['stopped_by']}: later rules do not see the event)")
    lines.extend(_expectation_line(hit) for hit in data["expectations"])
    lines.append("")
    lines.append("notifications:" if data["notifications"] else "notifications: none now")
    for note in data["notifications"]:
        shown = ", ".join(note["urls"]) or "no URL: see the errors below"
        if note["silenced_by"] is not None:
            shown = f"silenced by #{note['silenced_by']}: not sent"
        lines.append(
            f"  to {note['target']} ({shown}) [{note['type']}, {note['format']}]"
            f" from {note['rule']}"
        )
        lines.append(f"    title: {note['title']}")
        for number, body_line in enumerate(note["body"].splitlines() or [""]):
            lines.append(("    body:  " if number == 0 else "           ") + body_line)
    lines.append("")
    lines.append("steps:" if outcome.steps else "steps: none")
    for step in outcome.steps:
        lines.extend("  " + line for line in describe(step))
    lines.extend(f"error: {error}" for error in data["errors"])
    return "\n".join(lines)
