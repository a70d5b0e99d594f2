"""A delivery backend beside Apprise: one Notifier class, listed in NOTIFIERS.

The test's notifier appends each message to a real file (``drop:///path``);
``router check`` asks it about its URLs, delivery sends through it, and an
error it reports is kept (scrubbed) and retried like any other.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Optional

import pytest

from router import notifiers
from router.checker import check_text
from router.config import Delivery
from router.delivery import deliver
from router.notifiers import Notifier
from router.store import DEAD, PENDING, SENT, JournalEntry, OutboxItem, Store
from router.urls import mask_url


class DropNotifier(Notifier):
    """``drop:///absolute/path``: every message appended as a JSON line."""

    schemes = ("drop",)

    def problem(self, url: str) -> Optional[str]:
        path = url[len("drop://") :]
        return None if path.startswith("/") else "drop:// needs an absolute path"

    def send(self, url, title, body, notify_type, body_format, policy) -> Optional[str]:
        path = Path(url[len("drop://") :])
        if not path.parent.is_dir():
            return f"the folder is not there: {url}"
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"title": title, "body": body, "type": notify_type}) + "\n")
        return None


@pytest.fixture(autouse=True)
def drop_notifier(monkeypatch) -> None:
    monkeypatch.setattr(notifiers, "NOTIFIERS", [DropNotifier(), *notifiers.NOTIFIERS])


def test_router_check_asks_the_notifier_about_its_urls(tmp_path: Path) -> None:
    good = check_text(f'target box = "drop://{tmp_path}/box"\non EndScript notify box\n')
    assert [d.code for d in good.diagnostics] == []
    bad = check_text('target box = "drop://relative/box"\non EndScript notify box\n')
    assert [(d.code, "absolute path" in d.message) for d in bad.errors] == [("bad-url", True)]
    # Apprise still serves everything else.
    other = check_text('target ops = "nosuchservice://x"\non EndScript notify ops\n')
    assert [d.code for d in other.errors] == ["bad-url"]


def test_delivery_sends_through_the_notifier_and_keeps_its_errors(tmp_path: Path) -> None:
    box = tmp_path / "box"
    missing = f"drop://{tmp_path}/missing-parent/box"
    with Store.open(tmp_path / "state") as store:
        entry = JournalEntry(
            received=datetime(2024, 1, 31, 18, 0),
            name="EndScript",
            identity="Daily",
            status="failure",
            streak=1,
            host="backup01",
            fields={},
            args=[],
        )
        items = [
            OutboxItem(
                "r", "box", f"drop://{box}", mask_url(f"drop://{box}"), "t", "b", "failure", "text"
            ),
            OutboxItem("r", "lost", missing, mask_url(missing), "t", "b", "failure", "text"),
        ]
        store.record(entry, items)
        rows = store.outbox.claim_due()
        report = deliver(store, rows, Delivery.defaults(max_age=3600.0))
        states = {row.target: (row.state, row.last_error) for row in store.outbox.rows()}
    assert len(report.sent) == 1
    assert json.loads(box.read_text()) == {"title": "t", "body": "b", "type": "failure"}
    assert states["box"] == (SENT, None)
    state, error = states["lost"]
    assert state in (PENDING, DEAD) and error is not None
    assert error.startswith("the folder is not there: drop://") and "missing-parent" not in error
