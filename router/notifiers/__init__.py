"""How a notification leaves: one Notifier per kind of destination URL.

A notifier says whether it can use a URL (``router check`` asks, before
any event) and sends one message to it (delivery asks, in a worker thread
whose wall clock delivery bounds). Apprise serves every scheme it knows
and is asked last; a notifier for something Apprise cannot reach is a
class with its ``schemes`` and those two methods, listed in NOTIFIERS
before it. Delivery keeps everything else: retries, backoff, dead
letters, per-URL order, and scrubbing secrets from what a notifier says.
"""

from __future__ import annotations

from typing import Optional

from router.config import Delivery
from router.notifiers.apprise_notifier import AppriseNotifier
from router.notifiers.base import Notifier
from router.urls import scheme_of

__all__ = ["NOTIFIERS", "AppriseNotifier", "Notifier", "notifier_for", "problem", "send"]


#: Asked in order; the first that handles a URL serves it.
NOTIFIERS: list[Notifier] = [AppriseNotifier()]


def notifier_for(url: str) -> Notifier:
    return next(notifier for notifier in NOTIFIERS if notifier.handles(url))


def problem(url: str) -> Optional[str]:
    """Why a target URL cannot be used, or None (``router check``)."""
    url = url.strip()
    if not url:
        return "empty URL"
    if scheme_of(url) is None:
        return "not a URL (expected scheme://...)"
    return notifier_for(url).problem(url)


def send(
    url: str, title: str, body: str, notify_type: str, body_format: str, policy: Delivery
) -> Optional[str]:
    """Send through the notifier that serves ``url`` (see Notifier.send)."""
    return notifier_for(url).send(url, title, body, notify_type, body_format, policy)
