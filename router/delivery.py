"""Delivering outbox rows: timeouts, retries, dead letters.

Each outbox row is one destination URL, sent on its own by the notifier
that serves it (``router/notifiers/``: Apprise, unless another claims the
URL's scheme): a row is marked sent only after the send succeeded; a
failure is retried with exponential backoff until the row is older than
``max_age``, then kept as a dead letter. Rows for different URLs are sent
concurrently and rows for the same URL one after another, so one dead or
slow target never delays another, and a burst never opens many connections
to one server.

No process may wait on a hung server past its deadline, so every send has
three bounds: the notifier's socket timeouts (connect and read, from the
delivery policy), a wall-clock bound on the whole send (a worker thread we
stop waiting for), and the caller's absolute deadline.

URLs carry credentials. Nothing here prints or logs a URL, and every error
text that reaches the store (and so ``router outbox``) is scrubbed of the
URL's secrets first: Apprise and requests messages may quote the full URL.

Apprise is imported lazily: it costs a few hundred milliseconds that
``router check`` and a handler with nothing to send should not pay.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional
from urllib.parse import unquote, urlsplit

from router import notifiers
from router.config import Delivery
from router.notifiers.base import TIMED_OUT
from router.store import DueRow, OutboxItem, OutboxRow
from router.trust import admin_problem
from router.urls import MASK, mask_url

if TYPE_CHECKING:
    from router.language.nodes import TargetDef
    from router.store import Store


#: The longest claim: a crashed deliverer's rows come due again after this.
MAX_LEASE = 900.0

_SECRET_SPLIT = re.compile(r"[/:@?&=#,;+\s]+")


def next_delay(attempts: int, policy: Delivery) -> float:
    """Seconds to wait after the ``attempts``-th failure (1-based):
    first_delay, doubled per further failure, capped at max_delay."""
    exponent = max(attempts, 1) - 1
    if exponent >= 64:  # 2**64 * anything sensible is past any cap
        return policy.max_delay
    return min(policy.first_delay * (2**exponent), policy.max_delay)


# ---------------------------------------------------------------------------
# Targets -> URLs
# ---------------------------------------------------------------------------


def resolve_target(
    target: TargetDef, base_dir: Path, environ: Mapping[str, str] = os.environ
) -> tuple[list[str], list[str]]:
    """The URLs a target stands for right now, and what is wrong with it.

    ``env()`` is read here, when the rule runs, not when the rules load, so
    a secret can change without a reload. Problems never contain a URL:
    they name the variable or the file. A URL given twice (say, by an env
    variable and a config file) is sent once.
    """
    urls: list[str] = []
    problems: list[str] = []
    for source in target.sources:
        if source.kind == "url":
            urls.append(source.value)
        elif source.kind == "env":
            value = environ.get(source.value)
            if value is None:
                problems.append(f"environment variable {source.value} is not set")
                continue
            found = [u for u in re.split(r"[\s,]+", value) if u]
            if not found:
                problems.append(f"environment variable {source.value} is empty")
            for url in found:
                if _malformed(url):
                    problems.append(f"environment variable {source.value} holds a malformed URL")
                else:
                    urls.append(url)
        elif source.kind == "config":
            found, problem = _config_urls(source.value, source.tag, base_dir)
            if problem:
                problems.append(problem)
            urls.extend(found)
        else:
            problems.append(f"unknown kind of target source '{source.kind}'")
    unique = list(dict.fromkeys(urls))
    return unique, problems


def _malformed(url: str) -> bool:
    """A URL no send could ever use (no scheme, or one urllib cannot take apart)."""
    if "://" not in url:
        return True
    try:
        urlsplit(url)
    except ValueError:
        return True
    return False


def _config_urls(value: str, tag: Optional[str], base_dir: Path) -> tuple[list[str], Optional[str]]:
    """URLs of an Apprise config file (YAML or text), only ``tag``'s when given."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path(base_dir) / path
    if not path.is_file():
        return [], f"Apprise config file '{value}' does not exist"
    refused = admin_problem(path)
    if refused:  # its URLs would decide where event data goes
        return [], f"Apprise config file '{value}' refused: {refused}"
    import apprise

    config = apprise.AppriseConfig()
    if not config.add(str(path)):
        return [], f"Apprise cannot read config file '{value}'"
    # Apprise 2 renamed AppriseConfig.servers() to services().
    entries = getattr(config, "services", None) or config.servers
    servers = list(entries())
    if tag is not None:
        servers = [s for s in servers if tag in s]
    urls = [s.url(privacy=False) for s in servers]
    if not urls:
        if tag is not None:
            return [], f"no entry of Apprise config file '{value}' has the tag '{tag}'"
        return [], f"Apprise config file '{value}' defines no usable URL"
    return urls, None


# ---------------------------------------------------------------------------
# One send
# ---------------------------------------------------------------------------


