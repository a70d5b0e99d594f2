"""How events reach the service: the local socket for handlers, HTTP for the rest.

The local socket (SECURITY.md): a Unix domain socket in the state
directory, private to the router's user (0600 in the 0700 directory). Where
Unix sockets are not available (Windows), a loopback TCP port instead, with
its port and a random token in a private file in the state directory; the
handler reads that file and sends the token with the event.

Protocol: one connection per event, newline-delimited UTF-8 JSON::

    handler -> {"op": "event", "uid": "...", "argv": [EVENT, ARG...],
                "host": "...", "received": "<ISO local time>"}
    service <- {"ok": true, "event_id": N, "steps": [LocalStep...], "exit_hint": 0}
    handler -> {"op": "steps", "event_id": N, "results": [...]}   (only with steps)
    service <- {"ok": true}

Steps are reported once, by whoever received the event: on the socket, the
connection that sent it; over HTTP, the holder of the one-time
``steps_token`` in the reply to ``POST /events`` (only its hash is stored).
Every report is checked the same way (``parse_results``).

Errors are ``{"ok": false, "error": "..."}``; the handler then takes the
inline path with the same uid.

HTTP (``router serve --listen HOST:PORT`` or ``listen`` in router.toml):
``POST /events`` with ``{event, args, host, received}`` for remote engines
and clients (answered with the event's local steps, which the caller must
perform on its machine, and may report with ``POST /events/N/steps``),
``GET /healthz`` and ``GET /metrics``. A bearer token is required on any
address but loopback (and everywhere with ``require_token = true``); the
body is at most 1 MiB; a malformed request gets a 4xx with a JSON error and
stores nothing. Slow or greedy clients are bounded: the whole request must
arrive within ``REQUEST_DEADLINE`` of the accept; a client may hold
``max_client_connections`` connections and send ``rate_limit`` requests
per second (``router.service.client_limits``; beyond either it gets 429 at once, without
a thread); at most ``MAX_HTTP_REQUESTS`` requests are processed at once,
each taking its slot only once its body has been read.
"""

from __future__ import annotations

import collections
import contextlib
import hmac
import io
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
import socketserver
import sys
import threading
import time
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from router.events import parse_int
from router.locations import ENDPOINT_NAME, SOCKET_NAME
from router.service.client_limits import ClientLimits, Refusal
from router.steps import check_results
from router.store import ALREADY_REPORTED, NO_EVENT, STEPS_RECORDED, WRONG_TOKEN

if TYPE_CHECKING:
    from router.service import Service

log = logging.getLogger("router.ingest")

#: The largest event a client may send (the issue: 1 MiB).
MAX_BODY = 1024 * 1024
#: How much of a refused body is read and thrown away, and for how long.
DRAIN_LIMIT = 4 * MAX_BODY
DRAIN_TIMEOUT = 1.0
#: How long a client may take to send its request (slow clients hold a thread).
READ_TIMEOUT = 10.0
#: HTTP: the whole request, headers and body, must arrive within this long
#: of the accept, however it trickles in.
REQUEST_DEADLINE = 10.0
#: After a stop is asked for, how long a handler still performing its steps
#: may take to report them before the service stops waiting (the handler
#: then writes them to the journal itself).
STEPS_GRACE = 10.0
#: HTTP requests served at once; more are answered 503.
MAX_HTTP_REQUESTS = 32
#: A refused connection is kept (reading and discarding) at most this long,
#: and at most this many are.
REFUSED_LINGER, MAX_LINGERING = 1.0, 256
#: The longest event name, argument list, argument, host and uid accepted.
MAX_NAME, MAX_ARGS, MAX_ARG, MAX_HOST, MAX_UID = 200, 1000, 64 * 1024, 255, 128
#: ``received`` must fall in these years (local time): an engine's clock
#: outside them is wrong, and date arithmetic near year 1 or 9999 overflows.
RECEIVED_YEARS = (1970, 9999)


#: A steps report: at most this many results, of these kinds...
class RequestError(Exception):
    """A request the service refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------
# Validating what arrives
# ---------------------------------------------------------------------------


def _text(value: Any, name: str, limit: int, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise RequestError(f"{name} must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise RequestError(f"{name} is longer than {limit} characters")
    if not empty and not value:
        raise RequestError(f"{name} must not be empty")
    return value


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """``data`` as a JSON object; RequestError for anything else (deep
    nesting included: json raises RecursionError for that)."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RequestError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RequestError(f"{what} must be a JSON object")
    return value


