"""The Retrospect event catalog, and turning a handler's argv into an Event.

docs/events.md describes it for admins (a test holds the two together). The
catalog is data, so the rule checker, ``router events`` and the argv parser
all read the same table and cannot disagree about a field's name, position
or type.

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

# The splitter lives in a module the handler's fast path can import cheaply.
from router.commandline import arguments_after_program, split_command_line  # noqa: F401

# ---------------------------------------------------------------------------
# The catalog
# ---------------------------------------------------------------------------

#: The value types a field can have. ``path`` is the intervention file.
FIELD_TYPES = ("str", "int", "float", "bool", "datetime", "duration", "path", "list")

INTERVENTION_FILE = "intervention_file"


@dataclass(frozen=True)
class FieldSpec:
    """One field an event carries: its name in rules, its type, what it means."""

    name: str
    type: str
    doc: str = ""
    #: For ``duration`` fields: how Retrospect counts them ("seconds" or "minutes").
    unit: str = ""


@dataclass(frozen=True)
class EventSpec:
    """One of Retrospect's events: positional fields in argv order."""

    number: int
    name: str
    fields: tuple[FieldSpec, ...]
    summary: str
    #: What Retrospect does when the handler writes into the intervention
    #: file; None for events that pass no such file.
    intervention: Optional[str] = None
    #: Number of positional fields Retrospect always sends; the rest are
    #: optional (NextExec's intervention file). None means all of them.
    required: Optional[int] = None
    #: An argument some Retrospect versions append after the last field
    #: (Client 7.7+ ends EndSource with ``true``): kept in args, no warning.
    known_extra: Optional[str] = None

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def has_intervention_file(self) -> bool:
        return INTERVENTION_FILE in self.field_names

    @property
    def min_args(self) -> int:
        return len(self.fields) if self.required is None else self.required


def _f(name: str, type_: str, doc: str = "", unit: str = "") -> FieldSpec:
    return FieldSpec(name, type_, doc, unit)


_DATE = _f("date", "datetime", "when it happened")
_SCRIPT = _f("script", "str", "the script's name")
_IFILE = _f(INTERVENTION_FILE, "path", "write here to intervene")
_ERRORS = _f("errors", "int", "count of non-fatal errors")
_ERROR_CODE = _f("error_code", "int", "0 on success, negative for Retrospect errors")
_ERROR_MESSAGE = _f("error_message", "str", "'successful' when there was no error")
_SOURCE = (
    _f("source", "str", "the volume, prefixed with its client or 'My Computer'"),
    _f("source_path", "str", "the volume's path"),
    _f("client", "str", "the client's name"),
)
_MEDIA = (
    _f("backup_set", "str", "the backup set that needs media"),
    _f("member", "str", "the member (tape, disk) asked for"),
    _f("known", "bool", "whether the member is known"),
    _f("waited", "duration", "how long Retrospect has waited", unit="minutes"),
    _IFILE,
)

