"""Runs: one backup, one story (docs/rules.md, "Runs").

Retrospect reports one backup as many events: StartScript, a StartSource and
an EndSource per source, perhaps a FatalBackupError or MediaRequests, then
EndScript. A *run* gathers them, per ``host`` and ``script``, so that rules
can speak of the backup (``run.status``, ``run.failed``) rather than of one
event. This module is the pure part: what an event does to the open runs of
its host (:func:`follow`), when a silent run is given up (:func:`overdue`),
and what rules see of a run (:meth:`Run.view`). The store keeps the runs
(``router/store/runs.py``); ``dispatch`` folds each event in twice: before
evaluating (what the rules see) and in the journal's transaction (what is
kept, from the runs as they are then).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple, Optional

#: How a run is kept going: a script's (StartScript ... EndScript), a
#: Proactive Backup script's (its sources, until StopBackupServer), a client
#: engine's (one StartSource/EndSource pair); "server" is not a run but the
#: Proactive Backup session a host has open (StartBackupServer ...).
SCRIPT, PROACTIVE, CLIENT, SERVER = "script", "proactive", "client", "server"
#: The events that end a script's run.
ENDS = ("EndScript", "StopSched")
#: Events that belong to the open run of their script, changing nothing.
ALONGSIDE = ("ScriptCheckFailed", "NextExec", "AnomalyAlert")
#: Events about media, which name no script: the host's latest open run.
MEDIA = ("MediaRequest", "TimedOutMediaRequest")
#: Every event a run may see (``run.`` fields exist in its rules).
RUN_EVENTS = (
    "StartScript",
    *ENDS,
    "StartSource",
    "EndSource",
    "FatalBackupError",
    *MEDIA,
    *ALONGSIDE,
)
#: The fields of a source in ``run.sources``.
SOURCE_FIELDS = ("source", "client", "status", "errors", "error_code", "error_message")
SOURCE_NUMBERS = ("bytes", "files", "duration")


@dataclass
class Run:
    """One run as the store keeps it. Times are POSIX seconds."""

    id: str
    host: str
    script: str
    kind: str
    started: float
    last_seen: float
    ended: Optional[float] = None
    #: Why it ended: the event's name, "timeout" or "restarted".
    ended_by: Optional[str] = None
    #: The ending EndScript's status and error count.
    script_status: Optional[str] = None
    script_errors: int = 0
    #: What the ending EndScript said (error_code, error_message).
    script_error: Optional[dict[str, Any]] = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    fatal: Optional[dict[str, Any]] = None
    media_requests: int = 0

    @property
    def open(self) -> bool:
        return self.ended is None

    @property
    def status(self) -> str:
        """failure (the script, a source or a fatal error failed), warning
        (errors), success; incomplete when it was given up."""
        if self.ended_by in ("timeout", "restarted"):
            return "incomplete"
        statuses = [s.get("status") for s in self.sources] + [self.script_status]
        if self.fatal is not None or "failure" in statuses:
            return "failure"
        if self.script_errors or any(s.get("errors") for s in self.sources):
            return "warning"
        return "success"

    def view(self, now: Optional[float] = None) -> dict[str, Any]:
        """What rules and templates see as ``run``."""
        end = self.ended if self.ended is not None else (now or self.last_seen)
        failed = [s for s in self.sources if s.get("status") == "failure"]
        seen: dict[str, Any] = {
            "id": self.id,
            "script": self.script,
            "host": self.host,
            "kind": self.kind,
            "started": datetime.fromtimestamp(self.started),
            "duration": max(0.0, end - self.started),
            "status": self.status,
            "sources": [dict(s) for s in self.sources],
            "failed": [dict(s) for s in failed],
            "failed_count": len(failed),
            "source_count": len(self.sources),
            # EndScript's count already takes in its sources' errors.
            "errors": max(self.script_errors, sum(_count(s.get("errors")) for s in self.sources)),
            "bytes": sum(_count(s.get("bytes")) for s in self.sources),
            "files": sum(_count(s.get("files")) for s in self.sources),
            "media_requests": self.media_requests,
        }
        if self.ended is not None:
            seen["ended"] = datetime.fromtimestamp(self.ended)
        if self.fatal is not None:
            seen["fatal"] = dict(self.fatal)
        if self.script_error is not None:
            seen.update(self.script_error)
        return seen


class Followed(NamedTuple):
    """What one event did: the runs to keep (changed or new, ended ones
    included), and the run the event belongs to (None: it belongs to none)."""

    changed: list[Run]
    current: Optional[Run]


def run_id(host: str, script: str, started: float) -> str:
    """A stable id: the same run gets the same id in every process."""
    text = f"{host}\x1f{script}\x1f{started!r}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def follow(name: str, fields: Mapping[str, Any], open_runs: list[Run]) -> Followed:
    """What the event ``name`` with ``fields`` does to its host's
    ``open_runs`` (at least those of its script, the server session, the
    Proactive Backup runs and the latest run: see ``store.runs.open_in``).
    Pure: the runs it changes are copies."""
    host = str(fields.get("host", ""))
    script = str(fields.get("script", ""))
    at = fields["received"].timestamp() if "received" in fields else 0.0
    mine = [r for r in open_runs if r.host == host]
    runs = [r for r in mine if r.kind != SERVER]
    server = next((r for r in mine if r.kind == SERVER), None)
    same = next((r for r in reversed(runs) if r.script == script), None) if script else None
    same = _copy(same)

    def new(kind: str) -> Run:
        return Run(run_id(host, script, at), host, script, kind, at, at)

    if name == "StartScript":
        if not script:
            return Followed([], None)  # a start of nothing in particular: no run
        changed = []
        if same is not None:  # a run that never ended: given up as this one starts
            same.ended, same.ended_by = at, "restarted"
            changed.append(same)
        run = new(SCRIPT)
        return Followed([*changed, run], run)
    if name == "StartBackupServer":
        return Followed([] if server else [new(SERVER)], None)
    if name == "StopBackupServer":
        ended = [_copy(r) for r in mine if r.kind in (PROACTIVE, SERVER)]
        for run in ended:
            run.ended, run.ended_by, run.last_seen = at, name, at
        return Followed(ended, None)
    if name in MEDIA:
        latest = _copy(max(runs, key=lambda r: r.last_seen, default=None))
        if latest is None:
            return Followed([], None)
        latest.last_seen = at
        latest.media_requests += name == "MediaRequest"
        return Followed([latest], latest)
    if not script:
        return Followed([], None)
    run = same
    if run is None:
        if name not in ("StartSource", "EndSource", *ENDS):
            return Followed([], None)  # a fatal error or check of a run never seen
        kind = SCRIPT if name in ENDS else PROACTIVE if server is not None else CLIENT
        run = new(kind)
    run.last_seen = at
    if name == "EndSource":
        run.sources.append(source_of(fields))
        if run.kind == CLIENT:
            run.ended, run.ended_by = at, name
    elif name in ENDS:
        run.script_status = str(fields.get("status", "")) or None
        run.script_errors = _count(fields.get("errors"))
        if name == "EndScript":
            run.script_error = {
                "error_code": fields.get("error_code"),
                "error_message": fields.get("error_message"),
            }
        run.ended, run.ended_by = at, name
    elif name == "FatalBackupError":
        run.fatal = {
            "reason": fields.get("reason"),
            "error_code": fields.get("error_code"),
            "error_message": fields.get("error_message"),
        }
    return Followed([run], run)


def _copy(run: Any) -> Any:
    """A run to change (the caller's stays as it was); None stays None."""
    return None if run is None else replace(run, sources=list(run.sources))


def source_of(fields: Mapping[str, Any]) -> dict[str, Any]:
    """An EndSource as an item of ``run.sources``."""
    found = {name: fields.get(name) for name in SOURCE_FIELDS}
    for name in SOURCE_NUMBERS:
        value = fields.get(name)
        if hasattr(value, "total_seconds"):
            value = value.total_seconds()
        found[name] = value if isinstance(value, (int, float)) else None
    return found


def _count(value: Any) -> int:
    """A count from an event: a number that arrived as text ("lots") counts 0."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def overdue(open_runs: list[Run], now: float, timeout: float) -> list[Run]:
    """The runs silent for ``timeout`` seconds, ended as incomplete (copies)."""
    given_up = []
    for run in open_runs:
        if run.kind != SERVER and now - run.last_seen >= timeout:
            given_up.append(replace(run, ended=run.last_seen + timeout, ended_by="timeout"))
    return given_up
