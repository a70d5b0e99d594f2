"""Events the journal could not take, kept until it can.

A full disk, a read-only or damaged state directory, a locked database: the
handler still decides and performs the event's local steps, tries its
notifications directly, and keeps the event here, one private file per event
(named by its uid), so a later handler or the service records it. Recording
is idempotent per uid (an event the service did journal is not journaled
twice) and goes in the order the events were received.

Two kinds of entry:

- ``decided``: the journal entry, outbox rows, throttle, expect and digest
  updates as the handler decided them, plus which rows it already sent and
  what the steps did. Recorded exactly so: the admin sees what happened.
- ``raw``: only the arguments (the handler failed before deciding). These
  are decided when recorded, with the rules in force then.

The spool lives in ``spool/`` of the state directory, or, when that cannot
be written (read-only, full, refused), in the user's default state directory.
Both must be private to the router's user; nothing is spooled elsewhere (a
shared directory such as /tmp would hand the event, and its target URLs, to
other users).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

from router import locations
from router.store import (
    DigestItem,
    ExpectMatch,
    JournalEntry,
    OutboxItem,
    Store,
    ThrottleUpdate,
    decode_fields,
    encode_fields,
)
from router.trust import Untrusted, private_problem, write_private

SPOOL_DIR = locations.SPOOL_DIR
SUFFIX = ".event.json"


def spool_dirs(state_dir: Path) -> list[Path]:
    """Where spooled events may be: the state directory's spool, then the
    default state directory's (when different)."""
    first = Path(state_dir) / SPOOL_DIR
    second = Path(locations.default_state_dir()) / SPOOL_DIR
    return [first] if second == first else [first, second]


def _record_json(record: Any) -> dict[str, Any]:
    data = asdict(record)
    if "fields" in data:
        data["fields"] = json.loads(encode_fields(data["fields"]))
    return data


def _record_from(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    values = {k: v for k, v in data.items() if k in known}
    if "fields" in values:
        values["fields"] = decode_fields(json.dumps(values["fields"]))
    return cls(**values)


def decided(
    entry: JournalEntry,
    outbox: list[OutboxItem],
    throttles: list[ThrottleUpdate],
    expect_matches: list[ExpectMatch],
    digest_items: list[DigestItem],
) -> dict[str, Any]:
    """A decided event as spool data (see the module docstring)."""
    journal = _record_json(entry)
    journal["received"] = entry.received.isoformat()
    return {
        "kind": "decided",
        "uid": entry.uid,
        "received": journal["received"],
        "entry": journal,
        "outbox": [asdict(item) for item in outbox],
        "throttles": [asdict(t) for t in throttles],
        "expect_matches": [_record_json(m) for m in expect_matches],
        "digest_items": [_record_json(d) for d in digest_items],
        "sent": [],
        "steps": [],
    }


def raw(argv: list[str], uid: Optional[str], error: str) -> dict[str, Any]:
    """An event the handler could not decide: its arguments, for later."""
    received = datetime.now().isoformat()
    return {"kind": "raw", "uid": uid, "received": received, "argv": argv, "error": error}


def save(data: dict[str, Any], state_dir: Path) -> Path:
    """Write (or rewrite) ``data`` in the first spool directory that takes it.
    Raises OSError (or Untrusted) when none does."""
    name = f"{data['received'].replace(':', '')}-{data.get('uid') or os.getpid()}{SUFFIX}"
    last: Optional[Exception] = None
    for directory in spool_dirs(state_dir):
        try:
            write_private(directory / name, json.dumps(data, ensure_ascii=False).encode("utf-8"))
            return directory / name
        except (OSError, Untrusted) as exc:
            last = exc
    assert last is not None
    raise last


def pending(state_dir: Path) -> list[Path]:
    """Spooled events, oldest first (their names start with the received time)."""
    found = []
    for directory in spool_dirs(state_dir):
        if private_problem(directory):
            continue  # another user's directory is never read
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        found.extend(directory / name for name in names if name.endswith(SUFFIX))
    return sorted(found, key=lambda path: path.name)


Decide = Callable[[dict[str, Any]], None]


def flush(store: Store, state_dir: Path, decide: Optional[Decide] = None) -> tuple[int, list[str]]:
    """Record every spooled event in ``store``, oldest first, and forget it.

    ``decide(data)`` records a raw entry (the caller has the rules); without
    one, raw entries wait. Returns how many were recorded and the problems
    (an unreadable file is left where it is and named).
    """
    count, problems = 0, []
    for path in pending(state_dir):
        claimed = path.with_name(f".claimed-{os.getpid()}-{path.name}")
        try:
            os.replace(path, claimed)  # one flusher per file
        except OSError:
            continue  # another process took it
        try:
            if private_problem(claimed):
                raise Untrusted(private_problem(claimed) or "")
            data = json.loads(claimed.read_text(encoding="utf-8"))
            if data.get("kind") == "decided":
                _record_decided(store, data)
            elif decide is not None:
                decide(data)
            else:
                os.replace(claimed, path)
                continue
        except Exception as exc:  # noqa: BLE001 - keep the file, say why
            problems.append(f"{path}: not recorded: {type(exc).__name__}: {exc}")
            with contextlib.suppress(OSError):
                os.replace(claimed, path)
            continue
        with contextlib.suppress(OSError):
            claimed.unlink()
        count += 1
    return count, problems


def _record_decided(store: Store, data: dict[str, Any]) -> None:
    entry_data = dict(data["entry"])
    entry_data["received"] = datetime.fromisoformat(entry_data["received"])
    entry = _record_from(JournalEntry, entry_data)
    entry.id = None
    if entry.uid is not None and store.journal.has_uid(entry.uid):
        return  # the service (or another handler) journaled it already
    items = [_record_from(OutboxItem, item) for item in data.get("outbox", [])]
    event_id, ids = store.record(
        entry,
        items,
        [_record_from(ThrottleUpdate, t) for t in data.get("throttles", [])],
        now=time.time(),
        expect_matches=[_record_from(ExpectMatch, m) for m in data.get("expect_matches", [])],
        digest_items=[_record_from(DigestItem, d) for d in data.get("digest_items", [])],
    )
    for index in data.get("sent", []):
        if isinstance(index, int) and 0 <= index < len(ids):
            store.outbox.mark_sent(ids[index])
    if data.get("steps"):
        store.journal.record_steps(event_id, data["steps"])
