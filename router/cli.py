"""``router``: the admin's command line. Each subcommand is a thin shell over
the library; the work happens in the pipeline modules."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

from router import __version__
from router import config as settings
from router.catalog import CATALOG, EVENTS, canonical_name, catalog_json, describe_catalog
from router.catalog import describe_event as describe_one
from router.config import ConfigError

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but bad usage exits 2 with one line, as ``router check`` promises."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


EXIT_BROKEN_PIPE = 141  # as a program killed by SIGPIPE: the reader went away
EXIT_STATUSES = """\
exit status:
  0    done (check: no errors; warnings allowed unless --strict)
  1    errors: check found errors, replay differs from --expect, a retried send
       failed, or the rules could not be loaded
  2    bad usage: an unknown command, option, event name or file; a broken router.toml
  141  the output pipe was closed (router history | head)"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="router",
        description="Route Retrospect events through rules.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"retro-router {__version__}")
    parser.add_argument("--config", help="router.toml to use (default: ROUTER_CONFIG, ...)")
    # --config is also taken after the command (`router check --config FILE`);
    # SUPPRESS keeps a subcommand without it from undoing the one given before.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="router.toml to use")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    original = sub.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return original(name, parents=[common], **kwargs)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    init = sub.add_parser(
        "init", help="write router.toml, the default rules and a private state directory"
    )
    init.add_argument("--prefix", metavar="DIR", help="put all three under DIR")
    init.add_argument("--rules-dir", metavar="DIR", help="the rules directory to create")
    init.add_argument("--state-dir", metavar="DIR", help="the state directory to create")
    init.set_defaults(func=cmd_init)

    check = sub.add_parser("check", help="validate rule files like a compiler")
    check.add_argument("paths", nargs="*", help="rule files or directories (default: rules_dir)")
    check.add_argument("--strict", action="store_true", help="treat warnings as errors")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.set_defaults(func=cmd_check)

    events = sub.add_parser("events", help="list Retrospect's events and their fields")
    events.add_argument("name", nargs="?", help="one event (its fields in argument order)")
    events.add_argument("--format", choices=("text", "json"), default="text")
    events.set_defaults(func=cmd_events)

    test = sub.add_parser("test", help="dry run: what would this event do? (sends nothing)")
    test.add_argument(
        "--rules", action="append", help="rule file or directory (default: rules_dir)"
    )
    test.add_argument("--format", choices=("text", "json"), default="text")
    test.add_argument("event", help="the event name, as Retrospect passes it")
    test.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    test.set_defaults(func=cmd_test)

    replay = sub.add_parser("replay", help="run a file of handler invocations through the rules")
    replay.add_argument("file", help="one invocation per line, shell-quoted")
    replay.add_argument("--rules", action="append", help="rule file or directory")
    replay.add_argument(
        "--expect", help="file of the rules each line must fire; exit 1 on a difference"
    )
    replay.add_argument("--save-expect", help="write the rules each line fires, for later --expect")
    replay.add_argument(
        "--live", action="store_true", help="really process each line (journal, deliver, run)"
    )
    replay.add_argument("--format", choices=("text", "json"), default="text")
    replay.set_defaults(func=cmd_replay)

    history = sub.add_parser("history", help="recent events from the journal")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument(
        "--since", metavar="WHEN", help='a time ("2024-05-01 03:00") or how long ago ("2h", "1d")'
    )
    history.add_argument("--event", help="only this event name")
    history.add_argument("--script", help="only events of this script")
    history.add_argument("--client", help="only events of this client")
    history.add_argument("--host", help="only events from this engine")
    history.add_argument("--status", choices=("failure", "warning", "success", "info"))
    history.add_argument("--format", choices=("text", "json"), default="text")
    history.set_defaults(func=cmd_history)

    outbox = sub.add_parser("outbox", help="queued notifications; 'outbox retry' sends again")
    outbox.add_argument("--dead", action="store_true", help="only dead letters")
    outbox.add_argument("--limit", type=int, default=50)
    outbox.add_argument("--format", choices=("text", "json"), default="text")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", parser_class=_Parser)
    retry = outbox_sub.add_parser("retry", help="make rows due now and deliver them")
    retry.add_argument("id", nargs="?", type=int, help="one row (see `router outbox`)")
    retry.add_argument("--all", action="store_true", help="every pending and dead row")
    outbox.set_defaults(func=cmd_outbox)

    serve = sub.add_parser(
        "serve", help="run the service: local socket, HTTP, delivery, hot reload, timers"
    )
    serve.add_argument(
        "--listen", metavar="HOST:PORT", help="serve HTTP here (default: the listen setting; none)"
    )
    serve.add_argument(
        "--poll", action="store_true", help="poll the rules directory (network file systems)"
    )
    serve.set_defaults(func=cmd_serve)

    completion = sub.add_parser("completion", help="shell completion: source its output")
    completion.add_argument("shell", choices=("bash", "zsh", "fish"))
    completion.set_defaults(func=cmd_completion)
    return parser