def parse_received(value: Any) -> Optional[datetime]:
    """An ISO 8601 time as local naive time (the engine's clock); None if absent."""
    if value is None:
        return None
    text = _text(value, "received", 64, empty=False)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise RequestError(f"received is not an ISO 8601 date and time: {text!r}") from None
    try:
        if when.tzinfo is not None:
            when = when.astimezone().replace(tzinfo=None)
        when.timestamp()  # what throttles and timers compute with
    except (OverflowError, ValueError, OSError):
        when = None
    if when is None or not RECEIVED_YEARS[0] <= when.year <= RECEIVED_YEARS[1]:
        low, high = RECEIVED_YEARS
        raise RequestError(f"received is not between the years {low} and {high}: {text!r}")
    return when


def parse_uid(value: Any) -> Optional[str]:
    if value is None:
        return None
    return _text(value, "uid", MAX_UID, empty=False)


def parse_argv(event: Any, args: Any) -> list[str]:
    name = _text(event, "event", MAX_NAME, empty=False)
    if not isinstance(args, list):
        raise RequestError(f"args must be a list of strings, not {type(args).__name__}")
    if len(args) > MAX_ARGS:
        raise RequestError(f"args has more than {MAX_ARGS} items")
    return [name] + [_text(a, f"args[{i}]", MAX_ARG) for i, a in enumerate(args)]


def parse_results(results: Any) -> list[dict[str, Any]]:
    """A steps report's results (``router.steps.check_results``), the
    socket's and HTTP's alike; RequestError when they are not."""
    try:
        return check_results(results)
    except ValueError as exc:
        raise RequestError(str(exc)) from None


def check_keys(message: dict[str, Any], allowed: set[str], where: str = "") -> None:
    unknown = sorted(set(message) - allowed)
    if unknown:
        prefix = f"{where}: " if where else ""
        raise RequestError(f"{prefix}unknown field(s): {', '.join(unknown)}")


def reply_for(outcome: Any) -> dict[str, Any]:
    """What the caller gets back: the journal id and the local steps to perform."""
    steps = [step.to_json() for step in outcome.steps]
    aborts = any(step.kind == "abort" for step in outcome.steps)
    return {"ok": True, "event_id": outcome.event_id, "steps": steps, "exit_hint": int(aborts)}


# ---------------------------------------------------------------------------
# The local socket
# ---------------------------------------------------------------------------


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
                if self.server.service.stopping.is_set():
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
        service = self.server.service
        try:
            message = self._read()
            if message is None:
                return
            if message.get("op") != "event":
                raise RequestError(f"expected op 'event', not {message.get('op')!r}")
            check_keys(message, {"op", "uid", "argv", "host", "received", "token"})
            if self.server.token is not None and not hmac.compare_digest(
                str(message.get("token", "")).encode(), self.server.token.encode()
            ):
                raise RequestError("wrong or missing token", 401)
            argv = message.get("argv")
            if not isinstance(argv, list) or not argv:
                raise RequestError("argv must be a non-empty list of strings")
            argv = parse_argv(argv[0], argv[1:])
            host = message.get("host")
            host = None if host is None else _text(host, "host", MAX_HOST)
            received = parse_received(message.get("received"))
            uid = parse_uid(message.get("uid"))
        except RequestError as exc:
            self._refuse(str(exc))
            return
        try:
            outcome = service.ingest(argv, host=host, received=received, uid=uid, origin="service")
        except Exception as exc:  # the handler goes inline (same uid: never twice)
            log.exception("ingesting %s failed", argv[0])
            self._refuse(f"internal error: {type(exc).__name__}: {exc}")
            return
        try:
            self._send(reply_for(outcome))
        except OSError:  # the handler gave up waiting; it goes inline with the same uid
            return
        if not outcome.steps:
            return
        # The handler performs the steps now (programs may run for minutes:
        # wait as long as their timeouts allow), then reports what they did.
        deadline = time.monotonic() + _steps_time(outcome.steps) + READ_TIMEOUT
        try:
            report = self._read(deadline)
            if report is None:
                return  # the handler went away; it records the outcomes itself
            if report.get("op") != "steps" or report.get("event_id") != outcome.event_id:
                raise RequestError("expected op 'steps' for this event")
            check_keys(report, {"op", "event_id", "results", "token"})
            results = parse_results(report.get("results"))
        except RequestError as exc:
            self._refuse(str(exc))
            return
        done = service.record_steps(outcome.event_id, results)
        if done != STEPS_RECORDED:
            self._refuse(f"event #{outcome.event_id}: {done}")
            return
        with contextlib.suppress(OSError):
            self._send({"ok": True})

    def _refuse(self, error: str) -> None:
        log.warning("local socket: refused a request: %s", error)
        with contextlib.suppress(OSError):
            self._send({"ok": False, "error": error})


