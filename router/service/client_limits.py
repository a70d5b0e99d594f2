"""Per-client bounds on HTTP: request size, time and rate are bounded (docs/design.md).

Checked when a connection is accepted, before a thread is spent on it. The
HTTP server answers HTTP/1.0 and closes after each response, so one
connection is one request: the rate is counted per connection.

A client is its remote IP address. The rate is a token bucket per client
(``rate`` requests per second sustained, bursts of ``BURST_SECONDS`` times
that); a client idle long enough for its bucket to fill again is forgotten,
so the buckets' memory follows the clients of the last few seconds.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

#: A client may send this many seconds' worth of requests at once (200).
BURST_SECONDS = 2.0
#: Open connections in all: each holds a thread.
MAX_CONNECTIONS = 128
#: Past this many buckets, idle clients are forgotten (at most every
#: BURST_SECONDS, so a flood of new addresses costs no quadratic work).
PRUNE_ABOVE = 1024


@dataclass
class Refusal:
    """Why a connection is refused: the HTTP status, a message, and when to
    try again (seconds, for Retry-After)."""

    status: int
    message: str
    retry_after: int


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class ClientLimits:
    """Open connections per client and in all, and each client's rate."""

    #: Requests per second per client; 0: no limit (router.toml: ``rate_limit``).
    rate: float
    #: Open connections per client (router.toml: ``max_client_connections``).
    max_per_client: int
    max_total: int = MAX_CONNECTIONS
    _open: dict[str, int] = field(default_factory=dict)
    _total: int = 0
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _pruned: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def burst(self) -> float:
        return max(self.rate * BURST_SECONDS, 1.0)

    def admit(self, client: str, now: Optional[float] = None) -> Optional[Refusal]:
        """Count a new connection from ``client`` (``release`` it when it
        closes); or, counting nothing, say why it is refused."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._total >= self.max_total:
                return Refusal(503, "too many connections; try again", 1)
            if self._open.get(client, 0) >= self.max_per_client:
                message = f"more than {self.max_per_client} open connections from {client}"
                return Refusal(429, message, 1)
            wait = self._take(client, now) if self.rate > 0 else 0.0
            if wait > 0:
                message = f"more than {self.rate:g} requests per second from {client}"
                return Refusal(429, message, max(1, math.ceil(wait)))
            self._open[client] = self._open.get(client, 0) + 1
            self._total += 1
        return None

    def release(self, client: str) -> None:
        with self._lock:
            left = self._open.get(client, 0) - 1
            if left > 0:
                self._open[client] = left
            else:
                self._open.pop(client, None)
            self._total = max(self._total - 1, 0)

    def tracked(self) -> int:
        """How many clients are remembered (buckets or open connections)."""
        with self._lock:
            return len(set(self._buckets) | set(self._open))

    def _take(self, client: str, now: float) -> float:
        """Take one request from the client's bucket: 0, or the seconds
        until there is one to take."""
        if len(self._buckets) > PRUNE_ABOVE and now - self._pruned >= BURST_SECONDS:
            self._prune(now)
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens < 1.0:
            return (1.0 - bucket.tokens) / self.rate
        bucket.tokens -= 1.0
        return 0.0

    def _prune(self, now: float) -> None:
        """Forget the clients whose buckets are full again: a new bucket
        starts full, so nothing changes for them."""
        self._pruned = now
        idle = [
            client
            for client, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.at) * self.rate >= self.burst
        ]
        for client in idle:
            del self._buckets[client]
