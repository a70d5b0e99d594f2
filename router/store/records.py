"""What the store holds, as plain records, and how field values are kept.

The records are the store's interface in data: whatever backend keeps
them (SQLite here, PostgreSQL where several routers share one database),
this is what goes in and comes out. Field values keep their types through
JSON: datetimes and durations are tagged, everything else is plain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Optional

PENDING, SENT, DEAD = "pending", "sent", "dead"
#: What ``Store.record_steps`` did: recorded them, or refused because there
#: is no such event, the steps token is wrong, or they were reported already.
STEPS_RECORDED, NO_EVENT, WRONG_TOKEN, ALREADY_REPORTED = (
    "recorded",
    "no such event",
    "wrong steps token",
    "already reported",
)


# ---------------------------------------------------------------------------
# Typed values <-> JSON
# ---------------------------------------------------------------------------


def encode_value(value: Any) -> Any:
    """Field values as JSON, keeping datetimes and durations recognisable."""
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, timedelta):
        return {"$seconds": value.total_seconds()}
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    return value


def decode_value(value: Any) -> Any:
    """The inverse of ``encode_value``; a marker that does not decode (an
    odd row) stays as it is."""
    if isinstance(value, dict):
        try:
            if "$datetime" in value:
                return datetime.fromisoformat(value["$datetime"])
            if "$seconds" in value:
                return timedelta(seconds=value["$seconds"])
        except (TypeError, ValueError, OverflowError):
            return value
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    return value


def encode_fields(fields: dict[str, Any]) -> str:
    return json.dumps({k: encode_value(v) for k, v in fields.items()}, ensure_ascii=False)


def decode_fields(text: str) -> dict[str, Any]:
    """A fields column; empty when an old or odd row holds no JSON object."""
    value = _json_value(text)
    if not isinstance(value, dict):
        return {}
    return {str(k): decode_value(v) for k, v in value.items()}


def _json_value(text: Any) -> Any:
    """A journal column's JSON value; the text itself when it is not JSON."""
    if not isinstance(text, (str, bytes)):
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def json_list(text: Any) -> list[Any]:
    """A list column (args, warnings, decisions, steps, errors) as a list,
    whatever an old or odd row holds: nothing is lost and nothing raises
    (not JSON: the text as the one item; one value: that value alone)."""
    value = _json_value(text)
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def token_hash(token: str) -> str:
    """What the store keeps of a steps token (never the token)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


@dataclass
class JournalEntry:
    """One event as journaled: what arrived, what was decided, what happened."""

    received: datetime
    name: str
    identity: str
    status: str
    streak: int
    host: str
    fields: dict[str, Any]
    args: list[str]
    warnings: list[str] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Who received it: "handler", "service", "http".
    origin: str = "handler"
    #: Chosen by whoever received the event (a handler): if the same event is
    #: offered twice (the service journaled it, then its answer was lost and the
    #: handler fell back to the inline path), it is journaled once.
    uid: Optional[str] = None
    #: The hash of the one-time token its HTTP sender reports its steps with.
    steps_token: Optional[str] = None
    id: Optional[int] = None


@dataclass
class OutboxItem:
    """A notification to queue: one destination URL."""

    rule: str
    target: str
    url: str
    url_masked: str
    title: str
    body: str
    type: str
    format: str


@dataclass
class OutboxRow(OutboxItem):
    id: int = 0
    event_id: int = 0
    state: str = PENDING
    attempts: int = 0
    created: float = 0.0
    next_attempt: float = 0.0
    last_error: Optional[str] = None
    sent_at: Optional[float] = None


@dataclass(frozen=True)
class DueRow:
    """A row waiting to go to its URL, with what says whether it may go
    beside the others: the event it is about (``key``: its identity, the same
    for every event of one backup) and that event's ``status``. ``timer``:
    a digest's or an expectation's row, which keeps its place in line."""

    id: int
    key: str
    status: str
    timer: bool = False


@dataclass
class ThrottleUpdate:
    """What a throttled rule's state becomes after this event."""

    rule: str
    key: str
    acted: bool
    at: float


@dataclass
class ExpectMatch:
    """An event matched an ``expect`` rule: its window starts again at ``at``."""

    rule: str
    key: str
    at: float
    fields: dict[str, Any]


@dataclass
class DigestItem:
    """An event collected by a ``digest`` rule, for the window open at ``at``
    (or a new one, ``window`` seconds long, starting at ``at``)."""

    rule: str
    key: str
    at: float
    window: float
    fields: dict[str, Any]


@dataclass
class ExpectState:
    """One expect rule's window for one key (the values it pins with ``==``)."""

    rule: str
    key: str
    armed_at: float
    last_match: Optional[float]
    last_fields: Optional[dict[str, Any]]
    #: The deadline of the window it last fired for; None since the last match.
    fired_for: Optional[float]

    @property
    def base(self) -> float:
        """Where the window is counted from: the last match, else the arming."""
        return self.last_match if self.last_match is not None else self.armed_at


@dataclass
class CollectedItem:
    id: int
    event_id: int
    fields: dict[str, Any]


@dataclass
class DigestBatch:
    """A digest window that has closed: its items in arrival order."""

    rule: str
    key: str
    window_end: float
    items: list[CollectedItem]


@dataclass(frozen=True)
class JournalQuery:
    """Which journal entries to show (``router history``'s filters); None: any."""

    event: Optional[str] = None
    since: Optional[datetime] = None
    host: Optional[str] = None
    status: Optional[str] = None
    script: Optional[str] = None
    client: Optional[str] = None