def _steps_time(steps: list[Any]) -> float:
    """The longest the steps may take: every program's timeout, fallbacks included."""
    total = 0.0
    for step in steps:
        current = step
        while current is not None:
            total += current.timeout if current.kind == "run" else 1.0
            current = current.fallback
    return total


class _LocalMixin(socketserver.ThreadingMixIn):
    daemon_threads = False
    block_on_close = True  # server_close() waits for the events in progress
    service: Service
    token: Optional[str] = None


class _UnixServer(_LocalMixin, socketserver.UnixStreamServer):
    request_queue_size = 128


class _TcpServer(_LocalMixin, socketserver.TCPServer):
    request_queue_size = 128
    allow_reuse_address = False


class LocalServer:
    """The handlers' way in: ``state_dir/router.sock``, or loopback TCP with a
    token file where Unix sockets are not available (``local_socket = "tcp"``)."""

    def __init__(self, service: Service, state_dir: Path, mode: str = "auto") -> None:
        self.service = service
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
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="router-local",
            daemon=True,
        )
        self._thread.start()

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
        server.service = self.service
        self._server = server

    def _start_tcp(self) -> None:
        if self.path.exists() and _answers_tcp(self.path):
            raise RuntimeError(f"another service already answers on the port in {self.path}")
        server = _TcpServer(("127.0.0.1", 0), _LocalHandler)
        server.service = self.service
        server.token = secrets.token_hex(16)
        endpoint = {"port": server.server_address[1], "token": server.token, "pid": os.getpid()}
        temp = self.path.with_name(f".{ENDPOINT_NAME}.{os.getpid()}")
        fd = os.open(str(temp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(endpoint))
        os.replace(temp, self.path)
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


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a bind address."""
    host, sep, port = str(value).strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen must be HOST:PORT, not {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything, so it is not loopback


_STEPS_PATH = re.compile(r"/events/([0-9]+)/steps")
#: What a refused steps report is answered with.
_STEPS_REFUSED = {NO_EVENT: 404, WRONG_TOKEN: 403, ALREADY_REPORTED: 409}


class _DeadlineReader(io.RawIOBase):
    """The connection's bytes, every recv waiting at most until one deadline
    for the whole request: a client trickling a byte every few seconds runs
    out of time like one that sends nothing. Past it, reads raise
    socket.timeout (http.server closes the connection on that)."""

    def __init__(self, connection: socket.socket, deadline: float, idle: float) -> None:
        super().__init__()
        self.connection = connection
        self.deadline = deadline
        self.idle = idle  # the connection's timeout between reads (for writes)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("the request did not arrive in time")
        self.connection.settimeout(remaining)
        try:
            return self.connection.recv_into(buffer)
        finally:
            self.connection.settimeout(self.idle)


class _HttpHandler(BaseHTTPRequestHandler):
    server: _HttpServer
    server_version = "retro-router"
    sys_version = ""
    timeout = READ_TIMEOUT  # for writes; reads are bounded by REQUEST_DEADLINE
    #: Bytes of a refused body still on their way (see ``finish``).
    refused_body = 0

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # replaced: every read is bounded by the deadline
        deadline = time.monotonic() + REQUEST_DEADLINE
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, deadline, self.timeout))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        log.debug("http %s: %s", self.address_string(), format % args)

    def finish(self) -> None:
        """After refusing an oversized body unread, let the client finish
        sending (a bounded amount, briefly) before closing: closing on
        unread data resets the connection, and the client would see a
        broken pipe instead of the 413 already sent to it."""
        super().finish()
        if not self.refused_body:
            return
        try:
            self.connection.shutdown(socket.SHUT_WR)
            reader = _DeadlineReader(
                self.connection, time.monotonic() + DRAIN_TIMEOUT, DRAIN_TIMEOUT
            )
            remaining = min(self.refused_body, DRAIN_LIMIT)
            chunk = bytearray(65536)
            while remaining > 0:
                got = reader.readinto(memoryview(chunk)[: min(len(chunk), remaining)])
                if not got:
                    break
                remaining -= got
        except OSError:
            pass  # the client went away, or took too long: nothing left to protect

    def _reply(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8") + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="retro-router"')
        if status in (429, 503):
            self.send_header("Retry-After", "1")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._reply(status, {"ok": False, "error": message})

    def _authorized(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), token.encode()
        )

    def _dispatch(self, method: str) -> None:
        """Authorize, route, read the body, then take a request slot: a slow
        sender holds its own thread until the deadline, never a slot."""
        path = self.path.split("?", 1)[0]
        try:
            if not self._authorized():
                raise RequestError("a bearer token is required (Authorization: Bearer ...)", 401)
            route = self._route(method, path)
            body = self._body() if method == "POST" else {}
            if not self.server.slots.acquire(blocking=False):
                raise RequestError("too many requests at once; try again", 503)
            try:
                route(body)
            finally:
                self.server.slots.release()
        except RequestError as exc:
            self._error(exc.status, str(exc))
        except OSError:
            raise  # the client went away: the server's handle_error says so
        except Exception as exc:  # a bug: answer, log it, serve on
            log.exception("http: %s %s failed", method, path)
            self._error(500, f"internal error: {type(exc).__name__}")

    def _route(self, method: str, path: str) -> Callable[[dict[str, Any]], None]:
        routes: dict[tuple[str, str], Callable[[dict[str, Any]], None]] = {
            ("GET", "/healthz"): self._healthz,
            ("GET", "/livez"): self._livez,
            ("GET", "/metrics"): self._metrics,
            ("POST", "/events"): self._post_event,
        }
        route = routes.get((method, path))
        if route is not None:
            return route
        match = _STEPS_PATH.fullmatch(path)
        if match and method == "POST":
            event_id = parse_int(match.group(1))  # None: beyond any event id
            return lambda body: self._post_steps(event_id, body)
        if path in ("/healthz", "/livez", "/metrics", "/events") or match:
            raise RequestError(f"{method} is not allowed on {path}", 405)
        raise RequestError(f"no such resource: {path}", 404)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _body(self) -> dict[str, Any]:
        """The request's JSON object, bounded before a byte of it is read."""
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            raise RequestError("send a Content-Length, not a chunked body", 411)
        if length is None:
            raise RequestError("Content-Length is required", 411)
        digits = length.strip()
        if not (digits.isascii() and digits.isdigit()):  # "²" is a digit to isdigit
            raise RequestError("Content-Length is not a number")
        size = parse_int(digits)  # None: more digits than any body has
        if size is None or size > MAX_BODY:
            self.close_connection = True  # the body is not read...
            self.refused_body = DRAIN_LIMIT if size is None else size  # ...but drained a little
            shown = f"{size} bytes" if size is not None else "too large"
            raise RequestError(f"the body is {shown}; at most {MAX_BODY} bytes are accepted", 413)
        try:
            data = self.rfile.read(size)
        except socket.timeout:
            self.close_connection = True
            raise RequestError(
                f"the request did not arrive within {REQUEST_DEADLINE:g} s", 408
            ) from None
        if len(data) < size:
            raise RequestError("the body ended before Content-Length bytes")
        return parse_json_object(data, "the body")

    def _post_event(self, body: dict[str, Any]) -> None:
        check_keys(body, {"event", "args", "host", "received", "uid"})
        if "event" not in body or "args" not in body:
            raise RequestError("event and args are required")
        argv = parse_argv(body["event"], body["args"])
        host = body.get("host")
        host = self.client_address[0] if host is None else _text(host, "host", MAX_HOST)
        received = parse_received(body.get("received"))
        uid = parse_uid(body.get("uid"))
        service = self.server.service
        outcome = service.ingest(argv, host=host, received=received, uid=uid, origin="http")
        reply = reply_for(outcome)
        reply["steps_token"] = service.issue_steps_token(outcome.event_id)
        self._reply(200, reply)

    def _post_steps(self, event_id: Optional[int], body: dict[str, Any]) -> None:
        """Once per event, with the ``steps_token`` its ``POST /events`` got."""
        check_keys(body, {"results", "steps_token"})
        results = parse_results(body.get("results"))
        token = body.get("steps_token")
        if not isinstance(token, str) or not token:
            raise RequestError("steps_token (from the reply to POST /events) is required", 403)
        if event_id is None:
            raise RequestError("no such event", 404)
        done = self.server.service.record_steps(event_id, results, token)
        if done != STEPS_RECORDED:
            raise RequestError(f"event #{event_id}: {done}", _STEPS_REFUSED[done])
        self._reply(200, {"ok": True})

    def _healthz(self, _body: dict[str, Any]) -> None:
        """200 when healthy, 503 when degraded: a load balancer or a probe
        reads the status code, a person the body."""
        health = self.server.service.health()
        self._reply(200 if health["ok"] else 503, health)

    def _livez(self, _body: dict[str, Any]) -> None:
        """200 while the service answers at all: for a probe that restarts it."""
        self._reply(200, {"ok": True})

    def _metrics(self, _body: dict[str, Any]) -> None:
        text = self.server.service.metrics_text()
        self._reply(200, text.encode("utf-8"), "text/plain; version=0.0.4; charset=utf-8")


def _refuse_connection(connection: socket.socket, refusal: Refusal) -> None:
    """Answer a refused connection at once, on the accepting thread, without
    reading its request: no thread is spent on it, nothing blocks."""
    body = json.dumps({"ok": False, "error": refusal.message}).encode("utf-8") + b"\n"
    head = (
        f"HTTP/1.0 {refusal.status} {HTTPStatus(refusal.status).phrase}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Retry-After: {refusal.retry_after}\r\nConnection: close\r\n\r\n"
    )
    try:
        connection.setblocking(False)
        connection.send(head.encode("ascii") + body)
        connection.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the client is gone already


def _drained(connection: socket.socket) -> bool:
    """Read and discard what has arrived; True once the client has closed
    (or is gone), False while it may still be sending."""
    try:
        for _ in range(16):
            if not connection.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    return False


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        service: Service,
        token: Optional[str],
        limits: ClientLimits,
    ) -> None:
        self.service = service
        self.token = token
        self.limits = limits
        #: Refused connections, answered, until their client is done sending
        #: (closing on unread data resets the connection, and the client
        #: would see a broken pipe instead of its 429): (until, connection).
        self.lingering: collections.deque[tuple[float, socket.socket]] = collections.deque()
        self.slots = threading.BoundedSemaphore(MAX_HTTP_REQUESTS)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _HttpHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A connection gets a thread only within the client's and the
        server's bounds (``ClientLimits``); otherwise a 429 or 503 at once."""
        client = str(client_address[0])
        refusal = self.limits.admit(client)
        if refusal is not None:
            log.debug("http %s: refused (%d): %s", client, refusal.status, refusal.message)
            _refuse_connection(request, refusal)
            self.lingering.append((time.monotonic() + REFUSED_LINGER, request))
            while len(self.lingering) > MAX_LINGERING:
                self.close_request(self.lingering.popleft()[1])
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.limits.release(client)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.limits.release(str(client_address[0]))

    def service_actions(self) -> None:
        """Between accepts (serve_forever, at least every poll interval):
        close the refused connections whose clients are done, or past
        REFUSED_LINGER."""
        super().service_actions()
        now = time.monotonic()
        for _ in range(len(self.lingering)):
            until, connection = self.lingering.popleft()
            if now >= until or _drained(connection):
                self.close_request(connection)
            else:
                self.lingering.append((until, connection))

    def server_close(self) -> None:
        super().server_close()
        while self.lingering:
            self.close_request(self.lingering.popleft()[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request or before reading the answer
        is one line in the log, not socketserver's traceback on stderr."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.info("http %s: connection lost: %s", client_address[0], error)
        else:
            log.error("http %s: the request failed", client_address[0], exc_info=error)


class HttpServer:
    """``POST /events``, ``GET /healthz``, ``GET /metrics`` on ``listen``."""

    def __init__(
        self,
        service: Service,
        listen: str,
        token: Optional[str],
        require_token: bool,
        limits: ClientLimits,
    ) -> None:
        self.host, self.port = parse_listen(listen)
        self.limits = limits
        self.loopback = is_loopback(self.host)
        self.token_required = require_token or not self.loopback
        if self.token_required and not token:
            where = "with require_token" if self.loopback else f"on {self.host}, not loopback,"
            raise RuntimeError(
                f"HTTP {where} needs a bearer token: set token in router.toml or ROUTER_TOKEN"
            )
        self.service = service
        self.token = token if self.token_required else None
        self._server: Optional[_HttpServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        return self._server.server_address[:2]

    def describe(self) -> str:
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        auth = "bearer token required" if self.token else "no token (loopback)"
        return f"http://{shown}:{port} ({auth})"

    def start(self) -> None:
        self._server = _HttpServer((self.host, self.port), self.service, self.token, self.limits)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="router-http",
            daemon=True,
        )
        self._thread.start()

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.socket.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
