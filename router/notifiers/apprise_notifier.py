"""Sending through Apprise: every scheme Apprise knows.

Apprise returns only True or False, and says why in its log: the warnings
it logs during one send are captured (per thread, so concurrent sends keep
their own) and the last one is the reason. The plugin's socket timeouts
are set from the delivery policy, so a hung server costs at most those.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from contextvars import ContextVar
from typing import Any, Optional
from urllib.parse import urlsplit

from router.config import Delivery
from router.notifiers.base import TIMED_OUT, Notifier
from router.urls import plugin_for, recognise

_HTTP_STATUS = re.compile(r"\berror=(\d{3})\b")


class AppriseNotifier(Notifier):
    """Every URL no notifier before it serves."""

    def prepare(self) -> None:
        import apprise  # noqa: F401 - a few hundred milliseconds, once

    def problem(self, url: str) -> Optional[str]:
        return recognise(url)

    def send(
        self,
        url: str,
        title: str,
        body: str,
        notify_type: str,
        body_format: str,
        policy: Delivery,
    ) -> Optional[str]:
        reasons: list[str] = []
        _CAPTURE.set(reasons)  # this thread's own context: only this send
        handler = _ReasonCapture(reasons)
        logger = logging.getLogger("apprise")
        logger.addHandler(handler)
        try:
            return _send_now(url, title, body, notify_type, body_format, policy)
        finally:
            logger.removeHandler(handler)


_CAPTURE: ContextVar[Optional[list[str]]] = ContextVar("router_delivery_capture", default=None)


class _ReasonCapture(logging.Handler):
    """Collects the warnings and errors Apprise logs for one send: Apprise
    returns only False, and says why in its log."""

    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if _CAPTURE.get() is not self.sink:
            return  # another send's, or nobody's
        with contextlib.suppress(Exception):  # a broken log call must not break delivery
            self.sink.append(record.getMessage())


def _apply_timeouts(plugin: Any, url: str, policy: Delivery) -> float:
    """Set the plugin's socket timeouts; returns the smallest one.

    Apprise's requests-based plugins (json://, form://, xml:// and most
    services) pass ``(socket_connect_timeout, socket_read_timeout)`` to
    every request as ``timeout=``. The email plugin hands only
    ``socket_connect_timeout`` to ``smtplib.SMTP(timeout=)``, which applies
    it to the connect and to every reply, so there it gets the larger of
    the two. Timeouts given in the URL (``cto=``, ``rto=``) are kept when
    they are shorter. Plugins that use neither attribute are still bounded
    by the wall clock in ``send``.
    """
    query = {k.lower() for k, _, _ in (p.partition("=") for p in urlsplit(url).query.split("&"))}
    url_connect = float(plugin.socket_connect_timeout) if "cto" in query else float("inf")
    url_read = float(plugin.socket_read_timeout) if "rto" in query else float("inf")
    if hasattr(plugin, "smtp_host"):  # NotifyEmail: one smtplib timeout for everything
        single = min(max(policy.connect_timeout, policy.read_timeout), url_connect)
        plugin.socket_connect_timeout = single
        plugin.socket_read_timeout = single
        return single
    connect = min(policy.connect_timeout, url_connect)
    read = min(policy.read_timeout, url_read)
    plugin.socket_connect_timeout = connect
    plugin.socket_read_timeout = read
    return min(connect, read)


def _send_now(
    url: str, title: str, body: str, notify_type: str, body_format: str, policy: Delivery
) -> Optional[str]:
    """The send itself (in the worker thread ``_send`` starts): None, or
    why not, still unmasked."""
    import apprise

    plugin = plugin_for(url)
    if plugin is None:
        return f"Apprise cannot use this URL: {recognise(url) or 'unknown reason'}"
    shortest = _apply_timeouts(plugin, url, policy)
    notifier = apprise.Apprise()
    notifier.add(plugin)
    started = time.monotonic()
    captured = _CAPTURE.get()
    reasons = captured if captured is not None else []
    ok = notifier.notify(
        title=title, body=body, notify_type=notify_type, body_format=body_format or None
    )
    if ok:
        return None
    elapsed = time.monotonic() - started
    text = reasons[-1].strip() if reasons else "Apprise reported a failure without a reason"
    status = _HTTP_STATUS.search(text)
    if status:
        return f"HTTP {status.group(1)}: {text}"
    if elapsed >= 0.9 * shortest:
        # A connection error that took a socket timeout's time: say so, the
        # warning alone ("A Connection error occurred") hides it.
        return f"{TIMED_OUT} after {elapsed:.1f} s: {text}"
    return text
