"""Benchmark: hostile handler arguments, many of them (issue 7).

Two figures, each beside its target, in one run:

  in-process  100,000 argv lists (tests/fuzzing.py, fixed seed) through what
              the inline handler does: argv -> Event -> evaluate -> render ->
              journal + outbox, with the ``log`` steps performed. Target: 0
              exceptions, every event journaled.
  processes   2,000 real handler processes (the checkout's retroeventhandler,
              a bare environment, no service), each with one of those argv
              lists. Target: exit status 0 or 1 for every one, no traceback
              on stderr, every event journaled (or spooled) once.

The rules are tests/fuzzing.py's (every condition shape, templates, logs;
no ``abort``: a fuzzed intervention-file path must never be written) plus the
shipped defaults. Notifications go to a closed port; nothing is sent anywhere.

Run by hand: ``python bench/fuzz.py`` (about ten minutes on two cores);
``--quick`` for 5,000 and 100 (under a minute). Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fuzzing import RULES, cases  # noqa: E402 - tests/ holds the generator

SEED = 20261128


def setup(base: Path) -> Path:
    """Rules, logs, state and a router.toml under ``base``; returns the config."""
    base.mkdir(mode=0o700)
    rules, logs, state = base / "rules", base / "logs", base / "state"
    for directory in (rules, logs, state):
        directory.mkdir(mode=0o700)
    (rules / "fuzz.rules").write_text(RULES.replace("LOGS", str(logs)), encoding="utf-8")
    shutil.copy(REPO / "rules" / "default.rules", rules / "default.rules")
    for path in rules.iterdir():
        path.chmod(0o600)
    config = base / "router.toml"
    config.write_text(
        f'rules_dir = "{rules}"\nstate_dir = "{state}"\n[delivery]\ndeadline = "1s"\n',
        encoding="utf-8",
    )
    return config


def in_process(base: Path, count: int) -> tuple[int, int, float]:
    """(journaled, exceptions, seconds) for ``count`` cases."""
    from router import config as settings
    from router.dispatch import process, record_outcome
    from router.events import event_from_argv
    from router.handler import new_uid
    from router.loader import load_ruleset
    from router.steps import perform
    from router.store import open_store

    config = settings.load(str(setup(base)))
    ruleset = load_ruleset(config.rules_dir, config.state_dir).ruleset
    journaled = exceptions = 0
    started = time.perf_counter()
    with open_store(config) as store:
        for argv in cases(SEED, count):
            if not argv[0]:
                continue  # the handler prints its usage for that
            try:
                event = event_from_argv(argv, host="fuzz")
                uid = new_uid()
                outcome = process(event, ruleset, store, record=False, uid=uid)
                record_outcome(store, outcome, "handler", uid)
                perform([s for s in outcome.steps if s.kind == "log"], base / "events.log")
                journaled += 1
            except Exception as exc:  # the figure this measures
                exceptions += 1
                print(f"  exception: {type(exc).__name__}: {exc} for {argv!r:.200}")
    return journaled, exceptions, time.perf_counter() - started


def _argv_for_a_process(argv: list) -> list[bytes]:
    """A real command line cannot hold NUL: Retrospect could not send one."""
    out = []
    for arg in argv:
        if isinstance(arg, str):
            try:  # undecodable bytes came in as surrogate escapes: back to bytes
                arg = arg.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:  # other lone surrogates: the bytes that encode them
                arg = arg.encode("utf-8", "surrogatepass")
        out.append(arg.replace(b"\0", b""))
    return out


def processes(base: Path, count: int) -> tuple[int, int, int, int, float]:
    """(runs, bad exits, tracebacks, journaled, seconds) for ``count`` processes."""
    config = setup(base)
    home = base / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "ROUTER_CONFIG": str(config)}
    handler = [sys.executable, str(REPO / "retroeventhandler")]
    argvs = [a for a in cases(SEED + 1, count) if a[0]]

    def run(argv: list) -> tuple[int, bytes]:
        done = subprocess.run(
            [*handler, *_argv_for_a_process(argv)],
            cwd=str(base),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
        )
        return done.returncode, done.stderr

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(run, argvs))
    seconds = time.perf_counter() - started
    bad = sum(code not in (0, 1) for code, _ in results)
    tracebacks = sum(b"Traceback" in err for _, err in results)
    with sqlite3.connect(str(base / "state" / "router.sqlite3")) as db:
        journaled = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    spooled = len(list((base / "state" / "spool").glob("*.event.json")))
    return len(argvs), bad, tracebacks, journaled + spooled, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 cases and 100 processes")
    parser.add_argument("--cases", type=int)
    parser.add_argument("--processes", type=int)
    args = parser.parse_args()
    count = args.cases or (5_000 if args.quick else 100_000)
    runs = args.processes or (100 if args.quick else 2_000)
    missed = False
    with tempfile.TemporaryDirectory(prefix="router-fuzz-") as temp:
        journaled, exceptions, seconds = in_process(Path(temp) / "a", count)
        print(
            f"in-process: {count} cases, {journaled} journaled, {exceptions} exceptions"
            f" (target 0) in {seconds:.1f} s ({count / seconds:,.0f} cases/s)"
        )
        missed |= exceptions > 0
        total, bad, tracebacks, recorded, seconds = processes(Path(temp) / "b", runs)
        print(
            f"processes:  {total} handlers, {bad} bad exit statuses (target 0),"
            f" {tracebacks} tracebacks (target 0), {recorded} of {total} journaled or"
            f" spooled, in {seconds:.1f} s"
        )
        missed |= bad > 0 or tracebacks > 0 or recorded != total
    print("all targets met" if not missed else "OVER TARGET")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
