"""Did everything back up? One picture of every backup, gathered from the
store and the rules in one go (``gather``), and shown three ways from it:
``router status`` (``text``, ``as_json``, ``prometheus``), the status page
and ``/api/status`` (the service renders ``as_json``), and the per-backup
gauges on ``/metrics`` (``prometheus``). The views share one gathering, so
they never disagree.

The reads are the store's summary rows (``router/store/backups.py``), its
open runs, silences, digests and expect windows: never the journal, so a
million journal rows cost nothing here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

from router.dispatch import mask_text
from router.engine import CompiledRule, Ruleset
from router.exposition import family
from router.runs import SERVER
from router.store import ExpectState, Store
from router.store.backups import RUN_STATUSES, ScriptRow, SourceRow
from router.templates import filesize_filter
from router.timers import next_due

#: What a script's row says, worst first: the order of the text and the page.
STATES = ("failure", "overdue", "incomplete", "warning", "running", "never", "ok")
#: A last run's status as ``retrospect_script_last_run_status`` labels it.
RUN_STATUS_LABELS = (*RUN_STATUSES, "running")


@dataclass
class Expectation:
    """An expect window: when it next wants a matching event."""

    rule: str
    host: str
    script: Optional[str]
    expected: Optional[float]
    deadline: Optional[float]
    overdue: bool


@dataclass
class ScriptStatus:
    """A host's script: its latest run, last success, and what is expected of it."""

    host: str
    script: str
    row: Optional[ScriptRow]
    expectations: list[Expectation] = field(default_factory=list)
    #: The latest run's failed sources (name, error message).
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def overdue(self) -> bool:
        return any(e.overdue for e in self.expectations)

    @property
    def next_expected(self) -> Optional[Expectation]:
        dated = [e for e in self.expectations if e.deadline is not None]
        return min(dated, key=lambda e: e.deadline or 0.0) if dated else None

    @property
    def state(self) -> str:
        row = self.row
        if row is not None and row.last_status == "failure":
            return "failure"
        if self.overdue:
            return "overdue"
        if row is None:
            return "never"
        if row.last_ended is None:
            return "running"
        return "ok" if row.last_status == "success" else row.last_status


@dataclass
class Status:
    """Everything ``router status`` shows, at ``now``."""

    now: float
    scripts: list[ScriptStatus]
    sources: list[SourceRow]
    open_runs: list[Any]
    silences: list[Any]
    digests: list[dict[str, Any]]
    expectations: list[Expectation]
    #: The rules' health: ok, rules in force, errors.
    rules: dict[str, Any]


def gather(
    store: Store,
    ruleset: Optional[Ruleset],
    rules: dict[str, Any],
    forget: float,
    now: Optional[float] = None,
) -> Status:
    """One look at every backup. ``forget``: scripts and sources not heard
    of for this many seconds are left out (``status_forget``)."""
    now = time.time() if now is None else now
    since = now - forget
    # A rule error may quote a line holding a target's URL and its password.
    rules = {**rules, "errors": [mask_text(e, ()) for e in rules.get("errors", [])]}
    expectations = _expectations(ruleset, store.state.expect_states(), now)
    scripts: dict[tuple[str, str], ScriptStatus] = {}
    for row in store.backups.scripts(since):
        scripts[(row.host, row.script)] = ScriptStatus(row.host, row.script, row)
    for expectation in expectations:
        if expectation.script is None:
            continue
        key = (expectation.host, expectation.script)
        if key not in scripts:
            scripts[key] = ScriptStatus(expectation.host, expectation.script, None)
        scripts[key].expectations.append(expectation)
    for entry in scripts.values():
        if entry.row is not None and entry.row.last_status in ("failure", "warning"):
            run = store.runs.get(entry.row.last_run)
            if run is not None:
                entry.failed = [s for s in run.sources if s.get("status") == "failure"]
    ordered = sorted(scripts.values(), key=lambda s: (STATES.index(s.state), s.host, s.script))
    sources = sorted(
        store.backups.sources(since),
        key=lambda s: (s.last_status != "failure", s.host, s.client, s.source, s.script),
    )
    return Status(
        now=now,
        scripts=ordered,
        sources=sources,
        open_runs=[r for r in store.runs.all_open() if r.kind != SERVER],
        silences=store.silences.current(now),
        digests=_digests(store, ruleset),
        expectations=expectations,
        rules=rules,
    )