def load_config(args: argparse.Namespace) -> Any:
    """The configuration (``--config``, or where it is found), its warnings
    (unknown keys) said on stderr."""
    config = settings.load(args.config)
    for warning in config.warnings:
        print(f"router: {warning}", file=sys.stderr)
    return config


def cmd_init(args: argparse.Namespace) -> int:
    from router.init import initialise, layout, next_steps
    from router.trust import Untrusted

    where = layout(args.prefix, args.config, args.rules_dir, args.state_dir)
    try:
        said = initialise(where)
    except (OSError, Untrusted) as exc:
        print(f"router init: {exc}", file=sys.stderr)
        if isinstance(exc, PermissionError):
            print("router init: run it as root, or choose places with --prefix", file=sys.stderr)
        return EXIT_ERRORS
    print("\n".join(said))
    print("\nNext:")
    print("\n".join(f"  {command}" for command in next_steps(where)))
    return EXIT_OK


def cmd_events(args: argparse.Namespace) -> int:
    if args.name is None:
        if args.format == "json":
            print(json.dumps(catalog_json(), indent=2))
        else:
            print(describe_catalog())
        return EXIT_OK
    name = known_event(args.name, "events")
    if name is None:
        return EXIT_USAGE
    if args.format == "json":
        print(json.dumps(next(e for e in catalog_json() if e["name"] == name), indent=2))
    else:
        print(describe_one(EVENTS[name]))
    return EXIT_OK


#: Names the journal holds besides Retrospect's events (the router's own entries).
JOURNAL_NAMES = ("expect", "digest", "router")


def known_event(name: str, command: str, also: tuple[str, ...] = ()) -> Optional[str]:
    """The catalog's name for ``name``, or None after saying, with a
    suggestion, that there is no such event."""
    canonical = canonical_name(name)
    if canonical is not None or name in also:
        return canonical or name
    from router.suggest import did_you_mean

    suggestion = did_you_mean(name, [spec.name for spec in CATALOG] + list(also))
    print(
        f"router {command}: unknown event {name!r}{suggestion}; `router events` lists them",
        file=sys.stderr,
    )
    return None


def cmd_check(args: argparse.Namespace) -> int:
    from router.language.checker import check_paths
    from router.language.diagnostics import render_json, render_text
    from router.loader import use_caches

    if args.paths:
        paths = [Path(p) for p in args.paths]
        # Explicit paths need no configuration; a broken one only costs the grammar cache.
        with contextlib.suppress(ConfigError):
            use_caches(settings.load(args.config).state_dir)
    else:
        config = load_config(args)
        use_caches(config.state_dir)
        paths = [config.rules_dir]
    result = check_paths(paths)
    if result.usage_error:
        print(f"router check: {result.usage_error}", file=sys.stderr)
        return EXIT_USAGE
    diagnostics = result.diagnostics
    if args.format == "json":
        print(render_json(diagnostics))
    elif diagnostics:
        print(render_text(diagnostics, result.sources))
    errors = sum(d.is_error for d in diagnostics)
    warnings = len(diagnostics) - errors
    if args.format == "text":
        summary = (
            f"{result.files} file(s), {result.rules} rule(s):"
            f" {errors} error(s), {warnings} warning(s)"
        )
        print(summary, file=sys.stderr if diagnostics else sys.stdout)
    failed = errors > 0 or (args.strict and warnings > 0)
    return EXIT_ERRORS if failed else EXIT_OK


# ---------------------------------------------------------------------------
# router test / replay
# ---------------------------------------------------------------------------


def _checked_ruleset(args: argparse.Namespace, config: Any) -> Any:
    """The ruleset as the files on disk say now; prints errors and returns None if broken."""
    from router.engine import build_ruleset
    from router.language.checker import check_paths
    from router.language.diagnostics import render_text

    paths = [Path(p) for p in args.rules] if args.rules else [config.rules_dir]
    result = check_paths(paths)
    if result.usage_error:
        print(f"router {args.command}: {result.usage_error}", file=sys.stderr)
        return None
    if result.errors:
        print(render_text(result.errors, result.sources), file=sys.stderr)
        print(f"router {args.command}: the rules have errors (router check)", file=sys.stderr)
        return None
    return build_ruleset(result, config.date_order)


def cmd_test(args: argparse.Namespace) -> int:
    from router import explain
    from router.dispatch import process
    from router.events import event_from_argv
    from router.store import open_existing_store

    if known_event(args.event, "test") is None:
        return EXIT_USAGE
    config = load_config(args)
    ruleset = _checked_ruleset(args, config)
    if ruleset is None:
        return EXIT_ERRORS
    event = event_from_argv([args.event, *args.args], date_order=config.date_order)
    store = open_existing_store(config)
    try:
        outcome = process(event, ruleset, store, record=False, explain=True, run_env=config.run_env)
    finally:
        if store is not None:
            store.close()
    if args.format == "json":
        print(json.dumps(explain.report(outcome), indent=2, ensure_ascii=False))
    else:
        print(explain.text(outcome))
    return EXIT_OK


