"""Turning a handler's argv into an Event, typed by the event catalog.

The catalog itself (the 16 events, their fields in argument order) is in
router/catalog.py; this module reads Retrospect's arguments by it: dates in
the machine's locale, numbers, durations, flags.

Parsing never raises: Retrospect runs the handler unattended, and a
malformed argument must cost a warning in the journal, never the event.
"""

from __future__ import annotations

import math
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Optional, Union

from router.catalog import EVENTS, WEEKDAYS, FieldSpec, canonical_name

# ---------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------


_ISO = re.compile(
    r"^(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})"
    r"(?:[T ](?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.\d+)?)?)?$"
)
_LOCAL = re.compile(
    r"^(?P<a>\d{1,4})[/.\-](?P<b>\d{1,2})[/.\-](?P<c>\d{1,4}),?"
    r"(?:\s+(?P<H>\d{1,2})[:.](?P<M>\d{2})(?:[:.](?P<S>\d{2}))?\s*(?P<ampm>[AaPp]\.?[Mm]\.?)?)?$"
)


def parse_date(text: str, order: str = "mdy") -> Optional[datetime]:
    """Parse a date as Retrospect prints it in the machine's locale.

    ``order`` settles only the ambiguous case: ``2/10/2017`` is February in
    ``mdy`` and October in ``dmy``, while ``21/11/2016`` can only be
    day-first and parses that way under either. Returns None when nothing
    fits, so the caller can keep the raw string.
    """
    text = text.strip()
    match = _ISO.match(text)
    if match:
        return _build(match["y"], match["m"], match["d"], match["H"], match["M"], match["S"], None)
    match = _LOCAL.match(text)
    if not match:
        return None
    a, b, c = match["a"], match["b"], match["c"]
    if len(a) == 4:
        candidates = [(a, b, c)]
    else:
        mdy, dmy = (c, a, b), (c, b, a)
        candidates = [dmy, mdy] if order == "dmy" else [mdy, dmy]
        if order == "ymd" and len(c) <= 2:
            # "16/11/21" with a two-digit year first: 2016-11-21 under ymd.
            candidates.insert(0, (a, b, c))
    for year, month, day in candidates:
        parsed = _build(year, month, day, match["H"], match["M"], match["S"], match["ampm"])
        if parsed is not None:
            return parsed
    return None


def _build(
    year: str,
    month: str,
    day: str,
    hour: Optional[str],
    minute: Optional[str],
    second: Optional[str],
    ampm: Optional[str],
) -> Optional[datetime]:
    y = int(year)
    if len(year) <= 2:
        # Retrospect's two-digit years ("12/14/99"): the POSIX pivot at 69.
        y += 1900 if y >= 69 else 2000
    h = int(hour) if hour else 0
    if ampm:
        # "16:32 PM" occurs in Retrospect's own samples: a 24-hour clock with
        # a stray suffix. Only hours 1-12 are shifted.
        pm = ampm[0] in "Pp"
        if 1 <= h <= 12:
            if pm and h != 12:
                h += 12
            elif not pm and h == 12:
                h = 0
    try:
        return datetime(y, int(month), int(day), h, int(minute or 0), int(second or 0))
    except ValueError:
        return None


# ---------------------------------------------------------------------------
# argv -> Event
# ---------------------------------------------------------------------------

_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}
#: The most digits an int may have: 18 always fit a 64-bit integer (SQLite's),
#: and a longer number is no count Retrospect sends.
MAX_INT_DIGITS = 18


def parse_int(text: str) -> Optional[int]:
    """``text`` as an int, or None: not a number, or more than MAX_INT_DIGITS
    digits (a 4,300-digit ``kb`` would overflow whatever computes with it,
    ``bytes`` first, and Python refuses to print such numbers)."""
    if len(text.strip().lstrip("+-")) > MAX_INT_DIGITS:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _convert(spec: FieldSpec, raw: str, date_order: str) -> Any:
    """The typed value of ``raw``, or None when it does not parse."""
    text = raw.strip()
    if spec.type in ("str", "path"):
        return raw
    if spec.type == "int":
        return parse_int(text)
    if spec.type == "float":
        text = text.rstrip("%").strip()
        if "," in text and "." not in text:
            text = text.replace(",", ".")  # a decimal comma from the locale
        try:
            number = float(text)
        except ValueError:
            return None
        # "nan" and "inf" are not numbers Retrospect sends; keep them as text.
        return number if math.isfinite(number) else None
    if spec.type == "bool":
        lowered = text.lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else None
    if spec.type == "duration":
        try:
            amount = float(text.replace(",", "."))
            if spec.unit == "minutes":
                return timedelta(minutes=amount)
            return timedelta(seconds=amount)
        except (ValueError, OverflowError):
            # not a number, or nan/inf/too large for a timedelta
            return None
    if spec.type == "datetime":
        return parse_date(text, date_order)
    raise AssertionError(f"unknown field type {spec.type}")


