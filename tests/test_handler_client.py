"""The handler's socket client on its own, against a tiny real service in
the test: one that answers, one that answers late, one that closes.

The whole fast path (handler and ``router serve`` as processes) is in
test_service.py; here each way a reply can go is pinned down in-process.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Callable

import pytest

from router.config import FastSettings
from router.handler import client as client_module
from router.handler import outcomes, via_service
from router.handler.client import ServiceClient, connect

#: What a tiny service does with one connection (it may read requests
#: through the service, which keeps them).
Behaviour = Callable[["TinyService", socket.socket], None]


class TinyService:
    """A listening socket in a private state directory; its one connection
    is handed to ``behaviour`` in a thread. ``received`` has the requests."""

    def __init__(self, state_dir: Path, behaviour: Behaviour, tcp: bool = False) -> None:
        self.behaviour = behaviour
        self.received: list[dict] = []
        #: Set when a behaviour that holds its answer may let go.
        self.release = threading.Event()
        self.closing = False
        if tcp:
            self.listener = socket.create_server(("127.0.0.1", 0))
            self.address: object = self.listener.getsockname()
            endpoint = state_dir / "router.endpoint"
            endpoint.write_text(
                json.dumps({"port": self.address[1], "token": "t0ken"}),  # type: ignore[index]
                encoding="utf-8",
            )
            endpoint.chmod(0o600)
        else:
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.address = str(state_dir / "router.sock")
            self.listener.bind(self.address)
            (state_dir / "router.sock").chmod(0o600)
            self.listener.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            if not self.closing:
                self.behaviour(self, connection)

    def read_request(self, connection: socket.socket) -> dict:
        """One request line, as the service reads it."""
        data = b""
        while not data.endswith(b"\n"):
            chunk = connection.recv(65536)
            if not chunk:
                raise AssertionError("the client closed before a whole request")
            data += chunk
        request = json.loads(data)
        self.received.append(request)
        return request

    def close(self) -> None:
        """Let a waiting behaviour go; wake an accept nobody came to."""
        self.closing = True
        self.release.set()
        if self.thread.is_alive():
            family = socket.AF_INET if isinstance(self.address, tuple) else socket.AF_UNIX
            with contextlib.suppress(OSError), socket.socket(family) as wake:
                wake.connect(self.address)
        self.thread.join(timeout=10)
        self.listener.close()
        assert not self.thread.is_alive()


@pytest.fixture
def service(state_dir: Path) -> Iterator[Callable[..., TinyService]]:
    """Start a TinyService in ``state_dir``: ``service(behaviour, tcp=False)``."""
    started: list[TinyService] = []

    def start(behaviour: Behaviour, tcp: bool = False) -> TinyService:
        started.append(TinyService(state_dir, behaviour, tcp))
        return started[-1]

    yield start
    for tiny in started:
        tiny.close()


def connected(state_dir: Path) -> ServiceClient:
    client = connect(str(state_dir))
    assert client is not None, "the client did not connect"
    return client


def answering(*replies: bytes) -> Behaviour:
    """Read one request per reply and send that reply."""

    def behaviour(tiny: TinyService, connection: socket.socket) -> None:
        for reply in replies:
            tiny.read_request(connection)
            connection.sendall(reply)

    return behaviour


def holding_the_answer(tiny: TinyService, connection: socket.socket) -> None:
    """Read the request, answer nothing until the test lets go."""
    tiny.read_request(connection)
    tiny.release.wait(timeout=30)


# ---------------------------------------------------------------------------
# Answering
# ---------------------------------------------------------------------------


def test_the_event_and_its_reply(service, state_dir: Path) -> None:
    tiny = service(answering(b'{"ok": true, "event_id": 7, "steps": [], "exit_hint": 0}\n'))
    with connected(state_dir) as client:
        reply = client.send_event(["EndApp", "caf\udcc3"], "u1")
    assert reply == {"ok": True, "event_id": 7, "steps": [], "exit_hint": 0}
    (request,) = tiny.received
    assert (request["op"], request["uid"]) == ("event", "u1")
    assert request["argv"] == ["EndApp", "caf\udcc3"]  # undecodable bytes travel escaped
    assert request["host"] == socket.gethostname()
    received = datetime.fromisoformat(request["received"])
    assert abs((received - datetime.now()).total_seconds()) < 60
    assert "token" not in request  # a Unix socket needs none


def test_the_steps_report_and_its_acknowledgement(service, state_dir: Path) -> None:
    tiny = service(answering(b'{"ok": true}\n'))
    results = [{"kind": "log", "outcome": "ok"}]
    with connected(state_dir) as client:
        assert client.report_steps(7, results) is True
    assert tiny.received == [{"op": "steps", "event_id": 7, "results": results}]


def test_a_reply_in_pieces_and_two_in_one(service, state_dir: Path) -> None:
    """Lines count, not reads: a reply sent in pieces is one reply; two
    replies sent at once are two."""

    def behaviour(tiny: TinyService, connection: socket.socket) -> None:
        tiny.read_request(connection)
        connection.sendall(b'{"ok": ')
        connection.sendall(b'true, "n": 1}\n{"ok": true, "n": 2}\n')
        tiny.read_request(connection)

    service(behaviour)
    with connected(state_dir) as client:
        assert client.exchange({"op": "first"}, timeout=10) == {"ok": True, "n": 1}
        assert client.exchange({"op": "second"}, timeout=10) == {"ok": True, "n": 2}


def test_the_loopback_port_and_its_token(service, state_dir: Path) -> None:
    """Without a Unix socket: the port and token are in the endpoint file,
    and the token goes with the event."""
    tiny = service(answering(b'{"ok": true, "event_id": 1, "steps": []}\n'), tcp=True)
    with connected(state_dir) as client:
        assert client.token == "t0ken"
        assert client.send_event(["EndApp"], "u2") is not None
    assert tiny.received[0]["token"] == "t0ken"


# ---------------------------------------------------------------------------
# Answering late, wrongly, or not at all
# ---------------------------------------------------------------------------


def test_a_late_answer_is_a_timeout(service, state_dir: Path) -> None:
    """The service holds its answer: the client gives up after the timeout
    (the handler then decides inline)."""
    service(holding_the_answer)
    with connected(state_dir) as client, pytest.raises(OSError):  # socket.timeout
        client.exchange({"op": "event"}, timeout=0.2)


def test_an_answer_a_byte_at_a_time_is_a_timeout_too(service, state_dir: Path) -> None:
    """The timeout is for the whole reply, not for each read: a service
    that dribbles its answer cannot hold the handler past it."""

    def dribbling(tiny: TinyService, connection: socket.socket) -> None:
        tiny.read_request(connection)
        connection.sendall(b'{"ok": true, "pad": "')
        for _ in range(500):  # ten seconds of it, then the line ends
            if tiny.release.wait(timeout=0.02):
                return
            with contextlib.suppress(OSError):
                connection.sendall(b"x")
        with contextlib.suppress(OSError):
            connection.sendall(b'"}\n')

    service(dribbling)
    with connected(state_dir) as client, pytest.raises(OSError):  # a timeout, not the reply
        client.exchange({"op": "event"}, timeout=0.3)


def test_a_late_acknowledgement_is_no_acknowledgement(
    service, state_dir: Path, monkeypatch
) -> None:
    monkeypatch.setattr(client_module, "REPORT_TIMEOUT", 0.2)
    service(holding_the_answer)
    with connected(state_dir) as client:
        assert client.report_steps(7, [{"kind": "log", "outcome": "ok"}]) is False


@pytest.mark.parametrize(
    "sent", [b"", b'{"ok": true', b'{"ok": true}'], ids=["nothing", "half", "no newline"]
)
def test_a_service_that_closes_before_a_whole_line(service, state_dir: Path, sent: bytes) -> None:
    def behaviour(tiny: TinyService, connection: socket.socket) -> None:
        tiny.read_request(connection)
        connection.sendall(sent)  # and the connection closes

    service(behaviour)
    with connected(state_dir) as client:
        assert client.exchange({"op": "event"}, timeout=10) is None


def test_a_service_that_closes_before_acknowledging(service, state_dir: Path) -> None:
    service(answering(b""))
    with connected(state_dir) as client:
        assert client.report_steps(7, [{"kind": "log", "outcome": "ok"}]) is False


def test_a_reply_that_is_not_json_or_not_an_object(service, state_dir: Path) -> None:
    service(answering(b"not json\n", b"[1, 2]\n"))
    with connected(state_dir) as client:
        with pytest.raises(ValueError):
            client.exchange({"op": "event"}, timeout=10)
        assert client.exchange({"op": "event"}, timeout=10) is None


def test_a_reply_without_end_is_not_read_forever(service, state_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr(client_module, "MAX_REPLY", 1000)

    def behaviour(tiny: TinyService, connection: socket.socket) -> None:
        tiny.read_request(connection)
        connection.sendall(b"x" * 5000)
        tiny.release.wait(timeout=30)

    service(behaviour)
    with connected(state_dir) as client:
        assert client.exchange({"op": "event"}, timeout=10) is None


# ---------------------------------------------------------------------------
# Whom the client talks to
# ---------------------------------------------------------------------------


def test_no_service_no_connection(state_dir: Path) -> None:
    assert connect(str(state_dir)) is None


def test_a_socket_nobody_listens_on(state_dir: Path) -> None:
    """A socket file left by a service that died: nothing answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(state_dir / "router.sock"))
    (state_dir / "router.sock").chmod(0o600)
    assert connect(str(state_dir)) is None