def _expectations(
    ruleset: Optional[Ruleset], states: list[ExpectState], now: float
) -> list[Expectation]:
    """Each expect window of the rules in force, with its next deadline."""
    if ruleset is None:
        return []
    rules = {rule.label: rule for rule in ruleset.expects if rule.rule.within is None}
    found = []
    for state in states:
        rule = rules.get(state.rule)
        if rule is None:
            continue
        host, script = _where(rule, state)
        due = next_due(rule, state.base)
        expected = due[0].timestamp() if due else None
        deadline = due[1].timestamp() if due else None
        overdue = deadline is not None and now > deadline
        found.append(Expectation(rule.label, host, script, expected, deadline, overdue))
    return sorted(found, key=lambda e: (not e.overdue, e.deadline or 0.0, e.rule))


def _where(rule: CompiledRule, state: ExpectState) -> tuple[str, Optional[str]]:
    """The host and script an expect window watches (its key starts with the host)."""
    last = state.last_fields or {}
    pinned = rule.pinned_values or {}
    host = str(last.get("host") or state.key.split("\x1f", 1)[0])
    script = last.get("script", pinned.get("script"))
    return host, None if script is None else str(script)


def _digests(store: Store, ruleset: Optional[Ruleset]) -> list[dict[str, Any]]:
    """The digests collecting: a ``digest run`` one closes when its run
    ends (``window_end`` None), the others at their window's end."""
    per_run = set(ruleset.run_digest_labels()) if ruleset is not None else set()
    return [
        {
            "rule": b.rule,
            "key": b.key,
            "count": len(b.items),
            "window_end": None if b.rule in per_run else b.window_end,
        }
        for b in store.state.pending_digests()
    ]


# ---------------------------------------------------------------------------
# As JSON (router status --format json, /api/status, the page)
# ---------------------------------------------------------------------------


def _when(timestamp: Optional[float]) -> Optional[str]:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")


def _age(now: float, timestamp: Optional[float]) -> Optional[float]:
    return None if timestamp is None else round(max(0.0, now - timestamp), 3)


def _expectation_json(e: Expectation) -> dict[str, Any]:
    return {
        "rule": e.rule,
        "host": e.host,
        "script": e.script,
        "expected": _when(e.expected),
        "deadline": _when(e.deadline),
        "overdue": e.overdue,
    }


def _script_json(s: ScriptStatus, now: float) -> dict[str, Any]:
    row = s.row
    last_run = None
    if row is not None:
        last_run = {
            "id": row.last_run,
            "kind": row.kind,
            "started": _when(row.last_started),
            "ended": _when(row.last_ended),
            "status": "running" if row.last_ended is None else row.last_status,
            "duration_seconds": _took(row, now),
            "errors": row.last_errors,
            "bytes": row.last_bytes,
            "failed": [
                {k: f.get(k) for k in ("source", "client", "error_code", "error_message")}
                for f in s.failed
            ],
        }
    upcoming = s.next_expected
    return {
        "host": s.host,
        "script": s.script,
        "state": s.state,
        "last_run": last_run,
        "last_success": _when(row.last_success if row else None),
        "last_success_age_seconds": _age(now, row.last_success if row else None),
        "next_expected": _when(upcoming.expected) if upcoming else None,
        "deadline": _when(upcoming.deadline) if upcoming else None,
        "overdue": s.overdue,
        "runs": dict(row.ended) if row else {status: 0 for status in RUN_STATUSES},
    }


def as_json(status: Status) -> dict[str, Any]:
    """The whole status as plain data: ``--format json`` and ``/api/status``."""
    now = status.now
    return {
        "generated": _when(now),
        "summary": summary(status),
        "scripts": [_script_json(s, now) for s in status.scripts],
        "sources": [
            {
                "host": s.host,
                "script": s.script,
                "client": s.client,
                "source": s.source,
                "last_status": s.last_status,
                "last_seen": _when(s.last_seen),
                "last_success": _when(s.last_success),
                "last_success_age_seconds": _age(now, s.last_success),
                "last_success_bytes": s.last_success_bytes,
            }
            for s in status.sources
        ],
        "open_runs": [
            {
                "id": r.id,
                "host": r.host,
                "script": r.script,
                "kind": r.kind,
                "started": _when(r.started),
                "running_seconds": _age(now, r.started),
                "sources": len(r.sources),
            }
            for r in status.open_runs
        ],
        "silences": [s.record(now) for s in status.silences],
        "digests": [
            {**d, "window_end": _when(d["window_end"]) or "run end"} for d in status.digests
        ],
        "expectations": [_expectation_json(e) for e in status.expectations],
        "rules": status.rules,
    }