def decode_arg(arg: Union[str, bytes]) -> str:
    """An argument as text: UTF-8, with undecodable bytes replaced.

    On POSIX, Python hands undecodable argv bytes over as surrogate escapes;
    they are turned back into bytes first so that a Windows code page name
    becomes U+FFFD instead of an error at the first print or journal write.
    """
    if isinstance(arg, (bytes, bytearray)):
        return bytes(arg).decode("utf-8", "replace")
    if not isinstance(arg, str):
        arg = str(arg)
    try:
        arg.encode("utf-8")
        return arg
    except UnicodeEncodeError:
        pass
    try:
        return arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        # A lone surrogate outside surrogateescape's range (U+D800-U+DC7F,
        # U+DD00-U+DFFF; Windows can hand over unpaired UTF-16 halves).
        raw = bytearray()
        for char in arg:
            code = ord(char)
            if 0xDC80 <= code <= 0xDCFF:
                raw.append(code - 0xDC00)
            elif 0xD800 <= code <= 0xDFFF:
                raw += "\ufffd".encode("utf-8")
            else:
                raw += char.encode("utf-8")
        return raw.decode("utf-8", "replace")


def compute_status(name: str, values: dict[str, Any]) -> str:
    """``status`` as docs/events.md ("Status") describes it."""
    code = values.get("error_code")
    failed = isinstance(code, int) and code != 0
    if name in ("EndScript", "EndSource"):
        if failed:
            return "failure"
        if not isinstance(code, int):
            # No usable error code (too few arguments, or garbage): never call
            # that a success. The message decides; without one, warn.
            message = values.get("error_message")
            if isinstance(message, str) and message.strip().lower() != "successful":
                return "failure"
            if message is None:
                return "warning"
        errors = values.get("errors")
        return "warning" if isinstance(errors, int) and errors > 0 else "success"
    if name == "FatalBackupError":
        return "failure"
    if name in ("ScriptCheckFailed", "TimedOutMediaRequest", "AnomalyAlert"):
        return "warning"
    if name == "PasswordEntry" and failed:
        return "warning"
    return "info"


@dataclass
class Event:
    """One event as the rules see it: typed fields plus what went wrong reading it."""

    name: str
    #: False for a name the catalog does not know; it is still routed (``on any``).
    known: bool
    fields: dict[str, Any]
    args: list[str]
    warnings: list[str] = field(default_factory=list)

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self.fields


def local_host() -> str:
    """This machine's name: the ``host`` of the events its handler receives
    (an event that came over HTTP carries its own engine's)."""
    return socket.gethostname()


def event_from_argv(
    argv: Sequence[Union[str, bytes]],
    *,
    date_order: str = "mdy",
    host: Optional[str] = None,
    received: Optional[datetime] = None,
) -> Event:
    """Build the Event for ``RetroEventHandler EVENT ARG...`` (argv without the program).

    Never raises for any non-empty argv; problems land in ``Event.warnings``.
    An empty argv is a ValueError: the handler prints its usage before this.
    """
    texts = [decode_arg(a) for a in argv]
    if not texts:
        raise ValueError("no event name")  # the handler prints usage before getting here
    given, args = texts[0], texts[1:]
    canonical = canonical_name(given)
    warnings: list[str] = []
    values: dict[str, Any] = {}
    if canonical is None:
        name = given
        warnings.append(f"unknown event {given!r}: recorded, its arguments kept in args")
    else:
        name = canonical
        spec = EVENTS[canonical]
        for index, fspec in enumerate(spec.fields):
            if index >= len(args):
                break
            value = _convert(fspec, args[index], date_order)
            if value is None:
                values[fspec.name] = args[index]
                warnings.append(
                    f"{fspec.name}: {args[index]!r} is not a valid {fspec.type}; kept as text"
                )
            else:
                values[fspec.name] = value
        if len(args) < spec.min_args:
            missing = ", ".join(spec.field_names[len(args) : spec.min_args])
            warnings.append(
                f"{name} expects {spec.min_args} arguments, got {len(args)}; missing: {missing}"
            )
        elif len(args) > len(spec.fields) and not (
            len(args) == len(spec.fields) + 1
            and spec.known_extra is not None
            and args[-1].strip().lower() == spec.known_extra
        ):
            warnings.append(
                f"{name} expects {len(spec.fields)} arguments, got {len(args)};"
                " the extra ones are kept in args"
            )
        if name == "EndSource" and isinstance(values.get("kb"), int):
            values["bytes"] = values["kb"] * 1024

    now = received or datetime.now()
    values["event"] = name
    values["status"] = compute_status(name, values)
    values["host"] = host if host is not None else local_host()
    values["received"] = now
    values["hour"] = now.hour
    values["weekday"] = WEEKDAYS[now.weekday()]
    values["args"] = list(args)
    return Event(
        name=name, known=canonical is not None, fields=values, args=args, warnings=warnings
    )