@pytest.mark.parametrize("shared", ["directory", "socket"])
def test_a_socket_others_could_plant_is_not_used(service, state_dir: Path, shared: str) -> None:
    """Whoever answers hands back programs to run: a state directory or a
    socket that other users can write is refused, even with a service on it."""
    service(answering())
    (state_dir if shared == "directory" else state_dir / "router.sock").chmod(0o777)
    try:
        assert connect(str(state_dir)) is None
    finally:
        state_dir.chmod(0o700)


# ---------------------------------------------------------------------------
# The fast path over the client
# ---------------------------------------------------------------------------


def test_the_service_refuses_so_the_event_is_handled_inline(
    service, state_dir: Path, capsys
) -> None:
    service(answering(b'{"ok": false, "error": "wrong or missing token"}\n'))
    settings = FastSettings(str(state_dir), str(state_dir / "events.log"))
    assert via_service(settings, ["EndApp"], "u3") is None
    assert "the service refused: wrong or missing token" in capsys.readouterr().err


def test_once_the_service_took_the_event_a_lost_report_is_journaled_here(
    service, state_dir: Path, monkeypatch
) -> None:
    """The service took the event and sent a step, then went away before
    acknowledging its outcome: the step is done once, the handler does not
    fall back to the inline path, and writes the outcome to the journal itself."""
    step = {"kind": "log", "rule": "r", "text": "EndApp happened"}
    reply = json.dumps({"ok": True, "event_id": 9, "steps": [step]}).encode() + b"\n"
    service(answering(reply, b""))
    written: list[tuple] = []
    monkeypatch.setattr(outcomes, "record_in_journal", lambda *args: written.append(args))
    settings = FastSettings(str(state_dir), str(state_dir / "events.log"))
    assert via_service(settings, ["EndApp"], "u4") == 0
    assert (state_dir / "events.log").read_text(encoding="utf-8") == "EndApp happened\n"
    ((config, event_id, results),) = written
    assert (config, event_id) == (settings, 9)
    assert [(r["kind"], r["outcome"]) for r in results] == [("log", "ok")]
