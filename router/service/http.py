"""Remote engines' and clients' way in: HTTP.

``router serve --listen HOST:PORT`` or ``listen`` in router.toml:
``POST /events`` with ``{event, args, host, received}`` for remote engines
and clients (answered with the event's local steps, which the caller must
perform on its machine, and may report with ``POST /events/N/steps``),
``GET /healthz``, ``GET /livez``, ``GET /metrics``, and silences (``GET``
and ``POST /silences``, ``DELETE /silences/ID``). Steps are reported
once, by the holder of the one-time ``steps_token`` in the reply to
``POST /events`` (only its hash is stored).

A bearer token is required on any address but loopback (and everywhere
with ``require_token = true``); the body is at most 1 MiB; a malformed
request gets a 4xx with a JSON error and stores nothing. Slow or greedy
clients are bounded: the whole request must arrive within
``REQUEST_DEADLINE`` of the accept; a client may hold
``max_client_connections`` connections and send ``rate_limit`` requests
per second (``router.service.client_limits``; beyond either it gets 429 at
once, without a thread); at most ``MAX_HTTP_REQUESTS`` requests are
processed at once, each taking its slot only once its body has been read.
"""

from __future__ import annotations

import base64
import collections
import hmac
import io
import json
import logging
import re
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

from router import silencing, status
from router.events import parse_int
from router.service import pages
from router.service.client_limits import ClientLimits, Refusal
from router.service.intake import IntakeOwner, serve_in_thread
from router.service.listening import is_loopback, parse_listen
from router.service.requests import (
    MAX_BODY,
    READ_TIMEOUT,
    RequestError,
    http_event,
    http_silence,
    http_steps,
    parse_json_object,
    reply_for,
)
from router.store import ALREADY_REPORTED, NO_EVENT, STEPS_RECORDED, WRONG_TOKEN

#: The intake's log lines keep the name they have always had.
log = logging.getLogger("router.intake")

#: How much of a refused body is read and thrown away, and for how long.
DRAIN_LIMIT = 4 * MAX_BODY
DRAIN_TIMEOUT = 1.0
#: The whole request, headers and body, must arrive within this long of
#: the accept, however it trickles in.
REQUEST_DEADLINE = 10.0
#: Requests served at once; more are answered 503.
MAX_HTTP_REQUESTS = 32
#: A refused connection is kept (reading and discarding) at most this long,
#: and at most this many are.
REFUSED_LINGER, MAX_LINGERING = 1.0, 256