CATALOG: tuple[EventSpec, ...] = (
    EventSpec(
        1,
        "StartApp",
        (_DATE, _f("autolaunched", "bool", "launched by a schedule, not a person"), _IFILE),
        "Retrospect is starting",
        intervention="Retrospect does not launch",
    ),
    EventSpec(2, "EndApp", (_DATE,), "Retrospect is quitting"),
    EventSpec(
        3,
        "StartBackupServer",
        (_DATE, _IFILE),
        "Proactive Backup is starting",
        intervention="Proactive Backup does not start",
    ),
    EventSpec(4, "StopBackupServer", (_DATE,), "Proactive Backup stopped"),
    EventSpec(
        5,
        "StartScript",
        (_SCRIPT, _DATE, _IFILE),
        "a script is starting",
        intervention="the script does not start",
    ),
    EventSpec(
        6,
        "EndScript",
        (_SCRIPT, _ERRORS, _ERROR_CODE, _ERROR_MESSAGE),
        "a script finished",
    ),
    EventSpec(
        7,
        "StartSource",
        (_SCRIPT, *_SOURCE, _IFILE),
        "a source (volume) is about to be backed up",
        intervention="this source is skipped",
    ),
    EventSpec(
        8,
        "EndSource",
        (
            _SCRIPT,
            *_SOURCE,
            _f("kb", "int", "kilobytes copied"),
            _f("files", "int", "files copied"),
            _f("duration", "duration", "how long the source took", unit="seconds"),
            _f("source_start", "datetime", "when the source started"),
            _f("source_end", "datetime", "when the source ended"),
            _f("script_start", "datetime", "when the script started"),
            _f("backup_set", "str", "the backup set written to"),
            _f("action", "str", "the backup action (Normal, ...)"),
            _f("parent_volume", "str", "the volume containing this source"),
            _ERRORS,
            _ERROR_CODE,
            _ERROR_MESSAGE,
        ),
        "a source (volume) finished",
        known_extra="true",
    ),
    EventSpec(
        9,
        "MediaRequest",
        _MEDIA,
        "Retrospect needs media",
        intervention="the media request fails",
    ),
    EventSpec(
        10,
        "TimedOutMediaRequest",
        _MEDIA,
        "a media request timed out",
        intervention="the timeout is reset: Retrospect keeps waiting",
    ),
    EventSpec(
        11,
        "ScriptCheckFailed",
        (
            _SCRIPT,
            _f("date", "datetime", "the run that will fail"),
            _f("reason", "str", "why the script cannot run"),
            _ERROR_CODE,
            _ERROR_MESSAGE,
        ),
        "a scheduled script will not be able to run",
    ),
    EventSpec(
        12,
        "NextExec",
        (_SCRIPT, _f("date", "datetime", "the next run"), _IFILE),
        "the next scheduled run of a script",
        intervention="none known",
        required=2,
    ),
    EventSpec(
        13,
        "StopSched",
        (_SCRIPT, _f("date", "datetime", "the scheduled stop"), _IFILE),
        "a script reached its scheduled stop time",
        intervention="the script keeps running past its stop time",
    ),
    EventSpec(
        14,
        "PasswordEntry",
        (
            _f("subject", "str", "what was logged into"),
            _f("attempts", "int", "how many attempts"),
            _ERROR_CODE,
            _ERROR_MESSAGE,
        ),
        "a password was entered",
    ),
    EventSpec(
        15,
        "FatalBackupError",
        (
            _SCRIPT,
            _f("reason", "str", "what failed"),
            _ERROR_CODE,
            _ERROR_MESSAGE,
            _f("error_zone", "str", "where it failed"),
            _IFILE,
        ),
        "a backup stopped with a fatal error",
        intervention="Retrospect's modal error dialog is suppressed",
    ),
    EventSpec(
        16,
        "AnomalyAlert",
        (
            _SCRIPT,
            *_SOURCE,
            _f("selector", "str", "the selector that watched the files"),
            _f("watched_files", "int", "files watched"),
            _f("changed_files", "int", "files changed"),
            _f("changed_percent", "float", "percentage changed"),
            _IFILE,
        ),
        "unusually many files changed on a source (Retrospect 19+)",
        intervention="this source is skipped",
    ),
)

ALIASES: dict[str, str] = {"SchedStop": "StopSched", "FatalErrorBackup": "FatalBackupError"}

EVENTS: dict[str, EventSpec] = {spec.name: spec for spec in CATALOG}
_BY_LOWER: dict[str, str] = {name.lower(): name for name in EVENTS}
_BY_LOWER.update({alias.lower(): name for alias, name in ALIASES.items()})

#: Fields every event has, computed by the router rather than sent by Retrospect.
DERIVED_FIELDS: tuple[FieldSpec, ...] = (
    _f("event", "str", "the canonical event name"),
    _f("status", "str", "failure, warning, success or info"),
    _f("host", "str", "the machine the handler ran on"),
    _f("received", "datetime", "when the handler received the event"),
    _f("hour", "int", "hour of received, 0-23"),
    _f("weekday", "str", "day of received: mon ... sun"),
    _f("args", "list", "the raw positional arguments"),
)
#: Derived only for EndSource.
BYTES_FIELD = _f("bytes", "int", "kb * 1024")
#: Fields that come from the history of the same event identity.
HISTORY_FIELDS: tuple[FieldSpec, ...] = (
    _f("streak", "int", "events in a row of this name and identity with this status"),
)
STATUS_VALUES = ("failure", "warning", "success", "info")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def canonical_name(name: str) -> Optional[str]:
    """The catalog name for ``name`` (aliases and letter case resolved), or None."""
    return _BY_LOWER.get(name.lower())


