"""A local HTTP sink for the benchmarks: answers 200, records when each
notification arrived (by its message), and waits on a condition."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional


class Sink(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.arrivals: dict[str, list[float]] = {}
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def count(self) -> int:
        with self.cond:
            return sum(len(times) for times in self.arrivals.values())

    def wait_for(self, body: str, timeout: float) -> Optional[float]:
        with self.cond:
            if self.cond.wait_for(lambda: body in self.arrivals, timeout):
                return self.arrivals[body][0]
        return None

    def wait_count(self, count: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(
                lambda: sum(len(t) for t in self.arrivals.values()) >= count, timeout
            )

    def __enter__(self) -> Sink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _SinkHandler(BaseHTTPRequestHandler):
    server: Sink

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        at = time.perf_counter()
        try:
            key = str(json.loads(body)["message"])
        except (ValueError, KeyError, TypeError):
            key = body.decode("utf-8", "replace")
        with self.server.cond:
            self.server.arrivals.setdefault(key, []).append(at)
            self.server.cond.notify_all()
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass
