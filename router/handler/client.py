"""The handler's side of ``router serve``'s local socket.

One JSON object per line each way (router/service/local_socket.py has the service's
side): the handler sends the event, the service answers with the local
steps to perform, the handler reports what they did::

    handler -> {"op": "event", "uid": ..., "argv": [...], "host": ..., "received": ...}
    service <- {"ok": true, "event_id": N, "steps": [...], ...}
    handler -> {"op": "steps", "event_id": N, "results": [...]}   (only with steps)
    service <- {"ok": true}

The socket is in the state directory: a Unix socket, or, where there are
none, a loopback port whose number and token are in a private endpoint file.

Whoever answers there hands back programs to run, as root, so nothing is
sent unless the state directory, the socket and the endpoint file are
private to this user.

Standard library only, and only its cheap modules: the fast path imports
this for every event.
"""

from __future__ import annotations

import os
import time

from router import locations, trust
from router.handler.json_codec import dumps, loads

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Optional

#: How long to wait for the service to accept: it answers at once or not at all.
CONNECT_TIMEOUT = 0.2
#: How long to wait for its answer to an event before deciding inline (with
#: the same uid, so an event it did journal is not journaled twice): it
#: answers in milliseconds, so this much silence means it is stopped or hung.
REPLY_TIMEOUT = 1.0
#: How long to wait for it to acknowledge the steps' outcomes (they are
#: written to the journal directly when it does not).
REPORT_TIMEOUT = 2.0
#: The longest reply line read from the service.
MAX_REPLY = 16 * 1024 * 1024


class ServiceClient:
    """One connection to the service: a request out, its reply line back."""

    def __init__(self, connection: Any, token: Optional[str] = None) -> None:
        self.connection = connection
        #: Sent with the event on a loopback port (None on a Unix socket).
        self.token = token
        self._pending = bytearray()  # read past the last reply line

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    def send_event(self, args: list[str], uid: str) -> Optional[dict[str, Any]]:
        """Hand the service the event; its reply (see ``exchange``), which
        says whether it took the event and which local steps to perform."""
        import _socket

        message: dict[str, Any] = {
            "op": "event",
            "uid": uid,
            # ASCII-only JSON carries undecodable argv bytes (surrogate
            # escapes) to the service, which decodes them as the inline path does.
            "argv": list(args),
            "host": _socket.gethostname(),
            "received": received_now(),
        }
        if self.token is not None:
            message["token"] = self.token
        return self.exchange(message, REPLY_TIMEOUT)

    def report_steps(self, event_id: Any, results: list[dict[str, Any]]) -> bool:
        """Tell the service what the event's local steps did; False when it
        did not acknowledge that (it stopped or hung meanwhile)."""
        try:
            reply = self.exchange(
                {"op": "steps", "event_id": event_id, "results": results}, REPORT_TIMEOUT
            )
        except (OSError, ValueError):
            return False
        return reply is not None and reply.get("ok") is True

    def exchange(self, message: dict[str, Any], timeout: float) -> Optional[dict[str, Any]]:
        """Send ``message``; return the service's reply object.

        None when the connection ends before a whole reply line (or the line
        outgrows MAX_REPLY), or when the reply is not an object. The send
        and the whole reply take at most ``timeout`` seconds (a service that
        answers a byte at a time does not hold the handler longer), then a
        TimeoutError (an OSError) is raised; a reply that is not JSON raises
        ValueError."""
        deadline = time.monotonic() + timeout
        self.connection.settimeout(timeout)
        self.connection.sendall(dumps(message).encode("ascii") + b"\n")
        line = self._read_line(deadline)
        if line is None:
            return None
        reply = loads(line.decode("utf-8"))
        return reply if isinstance(reply, dict) else None

    def _read_line(self, deadline: float) -> Optional[bytes]:
        """One newline-terminated line, by ``deadline``; None at EOF before a whole line."""
        pending = self._pending
        while b"\n" not in pending:
            if len(pending) > MAX_REPLY:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the service did not answer in time")
            self.connection.settimeout(remaining)
            chunk = self.connection.recv(65536)
            if not chunk:
                return None
            pending += chunk
        line, _, rest = bytes(pending).partition(b"\n")
        pending[:] = rest
        return line


def connect(state_dir: str) -> Optional[ServiceClient]:
    """A connection to the service in ``state_dir``, or None when none
    answers at once, or when the directory, its socket or its endpoint file
    is not private to this user (the inline path then says why)."""
    import _socket

    found = _find_service(state_dir)
    if found is None:
        return None
    family, address, token = found
    connection = _socket.socket(family, _socket.SOCK_STREAM)
    try:
        connection.settimeout(CONNECT_TIMEOUT)
        connection.connect(address)
    except OSError:
        connection.close()
        return None
    return ServiceClient(connection, token)


def _find_service(state_dir: str) -> Optional[tuple[int, Any, Optional[str]]]:
    """(address family, address, token) of the service's socket, if it is
    one this user may trust: its Unix socket, else the loopback port and
    token in its endpoint file."""
    import _socket

    if trust.private_problem(state_dir):
        return None
    unix_path = os.path.join(state_dir, locations.SOCKET_NAME)
    if hasattr(_socket, "AF_UNIX") and os.path.exists(unix_path):
        if trust.private_problem(unix_path):
            return None
        return _socket.AF_UNIX, unix_path, None
    endpoint_path = os.path.join(state_dir, locations.ENDPOINT_NAME)
    try:
        if trust.private_problem(endpoint_path):
            return None
        with open(endpoint_path, encoding="utf-8") as handle:
            endpoint = loads(handle.read())
        return _socket.AF_INET, ("127.0.0.1", int(endpoint["port"])), str(endpoint["token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def received_now() -> str:
    """Now, local time, ISO 8601 with microseconds (datetime.fromisoformat reads it)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1e6):06d}"
