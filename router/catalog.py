"""The catalog of Retrospect's 16 events: each one's fields in argument order.

docs/events.md describes it for admins (a test holds the two together). The
catalog is data, so the rule checker, ``router events``, the templates and
the argv parser (router/events.py) all read the same table and cannot
disagree about a field's name, position or type. Beside the table: the
lookups the rest of the router makes in it, and its descriptions for
``router events``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

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
#: What rules see of the event's run (``run.FIELD``; router/runs.py).
RUN_FIELDS: tuple[FieldSpec, ...] = (
    _f("id", "str", "a stable id"),
    _f("script", "str", "the script"),
    _f("host", "str", "the engine"),
    _f("kind", "str", "script, proactive or client"),
    _f("started", "datetime", "when the run started"),
    _f("ended", "datetime", "when it ended (absent while open)"),
    _f("duration", "duration", "seconds so far, or in all once ended", "seconds"),
    _f("status", "str", "failure, warning, success, or incomplete when given up"),
    _f("sources", "list", "one item per EndSource so far"),
    _f("failed", "list", "the sources whose status is failure"),
    _f("failed_count", "int", "how many sources failed"),
    _f("source_count", "int", "how many sources ended"),
    _f("errors", "int", "errors in the run: EndScript's count (its sources' included)"),
    _f("bytes", "int", "bytes backed up over the sources"),
    _f("files", "int", "files backed up over the sources"),
    _f("fatal", "dict", "the FatalBackupError's reason, error_code and error_message"),
    _f("media_requests", "int", "how many MediaRequest events the run saw"),
    _f("error_code", "int", "what the EndScript said: 0, or Retrospect's error"),
    _f("error_message", "str", "what the EndScript said, in words"),
)
RUN_STATUS_VALUES = ("failure", "warning", "success", "incomplete")
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
