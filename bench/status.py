"""Benchmark: `router status` and `router history` over a million journal rows.

The target (docs/design.md): with 1M events in the journal, both answer in
under 200 ms. The status views read the store's summary rows (one per
script, one per source), its open runs, silences, digests and expect
windows, never the journal; `router history` reads the newest rows by
index. This script builds a store with 1,000 scripts (200 engines x 5),
5,000 sources and 30,000 runs through the store's own code, copies a real
journal row up to ``--events`` rows, then measures, in one run:

  (a) in-process: gathering the status and rendering it three ways (text,
      JSON, Prometheus), and reading the newest 20 journal entries, median
      of 5, against the target; and the same over a 10-row journal, for
      the ratio (the journal's size must not matter);
  (b) the whole `router status` and `router history` processes (start-up
      and imports included), median of 5, for context.

Run by hand: `python bench/status.py [--events 1000000]`. A report, not a
test: it exits 0 whether or not the target is met (printing OVER TARGET).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

TARGET_SECONDS = 0.2
REPEAT = 5
HOSTS, SCRIPTS, CLIENTS_PER_HOST, DAYS = 200, 5, 25, 30


def median_of(work: Callable[[], Any], repeat: int = REPEAT) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def build(state: Path, events: int) -> None:
    """A store as a busy fleet leaves it after a month."""
    from router.checker import check_text
    from router.dispatch import process
    from router.events import event_from_argv
    from router.loader import build_ruleset
    from router.runs import Run
    from router.store import Store, backups, runs

    ruleset = build_ruleset(check_text('rule "log" on any log "{{ event }}"\n'))
    with Store.open(state) as store:
        event = event_from_argv(["EndScript", "Nightly", "0", "0", "successful"])
        process(event, ruleset, store)  # one real journal row, copied below
        now = time.time()
        with store.db.transaction() as tx:
            for host_number in range(HOSTS):
                host = f"engine-{host_number:03d}"
                for script_number in range(SCRIPTS):
                    script = f"Script {script_number}"
                    for day in range(DAYS):
                        started = now - (DAYS - day) * 86400
                        sources = [
                            {
                                "source": f"ws{c}/C",
                                "client": f"ws{c}",
                                "status": "failure" if (c + day) % 17 == 0 else "success",
                                "errors": 0,
                                "bytes": 1 << 30,
                            }
                            for c in range(
                                script_number * CLIENTS_PER_HOST // SCRIPTS,
                                (script_number + 1) * CLIENTS_PER_HOST // SCRIPTS,
                            )
                        ]
                        run = Run(
                            id=f"{host}-{script_number}-{day}",
                            host=host,
                            script=script,
                            kind="script",
                            started=started,
                            last_seen=started + 3600,
                            ended=started + 3600,
                            ended_by="EndScript",
                            script_status="success",
                            sources=sources,
                        )
                        tx.execute(
                            "INSERT INTO runs (id, host, script, kind, is_open, started,"
                            " last_seen, ended, data) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)",
                            (run.id, host, script, "script", started, run.last_seen, run.ended,
                             json.dumps(asdict(run))),
                        )  # fmt: skip
                        backups.note_runs(tx, [run], {})
                        for source in sources:
                            fields = {**source, "script": script}
                            backups.note_source(tx, host, fields, run.last_seen)
        del runs
        have = 1
        while have < events:
            copied = min(have, events - have)
            with store.db.transaction() as tx:
                tx.execute(
                    "INSERT INTO events (received, name, identity, status, streak, host, origin,"
                    " fields, args, warnings, decisions, steps, errors)"
                    " SELECT received, name, identity, status, streak, host, origin, fields, args,"
                    " warnings, decisions, steps, errors FROM events ORDER BY id LIMIT ?",
                    (copied,),
                )
            have += copied


def in_process(state: Path) -> tuple[float, float]:
    """(status gathered and rendered three ways, newest 20 journal entries)."""
    from router import status
    from router.store import Store

    with Store.open(state) as store:
        health = {"ok": True, "rules": 1, "errors": []}

        def views() -> None:
            seen = status.gather(store, None, health, 30 * 86400.0)
            status.text(seen)
            json.dumps(status.as_json(seen))
            status.prometheus(seen)

        return median_of(views), median_of(lambda: store.journal.entries(limit=20))


def whole(state: Path, *command: str) -> float:
    config = state.parent / "router.toml"
    config.write_text(f'state_dir = "{state}"\nrules_dir = "{state.parent / "rules"}"\n')
    (state.parent / "rules").mkdir(exist_ok=True, mode=0o700)
    (state.parent / "rules" / "log.rules").write_text('rule "log" on any log "x"\n')
    env = {**os.environ, "ROUTER_CONFIG": str(config)}
    router = [sys.executable, "-m", "router.cli"]

    def run() -> None:
        subprocess.run([*router, *command], env=env, capture_output=True, check=True)

    run()  # the ruleset cache, written once
    return median_of(run)


def verdict(seconds: float) -> str:
    return "ok" if seconds < TARGET_SECONDS else "OVER TARGET"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as small_dir, tempfile.TemporaryDirectory() as big_dir:
        small, big = Path(small_dir) / "state", Path(big_dir) / "state"
        started = time.perf_counter()
        build(small, 10)
        build(big, args.events)
        print(
            f"built: {HOSTS * SCRIPTS} scripts, {HOSTS * CLIENTS_PER_HOST} sources,"
            f" {HOSTS * SCRIPTS * DAYS} runs; journals of 10 and {args.events:,} rows"
            f" ({time.perf_counter() - started:.0f} s)"
        )
        small_views, small_history = in_process(small)
        big_views, big_history = in_process(big)
        print(f"status, gathered and rendered 3 ways, {args.events:,} rows:"
              f" {big_views * 1000:.1f} ms (target < {TARGET_SECONDS * 1000:.0f} ms:"
              f" {verdict(big_views)}); 10 rows: {small_views * 1000:.1f} ms;"
              f" ratio {big_views / small_views:.2f}x")  # fmt: skip
        print(f"history, newest 20 entries, {args.events:,} rows:"
              f" {big_history * 1000:.2f} ms (target < {TARGET_SECONDS * 1000:.0f} ms:"
              f" {verdict(big_history)}); 10 rows: {small_history * 1000:.2f} ms;"
              f" ratio {big_history / small_history:.2f}x")  # fmt: skip
        for name, command in (("router status", ("status",)), ("router history", ("history",))):
            print(
                f"{name} (whole process, start-up included): {whole(big, *command) * 1000:.0f} ms"
                f" at {args.events:,} rows, {whole(small, *command) * 1000:.0f} ms at 10"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
