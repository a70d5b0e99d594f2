"""The handlers' way in: the local socket (SECURITY.md).

A Unix domain socket in the state directory, private to the router's user
(0600 in the 0700 directory). Where Unix sockets are not available
(Windows), a loopback TCP port instead, with its port and a random token in
a private file in the state directory; the handler reads that file and
sends the token with the event.

Protocol: one connection per event, newline-delimited UTF-8 JSON::

    handler -> {"op": "event", "uid": "...", "argv": [EVENT, ARG...],
                "host": "...", "received": "<ISO local time>"}
    service <- {"ok": true, "event_id": N, "steps": [LocalStep...], "exit_hint": 0}
    handler -> {"op": "steps", "event_id": N, "results": [...]}   (only with steps)
    service <- {"ok": true}

Steps are reported once, by whoever received the event: here, the
connection that sent it. Errors are ``{"ok": false, "error": "..."}``; the
handler then takes the inline path with the same uid.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import socketserver
import threading
import time
from pathlib import Path
from typing import Any, Optional

from router.locations import ENDPOINT_NAME, SOCKET_NAME
from router.service.intake import IntakeOwner, serve_in_thread
from router.service.requests import (
    MAX_BODY,
    READ_TIMEOUT,
    RequestError,
    parse_json_object,
    reply_for,
    socket_event,
    socket_steps,
)
from router.steps import time_allowed
from router.store import STEPS_RECORDED
from router.trust import write_private

#: The intake's log lines keep the name they have always had.
log = logging.getLogger("router.intake")

#: After a stop is asked for, how long a handler still performing its steps
#: may take to report them before the service stops waiting (the handler
#: then writes them to the journal itself).
STEPS_GRACE = 10.0


class _LocalHandler(socketserver.BaseRequestHandler):
    """One handler's connection. Lines are read from the raw socket with
    short timeouts (a buffered file's state is undefined after a timeout),
    so a stop request is noticed while a handler is still running programs."""

    server: _LocalMixin
    #: How often a wait checks whether the service is stopping.
    TICK = 0.5

    def setup(self) -> None:
        self.request.settimeout(self.TICK)
        self.pending = bytearray()

    def _send(self, message: dict[str, Any]) -> None:
        self.request.sendall(json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n")

    def _read(self, deadline: Optional[float] = None) -> Optional[dict[str, Any]]:
        """One JSON line; None at EOF. Waits until ``deadline`` (a monotonic
        time; default READ_TIMEOUT from now), and at most STEPS_GRACE once
        the service is stopping."""
        deadline = time.monotonic() + READ_TIMEOUT if deadline is None else deadline
        stopping_since: Optional[float] = None
        while b"\n" not in self.pending:
            if len(self.pending) > MAX_BODY:
                raise RequestError("message larger than 1 MiB", 413)
            try:
                chunk = self.request.recv(65536)
            except socket.timeout:
                now = time.monotonic()
                if now >= deadline:
                    raise RequestError("timed out waiting for the message") from None
                if self.server.owner.stopping.is_set():
                    stopping_since = stopping_since or now
                    if now - stopping_since > STEPS_GRACE:
                        raise RequestError("the service is stopping") from None
                continue
            if not chunk:
                return None
            self.pending += chunk
        line, _, rest = bytes(self.pending).partition(b"\n")
        self.pending[:] = rest
        if len(line) > MAX_BODY:
            raise RequestError("message larger than 1 MiB", 413)
        return parse_json_object(line, "the message")

    def handle(self) -> None:
        try:
            self._handle()
        except OSError as exc:  # the handler went away; it copes (inline, or records itself)
            log.debug("local socket: connection lost: %s", exc)

    def _handle(self) -> None:
        owner = self.server.owner
        try:
            message = self._read()
            if message is None:
                return
            request = socket_event(message, self.server.token)
        except RequestError as exc:
            self._refuse(str(exc))
            return
        try:
            outcome = owner.ingest(request, origin="service")
        except Exception as exc:  # the handler goes inline (same uid: never twice)
            log.exception("ingesting %s failed", request.argv[0])
            self._refuse(f"internal error: {type(exc).__name__}: {exc}")
            return
        try:
            self._send(reply_for(outcome))
        except OSError:  # the handler gave up waiting; it goes inline with the same uid
            return
        if not outcome.steps or outcome.event_id is None:  # (the owner journals every event)
            return
        # The handler performs the steps now (programs may run for minutes:
        # wait as long as their timeouts allow), then reports what they did.
        deadline = time.monotonic() + time_allowed(outcome.steps) + READ_TIMEOUT
        try:
            message = self._read(deadline)
            if message is None:
                return  # the handler went away; it records the outcomes itself
            report = socket_steps(message, outcome.event_id)
        except RequestError as exc:
            self._refuse(str(exc))
            return
        done = owner.record_steps(outcome.event_id, report.results)
        if done != STEPS_RECORDED:
            self._refuse(f"event #{outcome.event_id}: {done}")
            return
        with contextlib.suppress(OSError):
            self._send({"ok": True})

    def _refuse(self, error: str) -> None:
        log.warning("local socket: refused a request: %s", error)
        with contextlib.suppress(OSError):
            self._send({"ok": False, "error": error})


class _LocalMixin(socketserver.ThreadingMixIn):
    daemon_threads = False
    block_on_close = True  # server_close() waits for the events in progress
    owner: IntakeOwner
    token: Optional[str] = None


class _UnixServer(_LocalMixin, socketserver.UnixStreamServer):
    request_queue_size = 128


class _TcpServer(_LocalMixin, socketserver.TCPServer):
    request_queue_size = 128
    allow_reuse_address = False


class LocalServer:
    """The handlers' way in: ``state_dir/router.sock``, or loopback TCP with a
    token file where Unix sockets are not available (``local_socket = "tcp"``)."""

    def __init__(self, owner: IntakeOwner, state_dir: Path, mode: str = "auto") -> None:
        self.owner = owner
        self.state_dir = Path(state_dir)
        if mode == "auto":
            mode = "unix" if hasattr(socket, "AF_UNIX") else "tcp"
        if mode not in ("unix", "tcp"):
            raise ValueError(f'local_socket must be "unix" or "tcp", not {mode!r}')
        self.mode = mode
        self.path = self.state_dir / (SOCKET_NAME if mode == "unix" else ENDPOINT_NAME)
        self._server: Optional[socketserver.BaseServer] = None
        self._thread: Optional[threading.Thread] = None
        self._inode: Optional[tuple[int, int]] = None

    def describe(self) -> str:
        if self.mode == "unix":
            return f"local socket {self.path}"
        assert self._server is not None
        return f"local loopback port {self._server.server_address[1]} (token in {self.path})"

    def start(self) -> None:
        if self.mode == "unix":
            self._start_unix()
        else:
            self._start_tcp()
        assert self._server is not None
        self._thread = serve_in_thread(self._server, "router-local")

    def _start_unix(self) -> None:
        path = str(self.path)
        if os.path.lexists(path):
            if _answers_unix(path):
                raise RuntimeError(f"another service already answers on {path}")
            os.unlink(path)  # stale: left by a service that was killed
        old_umask = os.umask(0o077)  # the socket file is created 0600
        try:
            server = _UnixServer(path, _LocalHandler)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        info = os.stat(path)
        self._inode = (info.st_dev, info.st_ino)
        server.owner = self.owner
        self._server = server

    def _start_tcp(self) -> None:
        if self.path.exists() and _answers_tcp(self.path):
            raise RuntimeError(f"another service already answers on the port in {self.path}")
        server = _TcpServer(("127.0.0.1", 0), _LocalHandler)
        server.owner = self.owner
        server.token = secrets.token_hex(16)
        endpoint = {"port": server.server_address[1], "token": server.token, "pid": os.getpid()}
        write_private(self.path, json.dumps(endpoint).encode("utf-8"))
        info = os.stat(self.path)
        self._inode = (info.st_dev, info.st_ino)
        self._server = server

    def stop_accepting(self) -> None:
        """New handlers find no socket (and go inline at once); the loop ends;
        connections still queued are reset, so their handlers go inline too."""
        self._remove_file()
        if self._server is not None:
            self._server.shutdown()
            self._server.socket.close()

    def close(self) -> None:
        """Wait for the events in progress, then release everything."""
        if self._server is not None:
            self._server.server_close()  # joins the connection threads
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _remove_file(self) -> None:
        """Remove the socket or endpoint file if it is still ours (a second
        service started after ours must keep its own)."""
        with contextlib.suppress(OSError):
            info = os.stat(self.path)
            if (info.st_dev, info.st_ino) == self._inode:
                os.unlink(self.path)


def _answers_unix(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _answers_tcp(endpoint_file: Path) -> bool:
    try:
        port = int(json.loads(endpoint_file.read_text(encoding="utf-8"))["port"])
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except (OSError, ValueError, KeyError, TypeError):
        return False
