"""The service's Prometheus counters (``GET /metrics``), with bounded labels.

Label values come from what clients send (event names), from the rules
(rule labels) and from the targets (masked URLs). Each set is bounded, so
that no client can grow /metrics, or the service's memory, without limit
(3,000 made-up event names once made 3,044 lines): event names outside the
catalog count as ``unknown``, rules not in the ruleset in force as
``other``, targets past the first ``MAX_TARGETS`` as ``other``.

Thread-safe: the delivery workers, the admin reports and ``GET /metrics``
count at once.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from router.catalog import EVENTS
from router.delivery import DeliveryReport
from router.exposition import Sample, family
from router.store.journal import Journal

#: The router's own journal entries: timers' firings (expect, digest) and its
#: reports to the admin target. They are not Retrospect's events: firings are
#: counted in router_timers_fired_total, reports in router_admin_reports_total.
OWN_EVENTS = frozenset({"expect", "digest", "router"})
TIMERS = ("expect", "digest")
UNKNOWN_EVENT = "unknown"
OTHER = "other"
#: Distinct targets counted under their own (masked) URL.
MAX_TARGETS = 200


def event_label(name: str) -> str:
    return name if name in EVENTS else UNKNOWN_EVENT


@dataclass
class Metrics:
    """Counters since the service started."""

    events: Counter[str] = field(default_factory=Counter)
    matches: Counter[str] = field(default_factory=Counter)
    notifications: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: The targets counted under their own URL (at most MAX_TARGETS).
    targets: set[str] = field(default_factory=set)
    fallbacks: int = 0
    admin_reports: int = 0
    #: Notifications a silence kept from being sent (events' and timers').
    silenced: int = 0
    #: Expect and digest firings journaled (by this service or a handler).
    timers: Counter[str] = field(default_factory=Counter)
    #: The last journal entry counted.
    seen_id: int = 0
    #: Reentrant: counting the journal counts its events one by one.
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def count_journal(self, journal: Journal, rules: Collection[str]) -> None:
        """Count the journal entries written since the last look, by the
        service or by handlers that fell back to the inline path."""
        with self._lock:
            for row_id, name, origin, decisions in journal.events_since(self.seen_id):
                self.count_event(name, origin, decisions, rules)
                self.seen_id = row_id

    def count_event(
        self, name: str, origin: str, decisions: list[Any], rules: Collection[str]
    ) -> None:
        """One journal entry; ``rules``: the labels of the rules in force."""
        with self._lock:
            for decision in decisions:
                if isinstance(decision, dict) and isinstance(decision.get("silenced"), list):
                    self.silenced += len(decision["silenced"])
            if name in OWN_EVENTS:
                if name in TIMERS:
                    self.timers[name] += 1
                return
            self.events[event_label(name)] += 1
            if origin == "handler":
                self.fallbacks += 1
            for decision in decisions:
                if isinstance(decision, dict) and decision.get("matched"):
                    label = str(decision.get("label"))
                    self.matches[label if label in rules else OTHER] += 1

    def count_delivery(self, target: str, report: DeliveryReport) -> None:
        """What one delivery to ``target`` (a masked URL) did."""
        with self._lock:
            for outcome, ids in (
                ("sent", report.sent),
                ("failed", report.failed),
                ("dead", report.dead),
            ):
                if ids:
                    self.count_sends(target, outcome, len(ids))

    def count_sends(self, target: str, outcome: str, count: int) -> None:
        with self._lock:
            if target not in self.targets:
                if len(self.targets) >= MAX_TARGETS:
                    target = OTHER
                else:
                    self.targets.add(target)
            self.notifications[(target, outcome)] += count

    def count_admin_report(self) -> None:
        with self._lock:
            self.admin_reports += 1

    def render(self, rules: Collection[str], depth: int, dead: int, status: dict[str, Any]) -> str:
        """The exposition text. Rules counted before a reload that removed
        them are shown as ``other``."""
        with self._lock:
            return self._render(rules, depth, dead, status)

    def _render(self, rules: Collection[str], depth: int, dead: int, status: dict[str, Any]) -> str:
        matches: Counter[str] = Counter()
        for label, value in self.matches.items():
            matches[label if label in rules else OTHER] += value
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[Sample]) -> None:
            lines.extend(family(f"router_{name}", kind, help_text, samples))

        metric(
            "events_total",
            "counter",
            "Events journaled since the service started, by event name"
            f' (names outside the catalog: "{UNKNOWN_EVENT}").',
            [({"event": k}, v) for k, v in sorted(self.events.items())],
        )
        metric(
            "timers_fired_total",
            "counter",
            "Expect windows missed and digests sent, journaled since the service started.",
            [({"kind": kind}, self.timers[kind]) for kind in TIMERS],
        )
        metric(
            "rule_matches_total",
            "counter",
            f'Events a rule matched since the service started (rules not in force: "{OTHER}").',
            [({"rule": k}, v) for k, v in sorted(matches.items())],
        )
        metric(
            "notifications_total",
            "counter",
            "Sends by this service, by masked target URL and outcome (sent, failed, dead;"
            f' past {MAX_TARGETS} targets: "{OTHER}").',
            [({"target": t, "outcome": o}, v) for (t, o), v in sorted(self.notifications.items())],
        )
        metric(
            "notifications_silenced_total",
            "counter",
            "Notifications a silence kept from being sent, journaled since the service started.",
            [({}, self.silenced)],
        )
        metric("outbox_depth", "gauge", "Outbox rows waiting to be sent.", [({}, depth)])
        metric("outbox_dead", "gauge", "Dead letters kept in the outbox.", [({}, dead)])
        metric(
            "ruleset_last_reload_successful",
            "gauge",
            "1 if the last load of the rules succeeded, 0 if it had errors.",
            [({}, int(status["ok"]))],
        )
        metric(
            "ruleset_last_reload_timestamp_seconds",
            "gauge",
            "When the rules were last loaded or found broken (Unix time).",
            [({}, round(status["last_reload"], 3))],
        )
        metric("ruleset_rules", "gauge", "Rules in force.", [({}, status["rules"])])
        metric(
            "ruleset_reloads_total",
            "counter",
            "Good rule edits swapped in since the service started.",
            [({}, status["reloads"])],
        )
        metric(
            "handler_fallbacks_total",
            "counter",
            "Events handlers journaled on the inline path since the service started.",
            [({}, self.fallbacks)],
        )
        metric(
            "admin_reports_total",
            "counter",
            "Reports queued to the admin target since the service started.",
            [({}, self.admin_reports)],
        )
        return "\n".join(lines) + "\n"
