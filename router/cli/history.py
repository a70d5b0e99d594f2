"""``router history`` and ``router outbox``: what the journal recorded,
what the outbox holds, and sending again what is stuck there."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

from router.cli.shared import (
    EXIT_ERRORS,
    EXIT_OK,
    EXIT_USAGE,
    existing_store,
    known_event,
    load_config,
)

#: Names the journal holds besides Retrospect's events (the router's own entries).
JOURNAL_NAMES = ("expect", "digest", "router")


def cmd_history(args: argparse.Namespace) -> int:
    from router.store import JournalQuery, encode_fields

    event = None
    if args.event is not None:
        event = known_event(args.event, "history", also=JOURNAL_NAMES)
        if event is None:
            return EXIT_USAGE
    since = _since(args.since) if args.since else None
    if args.since and since is None:
        print(
            f"router history: --since {args.since!r} is neither a time"
            ' ("2024-05-01 03:00") nor a duration ("2h", "1d")',
            file=sys.stderr,
        )
        return EXIT_USAGE
    where = JournalQuery(event, since, args.host, args.status, args.script, args.client)
    store = existing_store(load_config(args), args.format)
    if store is None:
        return EXIT_OK
    with store:
        entries = store.journal.entries(limit=args.limit, where=where)
    if args.format == "json":
        rows = [
            {
                "id": e.id,
                "received": e.received.isoformat(),
                "event": e.name,
                "status": e.status,
                "identity": e.identity,
                "fields": json.loads(encode_fields(e.fields)),
                "args": e.args,
                "warnings": e.warnings,
                "decisions": e.decisions,
                "steps": e.steps,
                "errors": e.errors,
            }
            for e in entries
        ]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return EXIT_OK
    for entry in reversed(entries):
        acted = [
            str(d.get("label", "?"))
            for d in entry.decisions
            if isinstance(d, dict) and d.get("matched") and d.get("reason") is None
        ]
        print(
            f"#{entry.id} {entry.received:%Y-%m-%d %H:%M:%S} {entry.name} [{entry.status}]"
            f" {entry.identity.replace(chr(31), ' / ')}: rules {', '.join(acted) or '-'}"
        )
        for decision in entry.decisions:
            for muted in decision.get("silenced") or () if isinstance(decision, dict) else ():
                print(
                    f"    silenced by #{muted.get('silence')}: {decision.get('label')}"
                    f" to {muted.get('target')} (not sent)"
                )
        for step in entry.steps:
            for line in _describe_result(step):
                print(f"    {line}")
        for text in entry.warnings:
            print(f"    warning: {text}")
        for text in entry.errors:
            print(f"    error: {text}")
    return EXIT_OK


def _since(text: str) -> Optional[Any]:
    """``--since``: a date and time as Retrospect or ISO writes it, or a
    duration before now; None when it is neither."""
    from datetime import datetime

    from router.events import parse_date
    from router.units import DURATION, parse_duration

    if DURATION.fullmatch(text.strip()):
        return datetime.now() - parse_duration(text.strip())
    return parse_date(text)


def _describe_result(step: Any) -> list[str]:
    """One journaled step for ``router history``: what happened, why, and
    the end of what a program printed; what the row holds, even when it is
    not what a report looks like now (old or odd rows)."""
    if not isinstance(step, dict):
        return [f"step: {step!r}"]
    rule = step.get("rule")
    line = f"{step.get('kind', '?')}" + (f" ({rule})" if rule is not None else "")
    line += f": {step.get('outcome')}"
    if step.get("program"):
        line += f" {step['program']}"
    if step.get("error"):
        line += f": {step['error']}"
    elif step.get("path"):
        line += f" {step['path']}"
    lines = [line]
    output = step.get("output")
    if isinstance(output, str) and output.strip() and step.get("outcome") != "ok":
        tail = output.strip().splitlines()[-OUTPUT_LINES:]
        lines += [f"  | {text}" for text in tail]
    return lines


#: How many lines of a failed program's output ``router history`` shows.
OUTPUT_LINES = 3


def cmd_outbox(args: argparse.Namespace) -> int:
    from datetime import datetime

    from router.store import DEAD

    config = load_config(args)
    if args.outbox_command == "retry":
        if (args.id is None) == (not args.all):
            print("router outbox retry: give one row id or --all", file=sys.stderr)
            return EXIT_USAGE
        return _retry(config, args.id)
    store = existing_store(config, args.format, "outbox")
    if store is None:
        return EXIT_OK
    with store:
        rows = store.outbox.rows(state=DEAD if args.dead else None, limit=args.limit)
    if args.format == "json":
        shown = [
            {
                "id": row.id,
                "state": row.state,
                "target": row.target,
                "url": row.url_masked,
                "rule": row.rule,
                "event_id": row.event_id,
                "title": row.title,
                "type": row.type,
                "attempts": row.attempts,
                "created": datetime.fromtimestamp(row.created).isoformat(),
                "next_attempt": datetime.fromtimestamp(row.next_attempt).isoformat(),
                "sent_at": datetime.fromtimestamp(row.sent_at).isoformat() if row.sent_at else None,
                "last_error": row.last_error,
            }
            for row in rows
        ]
        print(json.dumps(shown, indent=2, ensure_ascii=False))
        return EXIT_OK
    if not rows:
        print("no dead letters" if args.dead else "the outbox is empty")
    for row in reversed(rows):
        when = datetime.fromtimestamp(row.next_attempt).strftime("%Y-%m-%d %H:%M:%S")
        state = f"{row.state}, next try {when}" if row.state == "pending" else row.state
        print(f"#{row.id} [{state}] {row.target} {row.url_masked} attempts {row.attempts}")
        print(f"    {row.title}  (rule {row.rule}, event #{row.event_id})")
        if row.last_error and row.state != "sent":
            print(f"    last error: {row.last_error}")
    return EXIT_OK


def _retry(config: Any, row_id: Optional[int]) -> int:
    import time

    from router.delivery import drain
    from router.store import open_store

    with open_store(config) as store:
        count = store.outbox.retry(row_id)
        if count == 0:
            print("nothing to retry" if row_id is None else f"no pending or dead row #{row_id}")
            return EXIT_ERRORS if row_id is not None else EXIT_OK
        policy = config.delivery
        report = drain(
            store, policy, deadline=time.time() + max(policy.deadline, 30.0), limit=10_000
        )
    print(
        f"retried {count}: {len(report.sent)} sent, {len(report.failed)} failed,"
        f" {len(report.dead)} dead, {len(report.skipped)} left for later"
    )
    return EXIT_OK if not report.failed and not report.dead else EXIT_ERRORS
