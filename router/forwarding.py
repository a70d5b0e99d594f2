"""An engine's events to the central routers (``forward`` in router.toml):
each event posted to the first router that answers, over HTTPS, with the
engine's bearer token and an id made at the engine (``uid``), so the centre
journals it once however often it is sent.

When no router answers in time, the event waits in the engine's forward
spool (``STATE_DIR/forward/``, oldest first) with the outcomes of the local
steps the engine's own rules decided meanwhile; a later handler, or
``router forward --flush``, sends the spool in order before anything newer,
and reports those outcomes, so the centre's journal ends up complete.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from router.trust import Untrusted, private_problem, write_private

FORWARD_DIR = "forward"
SUFFIX = ".forward.json"
#: One router's share of the time left: the next gets a chance too.
PER_ROUTER = 0.6


class NotForwarded(Exception):
    """No central router took the event (each one's reason in the message)."""


@dataclass
class Taken:
    """A central router's answer: the event's id there, the local steps to
    perform, and how to report their outcomes."""

    url: str
    event_id: Optional[int]
    steps: list[dict[str, Any]]
    steps_token: Optional[str]


def event_body(argv: list[str], uid: str, received: Optional[datetime] = None) -> dict[str, Any]:
    """``POST /events``'s body for one invocation of the handler."""
    when = received or datetime.now()
    return {
        "event": argv[0],
        "args": list(argv[1:]),
        "host": socket.gethostname(),
        "received": when.isoformat(timespec="seconds"),
        "uid": uid,
    }


def problem_with(url: str, insecure: bool) -> Optional[str]:
    """Why ``url`` may not be used: plain HTTP off loopback carries the token
    in clear, unless the admin said so (``insecure_http``)."""
    parts = urlsplit(url)
    if parts.scheme == "https" or insecure:
        return None
    host = parts.hostname or ""
    if host in ("localhost", "127.0.0.1", "::1") or host.startswith("127."):
        return None
    return f"{url}: plain HTTP off loopback would send the token in clear (use https://)"


def _connection(url: str, timeout: float, ca: Optional[Path]) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    return http.client.HTTPConnection(host, port, timeout=timeout)


def _post(url: str, path: str, body: dict[str, Any], config: Any, timeout: float) -> dict:
    """One POST; its JSON reply. Raises OSError, ssl.SSLError or NotForwarded."""
    headers = {"Content-Type": "application/json"}
    if config.forward_token:
        headers["Authorization"] = f"Bearer {config.forward_token}"
    connection = _connection(url, timeout, config.forward_ca)
    try:
        connection.request("POST", path, json.dumps(body).encode("utf-8"), headers)
        response = connection.getresponse()
        data = response.read(1024 * 1024)
    finally:
        connection.close()
    try:
        reply = json.loads(data.decode("utf-8"))
    except ValueError:
        reply = {}
    if response.status != 200 or not isinstance(reply, dict) or reply.get("ok") is not True:
        error = reply.get("error") if isinstance(reply, dict) else None
        raise NotForwarded(f"{url}: {response.status} {error or response.reason}")
    return reply


def send(body: dict[str, Any], config: Any, deadline: float) -> Taken:
    """``body`` to the first router that takes it before ``deadline``.
    NotForwarded, with every router's reason, when none does."""
    reasons = []
    routers = list(config.forward)
    for position, url in enumerate(routers):
        problem = problem_with(url, config.insecure_http)
        left = deadline - time.time()
        if problem or left <= 0:
            reasons.append(problem or f"{url}: no time left")
            continue
        share = left if position == len(routers) - 1 else left * PER_ROUTER
        try:
            reply = _post(url, "/events", body, config, max(share, 0.1))
        except (OSError, http.client.HTTPException, NotForwarded) as exc:
            reasons.append(str(exc) if isinstance(exc, NotForwarded) else f"{url}: {exc}")
            continue
        event_id = reply.get("event_id")
        return Taken(url, event_id, list(reply.get("steps") or []), reply.get("steps_token"))
    raise NotForwarded("; ".join(reasons) or "no router to forward to (forward is empty)")


def report(taken: Taken, results: list[dict[str, Any]], config: Any, deadline: float) -> bool:
    """The local steps' outcomes to the router that took the event."""
    if taken.event_id is None or not taken.steps_token or not results:
        return False
    body = {"results": results, "steps_token": taken.steps_token}
    try:
        timeout = max(deadline - time.time(), 1.0)
        _post(taken.url, f"/events/{taken.event_id}/steps", body, config, timeout)
    except (OSError, http.client.HTTPException, NotForwarded):
        return False
    return True


# ---------------------------------------------------------------------------
# The forward spool: events no router took, oldest first
# ---------------------------------------------------------------------------


def spool(state_dir: Path, body: dict[str, Any], results: list[dict[str, Any]]) -> Path:
    """Keep an event (and its local steps' outcomes) for a later forward."""
    name = f"{time.time_ns():020d}-{body['uid']}{SUFFIX}"
    path = Path(state_dir) / FORWARD_DIR / name
    record = {"body": body, "results": results}
    write_private(path, json.dumps(record, ensure_ascii=False).encode("utf-8"))
    return path


def pending(state_dir: Path) -> list[Path]:
    """The spooled events, oldest first (never another user's directory)."""
    directory = Path(state_dir) / FORWARD_DIR
    if not directory.is_dir() or private_problem(directory):
        return []
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX))
    except OSError:
        return []
    return [directory / name for name in names]


def flush(config: Any, deadline: float) -> tuple[int, list[str]]:
    """Forward the spool in order until it is empty, a router refuses, or
    ``deadline``: (how many went, what stopped it). The steps they carry
    were performed here already: their outcomes are reported, never
    performed again."""
    sent = 0
    for path in pending(config.state_dir):
        if time.time() >= deadline:
            return sent, ["out of time; the rest waits for the next handler"]
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            body = record["body"]
        except (OSError, ValueError, KeyError, Untrusted) as exc:
            return sent, [f"{path.name}: unreadable ({exc}); left in place"]
        try:
            taken = send(body, config, deadline)
        except NotForwarded as exc:
            return sent, [str(exc)]
        report(taken, list(record.get("results") or []), config, deadline)
        try:
            path.unlink()
        except OSError as exc:
            return sent + 1, [f"{path.name}: forwarded but not removed ({exc})"]
        sent += 1
    return sent, []