#: The list collecting Apprise's warnings for the send running in this
#: context. A thread id is not enough to tell sends apart: Apprise 2 runs
#: the plugin in its own worker pool, but copies the caller's context into
#: it, so a context variable follows the send wherever Apprise runs it.
def _secrets(url: str) -> list[str]:
    """Pieces of ``url`` that its masked form hides: passwords, tokens,
    header and payload values, in raw and percent-decoded spelling."""
    masked_parts = set(_SECRET_SPLIT.split(mask_url(url)))
    pieces: set[str] = set()
    for part in _SECRET_SPLIT.split(url):
        for spelling in (part, unquote(part)):
            if len(spelling) >= 2 and spelling not in masked_parts and spelling != MASK:
                pieces.add(spelling)
    password = urlsplit(url).password if "://" in url else None
    if password:
        pieces.update({password, unquote(password)})
    # Longest first, so a secret containing another is replaced whole.
    return sorted(pieces, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` with ``url`` shown masked and none of its secrets left.

    Used on error paths, so it never raises: a URL too broken to take apart
    withholds the whole text rather than risk showing a secret.
    """
    try:
        text = text.replace(url, mask_url(url))
        for secret in _secrets(url):
            text = text.replace(secret, MASK)
    except Exception:
        return "the error text was withheld: it could not be masked"
    return text


def _send(
    url: str,
    title: str,
    body: str,
    notify_type: str,
    body_format: str,
    policy: Delivery,
    wait: float,
) -> tuple[Optional[str], bool]:
    """``send`` waiting at most ``wait`` seconds; also says whether the
    wall clock (rather than Apprise) ended it."""
    notifiers.notifier_for(url).prepare()  # imports, not counted against ``wait``
    outcome: list[Optional[str]] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append(notifiers.send(url, title, body, notify_type, body_format, policy))
        except Exception as exc:  # a notifier (or what it calls) raised: a failed send
            outcome.append(f"{type(exc).__name__}: {exc}")
        finally:
            done.set()

    # A daemon thread: one that hangs past every timeout must not keep the
    # handler process alive after it has given up waiting.
    threading.Thread(target=work, name="router-send", daemon=True).start()
    if not done.wait(max(wait, 0.0)):
        return f"{TIMED_OUT} after {wait:g} s", True
    error = outcome[0] if outcome else "the send ended without a result"
    return (None if error is None else scrub(error, url)), False


def send(
    url: str,
    title: str,
    body: str,
    notify_type: str,
    body_format: str,
    policy: Delivery,
) -> Optional[str]:
    """Send one notification to one URL. None on success, else why not (masked).

    Returns within ``policy.send_bound`` seconds whatever the server does.
    """
    return _send(url, title, body, notify_type, body_format, policy, policy.send_bound)[0]


# ---------------------------------------------------------------------------
# Many rows
# ---------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    """What one ``deliver`` did, as outbox row ids."""

    sent: list[int] = field(default_factory=list)
    #: Failed and still pending, with a next attempt after the backoff.
    failed: list[int] = field(default_factory=list)
    #: Failed past ``max_age``: kept as dead letters.
    dead: list[int] = field(default_factory=list)
    #: Not attempted (or cut off) before the deadline; pending, unclaimed.
    skipped: list[int] = field(default_factory=list)
    #: Why each failed or dead row failed (masked).
    errors: dict[int, str] = field(default_factory=dict)


def deliver(
    store: Optional[Store],
    rows: list[OutboxRow],
    policy: Delivery,
    deadline: Optional[float] = None,
    now: Callable[[], float] = time.time,
) -> DeliveryReport:
    """Send ``rows`` (already claimed) and record each outcome in ``store``
    (None: only report it).

    Rows are grouped by URL; groups run concurrently in a pool of
    ``policy.concurrency`` threads, and a group's rows go one after
    another; after a timeout the group's remaining rows are failed with
    that error rather than each waiting out the same timeout. ``deadline``
    (a ``now()`` value) stops new sends from starting and cuts a running
    one short; those rows are released unchanged, as no attempt was made.
    Every store write happens in this thread: the store's connection may
    be shared across threads but not used by two at once.
    """
    report = DeliveryReport()
    if not rows:
        return report
    groups: dict[str, list[OutboxRow]] = {}
    for row in rows:
        groups.setdefault(row.url, []).append(row)
    results: queue.Queue[tuple[str, OutboxRow, Optional[str]]] = queue.Queue()

    def run_group(group: list[OutboxRow]) -> None:
        index = 0
        try:
            while index < len(group):
                row = group[index]
                wait = policy.send_bound
                if deadline is not None:
                    wait = min(wait, deadline - now())
                    if wait <= 0:
                        break
                error, cut = _send(row.url, row.title, row.body, row.type, row.format, policy, wait)
                if cut and wait < policy.send_bound:
                    break  # the deadline, not the target, ended it: no attempt
                results.put(("sent" if error is None else "failed", row, error))
                index += 1
                if error is not None and error.startswith(TIMED_OUT):
                    # A hung or unreachable server: waiting out the timeout
                    # once per row would hold this pass (and the rows'
                    # lease) for nothing. The rest back off with this error.
                    for rest in group[index:]:
                        results.put(
                            ("failed", rest, f"not sent: row #{row.id} to this URL {error}")
                        )
                    return
        except Exception as exc:  # never leave the collector waiting on a row
            for row in group[index:]:
                results.put(("failed", row, scrub(f"{type(exc).__name__}: {exc}", row.url)))
            return
        for row in group[index:]:
            results.put(("skipped", row, None))

    pool: Optional[ThreadPoolExecutor] = None
    if len(groups) == 1:
        # One URL (the scheduler's rows): in this thread. Starting a pool
        # for one send cost more than the send, and under a burst the new
        # thread waits its turn for a CPU.
        run_group(rows)
    else:
        pool = ThreadPoolExecutor(
            max_workers=max(1, min(policy.concurrency, len(groups))),
            thread_name_prefix="router-deliver",
        )
        for group in groups.values():
            pool.submit(run_group, group)
    try:
        for _ in range(len(rows)):
            outcome, row, error = results.get()
            _record(store, policy, report, outcome, row, error, now())
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return report


def send_now(
    items: list[OutboxItem], policy: Delivery, deadline: Optional[float] = None
) -> list[int]:
    """Send notifications that are in no outbox (the journal could not take
    their event), with the same grouping, timeouts and deadline as
    ``deliver``. Returns the indexes of the items that were sent."""
    rows = [OutboxRow(**asdict(item), id=index) for index, item in enumerate(items)]
    return sorted(deliver(None, rows, policy, deadline=deadline).sent)


def _record(
    store: Optional[Store],
    policy: Delivery,
    report: DeliveryReport,
    outcome: str,
    row: OutboxRow,
    error: Optional[str],
    at: float,
) -> None:
    """Write one row's outcome to the store (if any) and the report."""
    if outcome == "sent":
        if store is not None:
            store.outbox.mark_sent(row.id, now=at)
        report.sent.append(row.id)
    elif outcome == "skipped":
        if store is not None:
            store.outbox.release([row.id])
        report.skipped.append(row.id)
    else:
        error = error or "failed"
        report.errors[row.id] = error
        if store is not None and at - row.created > policy.max_age:
            store.outbox.mark_dead(row.id, error)
            report.dead.append(row.id)
        else:
            if store is not None:
                store.outbox.mark_failed(row.id, error, at + next_delay(row.attempts + 1, policy))
            report.failed.append(row.id)


def sendable(due: list[DueRow], in_flight: list[DueRow], slots: int) -> list[DueRow]:
    """Which of a URL's ``due`` rows (oldest first) may go now, beside the
    rows ``in_flight`` to it, at most ``slots`` of them.

    Rows about different backups go side by side. Rows about one backup (one
    ``key``) go side by side only while they say the same thing (the same
    status: a burst of failures); a row with another status (the recovery
    after a failure) waits until the ones before it are done, and so does
    everything behind it of that backup. A timer's rows (a digest, an
    expectation) go one at a time, in order.
    """
    chosen: list[DueRow] = []
    statuses: dict[str, set[str]] = {}
    in_order: set[str] = set()
    for row in in_flight:
        statuses.setdefault(row.key, set()).add(row.status)
        if row.timer:
            in_order.add(row.key)
    waiting: set[str] = set()
    for row in due:
        if len(chosen) >= slots:
            break
        if row.key in waiting or row.key in in_order:
            continue
        going = statuses.get(row.key)
        if going is not None and (row.timer or going != {row.status}):
            waiting.add(row.key)  # and the rows behind it keep their place
            continue
        chosen.append(row)
        statuses.setdefault(row.key, set()).add(row.status)
        if row.timer:
            in_order.add(row.key)
    return chosen


def drain(
    store: Store,
    policy: Delivery,
    deadline: Optional[float] = None,
    ids: Optional[Iterable[int]] = None,
    limit: int = 100,
    now: Callable[[], float] = time.time,
) -> DeliveryReport:
    """Claim the due rows (only ``ids`` when given) and deliver them.

    The claim's lease covers the longest this delivery should take (up to
    the deadline, at most ``MAX_LEASE``), so no other deliverer takes a row
    this one is still working on; a crashed deliverer's rows come due again
    when the lease runs out.
    """
    start = now()
    lease = min(policy.send_bound * max(limit, 1), MAX_LEASE)
    if deadline is not None:
        lease = min(lease, max(deadline - start, 0.0) + policy.send_bound)
    rows = store.outbox.claim_due(now=start, limit=limit, lease=lease + 1.0, ids=ids)
    return deliver(store, rows, policy, deadline=deadline, now=now)
