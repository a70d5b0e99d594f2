"""What a client may send the service, checked in one place for both ways in.

An event reaches the service on the local socket (a handler) or over HTTP
(a remote engine or client). The two wrap it differently (the socket sends
``{"op": "event", "argv": [EVENT, ARG...], ...}`` with a token where the
socket is TCP; HTTP posts ``{"event": ..., "args": [...], ...}``), but what
they carry is the same, and so are its checks: ``decode_event`` checks the
name, the arguments, the host, the time received and the uid for both, so a
request refused on one path is refused with the same words on the other.
Steps reports are alike: each path has its own fields, one checker of the
results (``router.steps.check_results``).

Every refusal is a RequestError, whose ``status`` HTTP answers with; the
socket sends its message as ``{"ok": false, "error": ...}``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from router.actions import kind
from router.dispatch import Outcome
from router.steps import check_results

#: The largest message a client may send (the issue: 1 MiB).
MAX_BODY = 1024 * 1024
#: How long a client may take to send its request (slow clients hold a thread).
READ_TIMEOUT = 10.0
#: The longest event name, argument list, argument, host and uid accepted.
MAX_NAME, MAX_ARGS, MAX_ARG, MAX_HOST, MAX_UID = 200, 1000, 64 * 1024, 255, 128
#: ``received`` must fall in these years (local time): an engine's clock
#: outside them is wrong, and date arithmetic near year 1 or 9999 overflows.
RECEIVED_YEARS = (1970, 9999)

#: The fields of an event request and of a steps report, on each path.
SOCKET_EVENT_FIELDS = frozenset({"op", "uid", "argv", "host", "received", "token"})
SOCKET_STEPS_FIELDS = frozenset({"op", "event_id", "results", "token"})
HTTP_EVENT_FIELDS = frozenset({"event", "args", "host", "received", "uid"})
HTTP_STEPS_FIELDS = frozenset({"results", "steps_token"})
HTTP_SILENCE_FIELDS = frozenset({"condition", "for", "until", "starts", "comment", "created_by"})
#: The longest ``for``/``until``/``starts`` and ``created_by`` of a silence.
MAX_WHEN, MAX_AUTHOR = 64, 200


class RequestError(Exception):
    """A request the service refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class EventRequest:
    """An event as a client asked for it, every value checked."""

    #: The event name, then its arguments, as Retrospect passes them.
    argv: list[str]
    #: Where the event happened (None: the service's own host name).
    host: Optional[str]
    #: When the engine received it, local time (None: now).
    received: Optional[datetime]
    #: The handler's event id: an event offered twice is journaled once.
    uid: Optional[str]


@dataclass(frozen=True)
class StepsReport:
    """What a client's local steps did (HTTP: with its one-time token)."""

    results: list[dict[str, Any]]
    steps_token: Optional[str] = None


# ---------------------------------------------------------------------------
# The two ways in
# ---------------------------------------------------------------------------


def socket_event(message: dict[str, Any], token: Optional[str]) -> EventRequest:
    """An event request from the local socket. ``token``: the one the
    message must carry (the TCP socket's; None for the Unix socket, which
    its file mode protects)."""
    if message.get("op") != "event":
        raise RequestError(f"expected op 'event', not {message.get('op')!r}")
    check_keys(message, SOCKET_EVENT_FIELDS)
    if token is not None and not hmac.compare_digest(
        str(message.get("token", "")).encode(), token.encode()
    ):
        raise RequestError("wrong or missing token", 401)
    argv = message.get("argv")
    if not isinstance(argv, list) or not argv:
        raise RequestError("argv must be a non-empty list of strings")
    return decode_event(argv[0], argv[1:], message)


def http_event(body: dict[str, Any], client_host: str) -> EventRequest:
    """An event request from ``POST /events``; without a ``host`` of its own
    the event is the client's (``client_host``)."""
    check_keys(body, HTTP_EVENT_FIELDS)
    if "event" not in body or "args" not in body:
        raise RequestError("event and args are required")
    return decode_event(body["event"], body["args"], body, default_host=client_host)


def socket_steps(message: dict[str, Any], event_id: int) -> StepsReport:
    """The steps report that follows an event on the same connection."""
    if message.get("op") != "steps" or message.get("event_id") != event_id:
        raise RequestError("expected op 'steps' for this event")
    check_keys(message, SOCKET_STEPS_FIELDS)
    return StepsReport(parse_results(message.get("results")))


def http_steps(body: dict[str, Any]) -> StepsReport:
    """``POST /events/N/steps``: only with the ``steps_token`` the reply to
    ``POST /events`` carried (403 without one)."""
    check_keys(body, HTTP_STEPS_FIELDS)
    results = parse_results(body.get("results"))
    token = body.get("steps_token")
    if not isinstance(token, str) or not token:
        raise RequestError("steps_token (from the reply to POST /events) is required", 403)
    return StepsReport(results, token)


@dataclass(frozen=True)
class SilenceRequest:
    """A silence as ``POST /silences`` asked for it (its condition and times
    are checked by ``router.silencing``, as for ``router silence add``)."""

    condition: str
    duration: Optional[str]
    until: Optional[str]
    starts: Optional[str]
    comment: str
    created_by: str


def http_silence(body: dict[str, Any], client_host: str) -> SilenceRequest:
    """``POST /silences``: ``{condition, for | until, starts?, comment?,
    created_by?}``; who added it is said with the client's address."""
    check_keys(body, HTTP_SILENCE_FIELDS)
    if "condition" not in body:
        raise RequestError("condition is required")
    condition = _text(body["condition"], "condition", 4096, empty=False)
    when = {
        key: None if body.get(key) is None else _text(body[key], key, MAX_WHEN)
        for key in ("for", "until", "starts")
    }
    comment = _text(body.get("comment", ""), "comment", 1000)
    author = _text(body.get("created_by", ""), "created_by", MAX_AUTHOR)
    by = f"{author} (http {client_host})" if author else f"http {client_host}"
    return SilenceRequest(condition, when["for"], when["until"], when["starts"], comment, by)


# ---------------------------------------------------------------------------
# The values both share
# ---------------------------------------------------------------------------


def decode_event(
    name: Any, args: Any, fields: dict[str, Any], default_host: Optional[str] = None
) -> EventRequest:
    """The checks an event request gets on either path: ``name`` and
    ``args`` make the argv; ``host``, ``received`` and ``uid`` are read
    from ``fields``."""
    argv = parse_argv(name, args)
    host = fields.get("host")
    host = default_host if host is None else _text(host, "host", MAX_HOST)
    received = parse_received(fields.get("received"))
    uid = parse_uid(fields.get("uid"))
    return EventRequest(argv, host, received, uid)


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


def check_keys(message: dict[str, Any], allowed: Collection[str]) -> None:
    unknown = sorted(set(message) - set(allowed))
    if unknown:
        raise RequestError(f"unknown field(s): {', '.join(unknown)}")


def reply_for(outcome: Outcome) -> dict[str, Any]:
    """What the caller gets back: the journal id and the local steps to perform."""
    steps = [step.to_json() for step in outcome.steps]
    aborts = any(kind(step.kind).tells_retrospect for step in outcome.steps)
    return {"ok": True, "event_id": outcome.event_id, "steps": steps, "exit_hint": int(aborts)}