def read_invocations(path: Path) -> list[tuple[int, list[str], Optional[str]]]:
    """(line number, argv, received) for each handler invocation in a replay file.

    Lines are shell-quoted as Retrospect runs the handler; a leading program
    name (…/RetroEventHandler) is dropped, and a leading ``@2024-01-31T18:00``
    sets when the event was received (for throttle and expect tests).
    """
    import shlex

    invocations = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        words = shlex.split(stripped)
        received = None
        if words and words[0].startswith("@"):
            received, words = words[0][1:], words[1:]
        if words and "retroeventhandler" in Path(words[0]).name.lower():
            words = words[1:]
        if words:
            invocations.append((number, words, received))
    return invocations


def read_expectations(path: Path) -> list[list[str]]:
    """One line per invocation: the rules it fires, comma-separated; ``-`` for none."""
    expected = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        expected.append([] if stripped == "-" else [p.strip() for p in stripped.split(",")])
    return expected


def cmd_replay(args: argparse.Namespace) -> int:
    from datetime import datetime

    from router.dispatch import process
    from router.events import event_from_argv
    from router.store import Store

    config = load_config(args)
    try:
        invocations = read_invocations(Path(args.file))
        expected = read_expectations(Path(args.expect)) if args.expect else None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"router replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.live:
        if args.rules or args.expect or args.save_expect:
            print(
                "router replay: --live processes events as the handler does, with the"
                " configured rules; --rules, --expect and --save-expect are for dry runs",
                file=sys.stderr,
            )
            return EXIT_USAGE
        from router.handler import main as handler_main

        for number, argv, received in invocations:
            status = handler_main(argv, config_path=args.config)
            note = "  (received now: @times apply to dry runs only)" if received else ""
            print(f"line {number}: {argv[0]}: exit {status}{note}")
        return EXIT_OK
    ruleset = _checked_ruleset(args, config)
    if ruleset is None:
        return EXIT_ERRORS
    if expected is not None and len(expected) != len(invocations):
        print(
            f"router replay: {args.expect} has {len(expected)} lines for"
            f" {len(invocations)} invocations",
            file=sys.stderr,
        )
        return EXIT_ERRORS
    store = Store.in_memory()  # previous/streak/throttle follow the replay, nothing is kept
    fired_all: list[list[str]] = []
    differences = 0
    lines: list[dict[str, Any]] = []
    try:
        for index, (number, argv, received) in enumerate(invocations):
            when = datetime.fromisoformat(received) if received else None
            event = event_from_argv(argv, date_order=config.date_order, received=when)
            outcome = process(event, ruleset, store, origin="replay")
            fired = outcome.plan.matched
            fired_all.append(fired)
            line: dict[str, Any] = {"line": number, "event": event.name, "fired": fired}
            if expected is not None:
                line["expected"] = expected[index]
                line["differs"] = sorted(expected[index]) != sorted(fired)
                differences += line["differs"]
            lines.append(line)
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps(lines, indent=2, ensure_ascii=False))
    for line in lines if args.format == "text" else ():
        text = f"line {line['line']}: {line['event']}: {', '.join(line['fired']) or '-'}"
        if line.get("differs"):
            text += f"   EXPECTED: {', '.join(line['expected']) or '-'}"
        print(text)
    if args.save_expect:
        Path(args.save_expect).write_text(
            "".join((", ".join(f) or "-") + "\n" for f in fired_all), encoding="utf-8"
        )
    if differences:
        print(f"router replay: {differences} line(s) differ from {args.expect}", file=sys.stderr)
        return EXIT_ERRORS
    return EXIT_OK


# ---------------------------------------------------------------------------
# router history / outbox
# ---------------------------------------------------------------------------


def cmd_history(args: argparse.Namespace) -> int:
    from router.store import JournalQuery, encode_fields, open_existing_store

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
    config = load_config(args)
    store = open_existing_store(config)
    if store is None:
        print("[]" if args.format == "json" else f"no journal yet in {config.state_dir}")
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

    from router.store import DEAD, open_existing_store

    config = load_config(args)
    if args.outbox_command == "retry":
        if (args.id is None) == (not args.all):
            print("router outbox retry: give one row id or --all", file=sys.stderr)
            return EXIT_USAGE
        return _retry(config, args.id)
    store = open_existing_store(config)
    if store is None:
        print("[]" if args.format == "json" else f"no outbox yet in {config.state_dir}")
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


def cmd_serve(args: argparse.Namespace) -> int:
    from router.service import serve

    return serve(load_config(args), listen=args.listen, poll=args.poll)


def cmd_completion(args: argparse.Namespace) -> int:
    from router.completion import script

    print(script(args.shell, build_parser()))
    return EXIT_OK


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        status = args.func(args)
        sys.stdout.flush()
        return status
    except ConfigError as exc:
        print(f"router: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader (head, less) went away: nothing more to say, and no
        # traceback when Python flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