_STEPS_PATH = re.compile(r"/events/([0-9]+)/steps")
_SILENCE_PATH = re.compile(r"/silences/([0-9]+)")
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
    #: The request's query string, parsed (``GET /silences?all=1``).
    query: dict[str, list[str]] = {}

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(REQUEST_DEADLINE)
            self.request.do_handshake()  # a failure is the client's: handle_error says so
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

    def _reply(
        self,
        status: int,
        body: Any,
        content_type: str = "application/json",
        headers: Optional[dict[str, str]] = None,
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8") + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status == 401:
            # Basic for a person's browser (any user name, the token as the
            # password), Bearer for programs.
            self.send_header("WWW-Authenticate", 'Basic realm="retro-router", charset="UTF-8"')
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
        if scheme.lower() == "basic":  # a browser: the token is the password
            try:
                value = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                return False
        elif scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.strip().encode(), token.encode())

    def _dispatch(self, method: str) -> None:
        """Authorize, route, read the body, then take a request slot: a slow
        sender holds its own thread until the deadline, never a slot."""
        path, _, query = self.path.partition("?")
        self.query = urllib.parse.parse_qs(query)
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
            ("GET", "/"): self._status_page,
            ("GET", "/api/status"): self._api_status,
            ("GET", "/runs"): self._runs_page,
            ("GET", "/silences"): self._get_silences,
            ("POST", "/silences"): self._post_silence,
        }
        route = routes.get((method, path))
        if route is not None:
            return route
        match = _STEPS_PATH.fullmatch(path)
        if match and method == "POST":
            event_id = parse_int(match.group(1))  # None: beyond any event id
            return lambda body: self._post_steps(event_id, body)
        silence = _SILENCE_PATH.fullmatch(path)
        if silence and method == "DELETE":
            silence_id = parse_int(silence.group(1))
            return lambda body: self._delete_silence(silence_id)
        known = ("/", "/api/status", "/runs", "/healthz", "/livez", "/metrics", "/events")
        if path in (*known, "/silences") or match or silence:
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
        request = http_event(body, client_host=self.client_address[0])
        owner = self.server.owner
        outcome = owner.ingest(request, origin="http")
        reply = reply_for(outcome)
        # Only an event with local steps has outcomes to report (and most have none).
        reply["steps_token"] = outcome.steps_token
        self._reply(200, reply)

    def _post_steps(self, event_id: Optional[int], body: dict[str, Any]) -> None:
        """Once per event, with the ``steps_token`` its ``POST /events`` got."""
        report = http_steps(body)
        if event_id is None:
            raise RequestError("no such event", 404)
        done = self.server.owner.record_steps(event_id, report.results, report.steps_token)
        if done != STEPS_RECORDED:
            raise RequestError(f"event #{event_id}: {done}", _STEPS_REFUSED[done])
        self._reply(200, {"ok": True})

    def _status_page(self, _body: dict[str, Any]) -> None:
        """Every backup at a glance; ``?fragment=1``: its body, for the refresh."""
        nonce = pages.new_nonce()
        data = status.as_json(self.server.owner.backup_status())
        fragment = self.query.get("fragment", [""])[-1] == "1"
        every = parse_int(self.query.get("refresh", [""])[-1])  # seconds, for a wall screen
        html = pages.status_page(data, nonce, socket.gethostname(), fragment, every)
        self._page(html, nonce)

    def _api_status(self, _body: dict[str, Any]) -> None:
        self._reply(200, status.as_json(self.server.owner.backup_status()))

    def _runs_page(self, _body: dict[str, Any]) -> None:
        """A backup's recent runs (``?host=H&script=S``), with their failed sources."""
        host = self.query.get("host", [None])[-1]
        script = self.query.get("script", [None])[-1]
        runs = self.server.owner.use_store(
            lambda store: store.runs.recent(limit=50, host=host, script=script)
        )
        nonce = pages.new_nonce()
        self._page(pages.runs_page(runs, host, script, nonce), nonce)

    def _page(self, html: str, nonce: str) -> None:
        self._reply(
            200,
            html.encode("utf-8"),
            "text/html; charset=utf-8",
            {
                "Content-Security-Policy": pages.content_security_policy(nonce),
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store",
            },
        )

    def _get_silences(self, _body: dict[str, Any]) -> None:
        """The silences in force or to come; ``?all=1``: the expired ones too."""
        every = self.query.get("all", ["0"])[-1] not in ("0", "", "false", "no")
        now = time.time()
        silences = self.server.owner.use_store(lambda store: silencing.listed(store, every, now))
        self._reply(200, {"ok": True, "silences": [s.record(now) for s in silences]})

    def _post_silence(self, body: dict[str, Any]) -> None:
        """A new silence, checked as ``router silence add`` checks one."""
        request = http_silence(body, self.client_address[0])
        owner = self.server.owner
        now = time.time()
        try:
            starts, ends = silencing.window(
                now, request.duration, request.until, request.starts, owner.date_order
            )
            added = owner.use_store(
                lambda store: silencing.add(
                    store,
                    request.condition,
                    starts,
                    ends,
                    request.comment,
                    request.created_by,
                    now,
                )
            )
        except silencing.SilenceRefused as exc:
            raise RequestError(str(exc)) from None
        reply = {"ok": True, "id": added.silence.id, "silence": added.silence.record(now)}
        self._reply(201, {**reply, "warnings": added.warnings})

    def _delete_silence(self, silence_id: Optional[int]) -> None:
        """End a silence now (it is kept, for history)."""
        now = time.time()
        try:
            if silence_id is None:
                raise LookupError("no such silence")
            silence = self.server.owner.use_store(
                lambda store: silencing.expire(store, silence_id, now)
            )
        except LookupError as exc:
            raise RequestError(str(exc), 404) from None
        self._reply(200, {"ok": True, "silence": silence.record(now)})

    def _healthz(self, _body: dict[str, Any]) -> None:
        """200 when healthy, 503 when degraded: a load balancer or a probe
        reads the status code, a person the body."""
        health = self.server.owner.health()
        self._reply(200 if health["ok"] else 503, health)

    def _livez(self, _body: dict[str, Any]) -> None:
        """200 while the service answers at all: for a probe that restarts it."""
        self._reply(200, {"ok": True})

    def _metrics(self, _body: dict[str, Any]) -> None:
        text = self.server.owner.metrics_text()
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
        owner: IntakeOwner,
        token: Optional[str],
        limits: ClientLimits,
        tls: Optional[ssl.SSLContext] = None,
    ) -> None:
        self.owner = owner
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
        if tls is not None:
            # The handshake happens in the request's thread, within its
            # deadline (``_HttpHandler.setup``), never in the accepting one.
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

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
        owner: IntakeOwner,
        listen: str,
        token: Optional[str],
        require_token: bool,
        limits: ClientLimits,
        tls: Optional[ssl.SSLContext] = None,
        insecure_http: bool = False,
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
        if not self.loopback and tls is None and not insecure_http:
            raise RuntimeError(
                f"HTTP on {self.host} (not loopback) without TLS would carry the token in clear:"
                " set tls_cert and tls_key (or --tls-cert, --tls-key), or insecure_http = true"
            )
        self.tls = tls
        self.owner = owner
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
        return f"{'https' if self.tls else 'http'}://{shown}:{port} ({auth})"

    def start(self) -> None:
        self._server = _HttpServer(
            (self.host, self.port), self.owner, self.token, self.limits, self.tls
        )
        self._thread = serve_in_thread(self._server, "router-http")

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
