"""Real local receivers for delivery tests: an HTTP server and an SMTP server.

Delivery is tested end to end through Apprise, so the tests need something
that actually listens on a socket: mocks would hide exactly the failures
(timeouts, refused connections, status codes) delivery exists to survive.
Both sinks bind to 127.0.0.1 only and record what arrives; ``wait_for``
waits on a condition with a deadline instead of sleeping and hoping.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qsl

OK, ERROR, HANG = "ok", "error", "hang"


@dataclass
class HttpRequest:
    """One request as the sink saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    #: time.time() when the request was read completely.
    at: float
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        sink = self.server.sink
        sink._arrived(self, body)
        with sink._cond:
            sink.answering += 1
            sink.most_at_once = max(sink.most_at_once, sink.answering)
        try:
            self._answer(sink)
        finally:
            with sink._cond:
                sink.answering -= 1
                sink.answered.append(time.time())

    def _answer(self, sink: HttpSink) -> None:
        if sink.delay:
            sink._release.wait(sink.delay)  # a slow target (stop ends the wait)
        mode = sink.mode
        if mode == HANG:
            # Accept and never answer: hold the connection until the sink stops.
            sink._release.wait()
            self.close_connection = True
            return
        status = sink.status if mode == ERROR else 200
        reply = b'{"error": "sink told to fail"}' if mode == ERROR else b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_POST = do_GET = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass  # keep test output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sink: HttpSink) -> None:
        self.sink = sink
        super().__init__(address, _Handler)


class _Sink:
    """What both sinks share: used as a context they are started and
    stopped, and ``wait_for`` waits on a condition for arrivals."""

    #: How an arrival is called in messages ("request", "message").
    noun = "item"

    def __init__(self) -> None:
        self.arrived: list[Any] = []
        self._cond = threading.Condition()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):  # noqa: ANN204 - returns this sink, started
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, item: Any) -> None:
        with self._cond:
            self.arrived.append(item)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        """The first ``count`` arrivals, waiting up to ``timeout`` seconds for them."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.arrived) >= count, timeout):
                raise AssertionError(
                    f"{type(self).__name__} got {len(self.arrived)} {self.noun}(s),"
                    f" expected {count} within {timeout} s"
                )
            return list(self.arrived[:count])


class HttpSink(_Sink):
    """A ThreadingHTTPServer on 127.0.0.1 that records every request.

    ``mode`` switches the answer: ``ok`` (200), ``error`` (``status``,
    500 by default) or ``hang`` (read the request, never answer). ``stop``
    and ``start`` again keep the same port, for "target down, then back".
    """

    noun = "request"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[HttpRequest] = self.arrived
        self.mode = OK
        self.status = 500
        #: Seconds each answer takes (a slow target).
        self.delay = 0.0
        #: Requests being answered now, the most there were at once, and
        #: when each answer was sent (time.time()).
        self.answering = 0
        self.most_at_once = 0
        self.answered: list[float] = []
        self.port = 0
        self._release = threading.Event()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, to build Apprise URLs with."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._release.clear()
        self._server = _Server(("127.0.0.1", self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket (connections are refused until ``start``)."""
        self._release.set()  # let hung handlers go
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _arrived(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k: v for k, v in handler.headers.items()}
        content_type = headers.get("Content-Type", "")
        request = HttpRequest(
            method=handler.command,
            path=handler.path,
            headers=headers,
            body=body,
            at=time.time(),
        )
        if "json" in content_type:
            request.json = json.loads(body.decode("utf-8"))
        elif "form" in content_type:
            request.form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        self._record(request)


@dataclass
class Mail:
    """One message as the SMTP sink received it."""

    mail_from: str
    rcpt_tos: list[str]
    message: Message
    at: float

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def text(self) -> str:
        """Every text part of the message, decoded, joined."""
        parts = []
        for part in self.message.walk():
            if part.get_content_maintype() == "text":
                payload = part.get_payload(decode=True)
                charset = part.get_content_charset() or "utf-8"
                parts.append(payload.decode(charset, "replace") if payload else "")
        return "\n".join(parts)


def free_port() -> int:
    """A port nothing listens on right now (aiosmtpd's Controller cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SmtpSink(_Sink):
    """An aiosmtpd server on 127.0.0.1 that accepts any login and records mail.

    AUTH is offered without TLS so that Apprise's ``mode=insecure`` can log
    in with the user and password of a ``mailto://user:pass@`` URL.
    """

    noun = "message"

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Mail] = self.arrived
        self.logins: list[tuple[str, str]] = []
        self.port = 0
        self._controller: Any = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        sink = self

        def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001
            if isinstance(auth_data, LoginPassword):
                with sink._cond:
                    sink.logins.append(
                        (auth_data.login.decode("utf-8"), auth_data.password.decode("utf-8"))
                    )
            return AuthResult(success=True)

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, N802
                mail = Mail(
                    mail_from=envelope.mail_from,
                    rcpt_tos=list(envelope.rcpt_tos),
                    message=message_from_bytes(envelope.original_content or envelope.content),
                    at=time.time(),
                )
                sink._record(mail)
                return "250 Message accepted for delivery"

        self.port = free_port()
        self._controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticator,
            auth_require_tls=False,
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
