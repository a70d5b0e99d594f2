"""``router test`` and ``router replay``: events through the rules, as a
dry run that sends nothing, or (``replay --live``) as the handler would."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from router.cli.shared import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, known_event, load_config


def _checked_ruleset(args: argparse.Namespace, config: Any) -> Any:
    """The ruleset as the files on disk say now; prints errors and returns None if broken."""
    from router.checker import check_paths
    from router.language.diagnostics import render_text
    from router.loader import build_ruleset

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
    at = None
    if args.at:
        from router.events import parse_date

        at = parse_date(args.at, config.date_order)
        if at is None:
            print(
                f'router test: --at {args.at!r} is not a time (as in "2026-12-01 02:30")',
                file=sys.stderr,
            )
            return EXIT_USAGE
    event = event_from_argv([args.event, *args.args], date_order=config.date_order, received=at)
    store = open_existing_store(config)
    try:
        outcome = process(event, ruleset, store, record=False, explain=True, run_env=config.run_env)
        collected = _collected(store, outcome)
    finally:
        if store is not None:
            store.close()
    if args.format == "json":
        print(json.dumps(explain.report(outcome, collected), indent=2, ensure_ascii=False))
    else:
        print(explain.text(outcome, collected))
    return EXIT_OK


def _collected(store: Any, outcome: Any) -> dict[tuple[str, str], int]:
    """How many events the digests this event would join hold already (the
    windows still open at its time; a run's until the run ends)."""
    digests = outcome.plan.digests
    if store is None or not digests:
        return {}
    at = outcome.event.fields["received"].timestamp()
    wanted = {(d.rule.label, d.key) for d in digests}
    counts: dict[tuple[str, str], int] = {}
    for batch in store.state.digests_of({label for label, _ in wanted}):
        if (batch.rule, batch.key) in wanted and batch.window_end > at:
            counts[(batch.rule, batch.key)] = len(batch.items)
    return counts


def read_invocations(path: Path) -> list[tuple[int, list[str], Optional[str]]]:
    """(line number, argv, received) for each handler invocation in a replay file.

    Lines are shell-quoted as Retrospect runs the handler; a leading program
    name (…/RetroEventHandler) is dropped, and a leading ``@2024-01-31T18:00``
    sets when the event was received (for throttle and expect tests). A
    line of only ``@TIME`` moves the replay's clock (argv empty): the
    timers due by then fire.
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
        if words or received:
            invocations.append((number, words, received))
    return invocations


def _tick_at(ruleset: Any, store: Any, when: Any, config: Any) -> tuple[list[str], list[Any]]:
    """The timers due at ``when`` (a replay line's time), fired in the
    replay's store: the rules that fired, and what silences muted."""
    from router.timers import tick

    report = tick(ruleset, store, now=when.timestamp(), run_timeout=config.run_timeout)
    return [fired.rule for fired in report.fired], [m for f in report.fired for m in f.muted]


def _replay_store(config: Any) -> Any:
    """A throwaway store for a dry replay (previous, streaks, throttles and
    runs follow the replay, nothing is kept), holding the real store's
    silences, so that the replay honours them as the router would."""
    from router.store import Store, open_existing_store

    store = Store.in_memory()
    real = open_existing_store(config)
    if real is not None:
        with real:
            store.silences.copy(real.silences.every())
    return store


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
    from router.engine.silences import silenced_rules
    from router.events import event_from_argv

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
    store = _replay_store(config)
    fired_all: list[list[str]] = []
    differences = 0
    lines: list[dict[str, Any]] = []
    try:
        for index, (number, argv, received) in enumerate(invocations):
            when = datetime.fromisoformat(received) if received else None
            # The simulated clock: what the timers (expectations, schedules,
            # hung runs, run timeouts, digests) did by this line's time.
            timers, muted = _tick_at(ruleset, store, when, config) if when else ([], [])
            line: dict[str, Any] = {"line": number}
            if argv:
                event = event_from_argv(argv, date_order=config.date_order, received=when)
                outcome = process(event, ruleset, store, origin="replay")
                fired = outcome.plan.matched
                muted += outcome.muted
                line.update(event=event.name, fired=fired)
                if timers:
                    line["timers"] = timers
            else:
                fired = timers
                line.update(event="clock", at=received, fired=fired)
            if muted:
                line["silenced"] = silenced_rules(muted)
            fired_all.append(fired)
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
        if line.get("timers"):
            print(f"line {line['line']}: (timers first) {', '.join(line['timers'])}")
        text = f"line {line['line']}: {line['event']}: {', '.join(line['fired']) or '-'}"
        for rule, silence in line.get("silenced", {}).items():
            text += f"  ({rule}: silenced by #{silence})"
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
