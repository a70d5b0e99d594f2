"""Benchmark: sustained events per second into the fleet's central routers.

The target (docs/design.md): two replicas on PostgreSQL take at least 500
events/s from 50 engines over HTTP. This script starts, on this machine, a
PostgreSQL cluster of its own (Debian's postgresql; as the postgres user
when run as root, like the tests) and, in one run:

  (a) one `router serve` on SQLite (the embedded default), for the yardstick;
  (b) one `router serve` on PostgreSQL;
  (c) two `router serve` replicas on the same PostgreSQL database,

then posts the same burst to each: ``--engines`` engines (threads, each from
its own loopback address, as on a network) sending ``--events`` events each
(runs of a start, eight sources and an end, every event journaled and its
run followed), to one replica or spread over both. It prints events/s
accepted, end to end (every event journaled), and the ratios.

Run by hand: `python bench/fleet.py [--engines 50 --events 100]`. A report,
not a test: it exits 0 whether or not the target is met (OVER TARGET).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
for path in (REPO_ROOT, REPO_ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

TARGET_EVENTS_PER_SECOND = 500.0
RULES = 'rule "log" on any log "{{ event }} {{ host }}"\n'


def start_replica(root: Path, state: str, port: int) -> subprocess.Popen:
    root.mkdir(mode=0o700)
    (root / "rules").mkdir(mode=0o700)
    (root / "rules" / "bench.rules").write_text(RULES, encoding="utf-8")
    store = f'state = "{state}"\n' if state else ""
    (root / "router.toml").write_text(
        f'rules_dir = "rules"\nstate_dir = "state"\n{store}'
        f'listen = "127.0.0.1:{port}"\nrate_limit = 0\n',
        encoding="utf-8",
    )
    env = {**os.environ, "ROUTER_CONFIG": str(root / "router.toml")}
    log = (root / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "router.cli", "serve"], cwd=root, env=env, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 60
    while b"ready:" not in (root / "serve.log").read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((root / "serve.log").read_text(errors="replace"))
        time.sleep(0.05)
    return process


def engine_events(number: int, count: int, tag: str) -> list[dict[str, Any]]:
    host = f"engine-{number:03d}"
    events: list[dict[str, Any]] = []
    run = 0
    while len(events) < count:
        events.append({"event": "StartScript", "args": ["Nightly", "11/28/2026 2:00 AM", ""]})
        for source in range(8):
            args = ["Nightly", f"ws{source}/C", "C:", f"ws{source}", "1024", "10", "9:00"]
            events.append({"event": "EndSource", "args": args + [""] * 7 + ["0", "0", "ok"]})
        events.append({"event": "EndScript", "args": ["Nightly", "0", "0", f"run-{run}"]})
        run += 1
    events = events[:count]
    for index, event in enumerate(events):
        event.update(host=host, uid=f"{tag}-{host}-{index}")
    return events


def burst(ports: list[int], engines: int, count: int, tag: str) -> float:
    """Every engine's events, engines at once; the events/s accepted."""

    def engine(number: int) -> None:
        port = ports[number % len(ports)]
        connection = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=30, source_address=(f"127.0.0.{number % 250 + 2}", 0)
        )
        for event in engine_events(number, count, tag):
            for _ in range(1000):  # 503 (all request slots busy) or 429: again, as engines do
                connection.request(
                    "POST", "/events", json.dumps(event), {"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    break
                if response.status not in (429, 503):
                    raise RuntimeError(f"{response.status} from port {port}")
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                time.sleep(0.2)  # (Retry-After says 1 s; a busy engine comes back sooner)
            else:
                raise RuntimeError(f"port {port} kept refusing")
        connection.close()

    threads = [threading.Thread(target=engine, args=(n,)) for n in range(engines)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return engines * count / (time.perf_counter() - started)


def main() -> int:
    from postgres_server import Server, server_bin
    from sinks import free_port

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=50)
    parser.add_argument("--events", type=int, default=100)
    args = parser.parse_args()
    bin_dir = server_bin()
    if bin_dir is None:
        print("no PostgreSQL server here (apt-get install postgresql)")
        return 0
    server = Server(bin_dir).start()
    work = Path(tempfile.mkdtemp(prefix="router-fleet-bench-"))
    processes: list[subprocess.Popen] = []
    try:
        results = {}
        for name, state, replicas in (
            ("one service on SQLite", "", 1),
            ("one replica on PostgreSQL", server.new_database(), 1),
            ("two replicas on PostgreSQL", server.new_database(), 2),
        ):
            ports = [free_port() for _ in range(replicas)]
            started = [
                start_replica(work / f"{len(results)}-{n}", state, port)
                for n, port in enumerate(ports)
            ]
            processes += started
            burst(ports, 5, 20, f"warm{len(results)}")  # imports, caches, connections
            results[name] = burst(ports, args.engines, args.events, f"b{len(results)}")
            for process in started:
                process.terminate()
                process.wait(timeout=30)
        sqlite = results["one service on SQLite"]
        total = args.engines * args.events
        print(
            f"{args.engines} engines x {args.events} events ({total:,}) over HTTP, each journaled:"
        )
        for name, rate in results.items():
            ratio = rate / sqlite
            print(f"  {name}: {rate:,.0f} events/s ({ratio:.2f}x SQLite)")
        two = results["two replicas on PostgreSQL"]
        verdict = "ok" if two >= TARGET_EVENTS_PER_SECOND else "OVER TARGET"
        target = f"target >= {TARGET_EVENTS_PER_SECOND:.0f}"
        print(f"two replicas: {two:,.0f} events/s ({target}: {verdict})")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