def summary(status: Status) -> dict[str, int]:
    """How many scripts are in each state, and how many sources failed last."""
    counts = {state: 0 for state in STATES}
    for script in status.scripts:
        counts[script.state] += 1
    counts["sources_failed"] = sum(s.last_status == "failure" for s in status.sources)
    return counts


# ---------------------------------------------------------------------------
# As text (router status): 80 columns, the worst first
# ---------------------------------------------------------------------------

_SHOWN = {
    "failure": "FAILED",
    "overdue": "OVERDUE",
    "incomplete": "INCOMPLETE",
    "warning": "ERRORS",
    "running": "running",
    "never": "never ran",
    "ok": "ok",
}


def _short(timestamp: Optional[float]) -> str:
    return "-" if timestamp is None else datetime.fromtimestamp(timestamp).strftime("%m-%d %H:%M")


def _ago(now: float, timestamp: Optional[float]) -> str:
    if timestamp is None:
        return "never"
    return span(now - timestamp) + " ago"


def span(seconds: float) -> str:
    """A duration in at most two units, compact: ``45s``, ``1h05m``, ``2d04h``."""
    seconds = int(max(0.0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def text(status: Status) -> str:
    """What ``router status`` prints: a person reads it at a glance."""
    now = status.now
    counts = summary(status)
    rules = status.rules
    health = "ok" if rules.get("ok") else f"ERRORS ({len(rules.get('errors', []))})"
    lines = [
        f"{len(status.scripts)} backup(s): {counts['failure']} failed,"
        f" {counts['overdue']} overdue, {counts['running']} running;"
        f" rules {health} ({rules.get('rules', 0)}) at {_short(now)}",
        "",
        f"{'BACKUP (host / script)':<25} {'STATE':<10} {'LAST RUN':<11} {'TOOK':>6}"
        f" {'LAST SUCCESS':<12} {'NEXT BY':<11}",
    ]
    if not status.scripts:
        lines.append("  (no backup heard of yet)")
    for script in status.scripts:
        row = script.row
        upcoming = script.next_expected
        lines.append(
            f"{_fit(f'{script.host} / {script.script}', 25):<25} {_SHOWN[script.state]:<10}"
            f" {_short(row.last_started if row else None):<11}"
            f" {span(_took(row, now)) if row else '-':>6}"
            f" {_fit(_ago(now, row.last_success if row else None), 12):<12}"
            f" {_short(upcoming.deadline if upcoming else None):<11}"
        )
        for failed in script.failed:
            lines.append(
                _fit(f"    failed: {failed.get('source')}: {failed.get('error_message')}", 80)
            )
    failing = [s for s in status.sources if s.last_status == "failure"]
    lines += ["", f"SOURCES: {len(status.sources)}, {len(failing)} failed at their last backup"]
    for source in status.sources:
        size = _size(source.last_success_bytes)
        lines.append(
            _fit(
                f"  {'FAILED' if source.last_status == 'failure' else 'ok':<6}"
                f" {source.client or '-'}: {source.source} ({source.script}):"
                f" last success {_ago(now, source.last_success)}{size}",
                80,
            )
        )
    if status.open_runs:
        lines += ["", "RUNNING:"]
        lines.extend(
            f"  {r.host} / {r.script}: started {_short(r.started)},"
            f" {span(now - r.started)}, {len(r.sources)} source(s) so far"
            for r in status.open_runs
        )
    if status.silences:
        lines += ["", "SILENCES:"]
        for silence in status.silences:
            record = silence.record(now)
            lines.append(
                _fit(
                    f"  #{silence.id} {record['state']} until {record['ends']}:"
                    f" {silence.condition}",
                    80,
                )
            )
    pending = [e for e in status.expectations if not e.overdue]
    if status.digests or pending:
        lines += ["", "PENDING:"]
        lines.extend(f"  digest {d['rule']}: {d['count']} event(s) waiting" for d in status.digests)
        lines.extend(_fit(f"  expect {e.rule}: next by {_short(e.deadline)}", 80) for e in pending)
    if not rules.get("ok"):
        lines += ["", "RULES: the rule files have errors; the last good rules are in force:"]
        lines.extend(_fit(f"  {error}", 80) for error in rules.get("errors", [])[:5])
    return "\n".join(line.rstrip() for line in lines)


def _size(size: Optional[int]) -> str:
    return "" if size is None else f", {filesize_filter(size)}"


# ---------------------------------------------------------------------------
# As Prometheus gauges (router status --format prometheus, /metrics)
# ---------------------------------------------------------------------------


def prometheus(status: Status) -> str:
    """Every backup's gauges in the text exposition format: a node_exporter
    textfile, and the second half of the service's ``/metrics``."""
    lines: list[str] = []
    scripts = [s for s in status.scripts if s.row is not None]

    def per_script(name: str, kind: str, help_text: str, value: Any) -> None:
        samples = [({"host": s.host, "script": s.script}, value(s.row)) for s in scripts]
        lines.extend(family(f"retrospect_script_{name}", kind, help_text, samples))

    per_script(
        "last_run_timestamp_seconds",
        "gauge",
        "When the script's latest run started (Unix time).",
        lambda row: row.last_started,
    )
    successes = [s for s in scripts if s.row.last_success is not None]
    lines.extend(
        family(
            "retrospect_script_last_success_timestamp_seconds",
            "gauge",
            "When the script's latest successful run ended (Unix time).",
            [({"host": s.host, "script": s.script}, s.row.last_success) for s in successes],
        )
    )
    lines.extend(
        family(
            "retrospect_script_last_run_status",
            "gauge",
            "1 for the status of the script's latest run, 0 for the others.",
            [
                (
                    {"host": s.host, "script": s.script, "status": label},
                    int(_run_status(s) == label),
                )
                for s in scripts
                for label in RUN_STATUS_LABELS
            ],
        )
    )
    per_script(
        "last_run_duration_seconds",
        "gauge",
        "How long the script's latest run took (so far, while it runs).",
        lambda row: _took(row, status.now),
    )
    per_script(
        "last_run_errors",
        "gauge",
        "Errors in the script's latest run.",
        lambda row: row.last_errors,
    )
    lines.extend(
        family(
            "retrospect_runs_total",
            "counter",
            "Runs ended, by host, script and status.",
            [
                ({"host": s.host, "script": s.script, "status": st}, s.row.ended.get(st, 0))
                for s in scripts
                for st in RUN_STATUSES
            ],
        )
    )
    labels = [
        ({"host": s.host, "script": s.script, "source": s.source, "client": s.client}, s)
        for s in status.sources
    ]
    lines.extend(
        family(
            "retrospect_source_last_success_timestamp_seconds",
            "gauge",
            "When the source was last backed up successfully (Unix time).",
            [(k, s.last_success) for k, s in labels if s.last_success is not None],
        )
    )
    lines.extend(
        family(
            "retrospect_source_last_bytes",
            "gauge",
            "Bytes the source's latest successful backup copied.",
            [(k, s.last_success_bytes) for k, s in labels if s.last_success_bytes is not None],
        )
    )
    overdue: dict[str, bool] = {}
    for e in status.expectations:
        overdue[e.rule] = overdue.get(e.rule, False) or e.overdue
    lines.extend(
        family(
            "retrospect_expect_overdue",
            "gauge",
            "1 while an expectation of the rule is past its deadline.",
            [({"rule": rule}, int(late)) for rule, late in sorted(overdue.items())],
        )
    )
    return "\n".join(lines) + "\n"


def _took(row: ScriptRow, now: float) -> float:
    """How long the latest run took; so far, while it runs."""
    return row.last_duration if row.last_ended is not None else max(0.0, now - row.last_started)


def _run_status(script: ScriptStatus) -> str:
    row = script.row
    assert row is not None
    return "running" if row.last_ended is None else row.last_status
