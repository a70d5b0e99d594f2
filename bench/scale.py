"""Benchmark: how the router's costs grow with the number of rules.

For rule counts 10, 100, 1,000 and 10,000 (in 20 files from 100 up; the
rules are bench/handler.py's kinds, one of which matches the event), each
figure beside its target (docs/design.md's table), in one run:

  check    ``router check`` as a subprocess, median: 1,000 rules under 1 s,
           10,000 under 4 s, and linear (the time per rule at 10,000 at
           most 1.5x the time per rule at 1,000).
  inline   the handler with no service (as Retrospect runs it, a bare
           environment), the ruleset cached, one rule matching and
           notifying a local sink, median: at 1,000 rules at most 1.2x the
           time at 10; at 10,000 under 400 ms.
  edit     the first inline run after one of the 20 files changed, median.
  journal  bytes per event in the journal (every column of its row):
           at most 1.5 KB at any count.
  memory   ``router serve``'s resident memory after start-up and a few
           events: at most 150 MB at 10,000 rules.
  reload   one file edited while ``router serve`` runs, to the new ruleset
           in force (``/healthz`` shows the reload), p95: under 300 ms at
           1,000 rules, under 1 s at 10,000.

Run by hand with the venv's python: ``python bench/scale.py`` (a few
minutes), ``--quick`` for 10, 100 and 1,000 rules and fewer runs (under a
minute). A report, not a test: exit 0 whether or not targets are met
(OVER TARGET says which), 1 when something is wrong (a run failed, a
notification missing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import handler as bench_handler  # bench/handler.py: the rules, the environment
import service as bench_service  # bench/service.py: healthz, a free port
from sink import Sink

FILES = 20
COUNTS = (10, 100, 1000, 10000)
QUICK_COUNTS = (10, 100, 1000)
KB = 1024


class Site:
    """Rules in 20 files, a state directory and router.toml under ``base``."""

    def __init__(self, base: Path, rules: int, port: int) -> None:
        self.base = base
        self.rules_dir = base / "rules"
        self.state = base / "state"
        self.rules_dir.mkdir(mode=0o700)
        self.state.mkdir(mode=0o700)
        header, *blocks = bench_handler.rule_text(port, rules).split("\n\n")
        files = 1 if rules < 100 else FILES
        texts = [[] for _ in range(files)]
        texts[0].append(header)
        for number, block in enumerate(blocks):
            texts[number % files].append(block)
        self.files = []
        for number, parts in enumerate(texts):
            path = self.rules_dir / f"{number:02d}.rules"
            path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
            path.chmod(0o600)
            self.files.append(path)
        self.config = base / "router.toml"
        self.config.write_text(
            f'rules_dir = "{self.rules_dir}"\nstate_dir = "{self.state}"\n', encoding="utf-8"
        )
        self.env = bench_handler.bare_env(base, self.config)
        self.edits = 0

    def edit(self) -> None:
        """Change one file (the last), as an admin's save would."""
        self.edits += 1
        path = self.files[-1]
        text = path.read_text(encoding="utf-8")
        path.write_text(f"{text}\n# edit {self.edits}\n", encoding="utf-8")

    def journal_bytes(self) -> float:
        """The mean size of a journal row: every column's bytes."""
        columns = (
            "received name identity status host origin fields args warnings decisions steps errors"
        ).split()
        total = " + ".join(f"length(CAST({c} AS BLOB))" for c in columns)
        with sqlite3.connect(str(self.state / "router.sqlite3")) as db:
            return float(db.execute(f"SELECT AVG({total} + 16) FROM events").fetchone()[0])


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Milliseconds; a failed run ends the benchmark (its figures would lie)."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0 or done.stderr:
        sys.exit(f"{argv[-5:]} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
    return elapsed


def measure_check(site: Site, runs: int) -> float:
    router = shutil.which("router", path=str(bench_service.BIN)) or "router"
    argv = [router, "check", "--config", str(site.config)]
    return statistics.median(timed(argv, site.env) for _ in range(runs))


def measure_inline(site: Site, sink: Sink, runs: int) -> tuple[float, float]:
    """(median, median of the first run after an edit) in milliseconds."""
    handler = [sys.executable, str(bench_handler.HANDLER), *bench_handler.EVENT]
    timed(handler, site.env)  # builds the cache
    before = sink.count()
    times = [timed(handler, site.env) for _ in range(runs)]
    if sink.wait_count(before + len(times), 30) is False:
        sys.exit("the sink did not receive a notification per handler run")
    # After an edit the handler checks the rules again; past its delivery
    # deadline it leaves the notification in the outbox (for the service or
    # a later handler), so the sink is not counted here.
    after_edit = []
    for _ in range(max(1, runs // 3)):
        site.edit()
        after_edit.append(timed(handler, site.env))
    return statistics.median(times), statistics.median(after_edit)


def resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_service(site: Site, reloads: int) -> tuple[float, list[float]]:
    """(resident MB after start-up and a few events, reload times in ms)."""
    port = bench_service.bench_handler_free_port()
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text + f'listen = "127.0.0.1:{port}"\nrate_limit = 0\n')
    router = shutil.which("router", path=str(bench_service.BIN)) or "router"
    log_path = site.base / "serve.log"
    with log_path.open("wb") as log:
        service = subprocess.Popen(
            [router, "serve"], env=site.env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 300
        while "ready:" not in log_path.read_text(errors="replace"):
            if service.poll() is not None or time.monotonic() > deadline:
                sys.exit(log_path.read_text(errors="replace"))
            time.sleep(0.05)
        handler = [sys.executable, str(bench_handler.HANDLER), *bench_handler.EVENT]
        for _ in range(3):
            timed(handler, site.env)
        memory = resident_mb(service.pid)
        times = []
        for _ in range(reloads):
            before = bench_service.healthz(port)["ruleset"]["reloads"]
            started = time.perf_counter()
            site.edit()
            limit = started + 120
            while bench_service.healthz(port)["ruleset"]["reloads"] == before:
                if time.perf_counter() > limit:
                    sys.exit("an edit was not reloaded within 120 s")
                time.sleep(0.005)
            times.append((time.perf_counter() - started) * 1000)
        return memory, times
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=120)


def p95(values: list[float]) -> float:
    return bench_service.percentile(values, 0.95)


def verdict(ok: bool) -> str:
    return "ok" if ok else "OVER TARGET"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10, 100, 1,000 rules; fewer runs")
    parser.add_argument("--counts", type=int, nargs="+", help="rule counts to measure")
    options = parser.parse_args()
    counts = options.counts or (QUICK_COUNTS if options.quick else COUNTS)
    runs, reloads, checks = (5, 5, 1) if options.quick else (10, 10, 3)
    results: dict[int, dict[str, Any]] = {}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python {sys.version.split()[0]}; load average {load:.2f} at the start")
    print(
        f"{'rules':>7} {'check':>9} {'inline':>9} {'edit':>9} {'journal':>9}"
        f" {'memory':>9} {'reload p95':>11}"
    )
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="retro-router-scale-") as temp, Sink() as sink:
            site = Site(Path(temp), count, sink.port)
            row: dict[str, Any] = {}
            row["check"] = measure_check(site, checks if count < 10000 else 1)
            row["inline"], row["edit"] = measure_inline(site, sink, runs)
            row["journal"] = site.journal_bytes()
            row["memory"], reload_times = measure_service(site, reloads if count < 10000 else 3)
            row["reload"] = p95(reload_times)
            results[count] = row
            print(
                f"{count:>7} {row['check']:>7.0f}ms {row['inline']:>7.0f}ms"
                f" {row['edit']:>7.0f}ms {row['journal']:>7.0f} B {row['memory']:>6.0f} MB"
                f" {row['reload']:>9.0f}ms",
                flush=True,
            )
    print()
    report(results)
    return 0


def report(results: dict[int, dict[str, Any]]) -> None:
    """Each target with the figures it is about."""

    def row(count: int) -> Optional[dict[str, Any]]:
        return results.get(count)

    def check_1000() -> Optional[tuple[str, bool]]:
        r = row(1000)
        return None if r is None else (f"{r['check'] / 1000:.2f} s", r["check"] < 1000)

    def check_10000() -> Optional[tuple[str, bool]]:
        r = row(10000)
        return None if r is None else (f"{r['check'] / 1000:.2f} s", r["check"] < 4000)

    def check_linear() -> Optional[tuple[str, bool]]:
        small, large = row(1000), row(10000)
        if small is None or large is None:
            return None
        ratio = (large["check"] / 10000) / (small["check"] / 1000)
        return f"{ratio:.2f}x the time per rule at 1,000", ratio <= 1.5

    def inline_ratio() -> Optional[tuple[str, bool]]:
        small, large = row(10), row(1000)
        if small is None or large is None:
            return None
        ratio = large["inline"] / small["inline"]
        text = f"{ratio:.2f}x ({large['inline']:.0f} ms against {small['inline']:.0f})"
        return text, ratio <= 1.2

    def inline_10000() -> Optional[tuple[str, bool]]:
        r = row(10000)
        return None if r is None else (f"{r['inline']:.0f} ms", r["inline"] < 400)

    def journal() -> Optional[tuple[str, bool]]:
        worst = max(r["journal"] for r in results.values())
        return f"at most {worst:.0f} bytes", worst <= 1.5 * KB

    def memory() -> Optional[tuple[str, bool]]:
        r = row(10000)
        return None if r is None else (f"{r['memory']:.0f} MB", r["memory"] <= 150)

    def reload_1000() -> Optional[tuple[str, bool]]:
        r = row(1000)
        return None if r is None else (f"{r['reload']:.0f} ms", r["reload"] < 300)

    def reload_10000() -> Optional[tuple[str, bool]]:
        r = row(10000)
        return None if r is None else (f"{r['reload']:.0f} ms", r["reload"] < 1000)

    lines: list[tuple[str, Callable[[], Optional[tuple[str, bool]]]]] = [
        ("router check, 1,000 rules: under 1 s", check_1000),
        ("router check, 10,000 rules: under 4 s", check_10000),
        ("router check linear: 10,000 at most 1.5x per rule", check_linear),
        ("inline handler, 1,000 rules: at most 1.2x 10 rules", inline_ratio),
        ("inline handler, 10,000 rules: under 400 ms", inline_10000),
        ("journal: at most 1.5 KB per event", journal),
        ("service memory, 10,000 rules: at most 150 MB", memory),
        ("rule edit to live, 1,000 rules: p95 under 300 ms", reload_1000),
        ("rule edit to live, 10,000 rules: p95 under 1 s", reload_10000),
    ]
    for target, measure in lines:
        figure = measure()
        if figure is None:
            print(f"  {target}: not measured (add its rule counts)")
        else:
            text, ok = figure
            print(f"  {target}: {text}  {verdict(ok)}")


if __name__ == "__main__":
    sys.exit(main())