def fields_of(event_name: str) -> dict[str, FieldSpec]:
    """Every field a rule may test on this event: its own, derived, history."""
    spec = EVENTS[event_name]
    result = {f.name: f for f in spec.fields}
    result.update({f.name: f for f in DERIVED_FIELDS})
    if event_name == "EndSource":
        result[BYTES_FIELD.name] = BYTES_FIELD
    result.update({f.name: f for f in HISTORY_FIELDS})
    return result


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
    values["host"] = host if host is not None else socket.gethostname()
    values["received"] = now
    values["hour"] = now.hour
    values["weekday"] = WEEKDAYS[now.weekday()]
    values["args"] = list(args)
    return Event(
        name=name, known=canonical is not None, fields=values, args=args, warnings=warnings
    )


# ---------------------------------------------------------------------------
# Describing the catalog (``router events``)
# ---------------------------------------------------------------------------


def _field_json(spec: FieldSpec) -> dict[str, str]:
    out = {"name": spec.name, "type": spec.type, "doc": spec.doc}
    if spec.unit:
        out["unit"] = spec.unit
    return out


def catalog_json() -> list[dict[str, Any]]:
    """The catalog as plain data, for ``router events --format json``."""
    aliases_of: dict[str, list[str]] = {}
    for alias, target in ALIASES.items():
        aliases_of.setdefault(target, []).append(alias)
    result = []
    for spec in CATALOG:
        derived = list(DERIVED_FIELDS) + ([BYTES_FIELD] if spec.name == "EndSource" else [])
        result.append(
            {
                "number": spec.number,
                "name": spec.name,
                "summary": spec.summary,
                "aliases": aliases_of.get(spec.name, []),
                "fields": [_field_json(f) for f in spec.fields],
                "optional_from": spec.required,
                "derived": [_field_json(f) for f in derived],
                "intervention": spec.intervention,
            }
        )
    return result


def _type_label(spec: FieldSpec) -> str:
    return f"duration ({spec.unit})" if spec.unit else spec.type


def describe_event(spec: EventSpec) -> str:
    """One event's fields in argv order, for admins writing rules."""
    aliases = [a for a, t in ALIASES.items() if t == spec.name]
    lines = [f"{spec.name}  ({spec.summary})"]
    if aliases:
        lines.append(f"  also called: {', '.join(aliases)}")
    lines.append("  arguments, in order:")
    width = max(len(f.name) for f in spec.fields)
    for index, fspec in enumerate(spec.fields, 1):
        optional = " (optional)" if spec.required is not None and index > spec.required else ""
        lines.append(
            f"    {index:>2}. {fspec.name:<{width}}  {_type_label(fspec):<18} {fspec.doc}{optional}"
        )
    derived = list(DERIVED_FIELDS) + ([BYTES_FIELD] if spec.name == "EndSource" else [])
    lines.append("  derived: " + ", ".join(f.name for f in derived))
    lines.append("  history: previous.FIELD, streak")
    if spec.intervention is None:
        lines.append("  intervention: none (this event passes no intervention file)")
    else:
        lines.append(f"  intervention: {spec.intervention}")
    return "\n".join(lines)


def describe_catalog() -> str:
    """All events, one line each, then the derived fields."""
    lines = ["Retrospect events (router events NAME for one event's fields):", ""]
    for spec in CATALOG:
        names = ", ".join(spec.field_names) or "-"
        lines.append(f"  {spec.number:>2}. {spec.name:<21} {names}")
    lines.append("")
    lines.append("aliases: " + ", ".join(f"{a} = {t}" for a, t in ALIASES.items()))
    lines.append(
        "every event also has: "
        + ", ".join(f.name for f in DERIVED_FIELDS)
        + "; EndSource has bytes; history gives previous.FIELD and streak"
    )
    return "\n".join(lines)
