"""What every notifier is (see the package's docstring)."""

from __future__ import annotations

from typing import Optional

from router.config import Delivery
from router.urls import scheme_of

#: How a notifier's error text starts when the destination did not answer
#: in time (delivery then stops sending to that URL for this round).
TIMED_OUT = "timed out"


class Notifier:
    """One way of sending. ``schemes`` empty: every URL (the last resort)."""

    schemes: tuple[str, ...] = ()

    def prepare(self) -> None:
        """Import what sending needs (before the send's wall clock starts)."""

    def handles(self, url: str) -> bool:
        return not self.schemes or scheme_of(url) in self.schemes

    def problem(self, url: str) -> Optional[str]:
        """None when ``url`` can be sent to; otherwise why not, in words."""
        raise NotImplementedError

    def send(
        self,
        url: str,
        title: str,
        body: str,
        notify_type: str,
        body_format: str,
        policy: Delivery,
    ) -> Optional[str]:
        """Send one message: None when it was accepted, else why not (the
        caller scrubs the URL's secrets from it). ``policy`` holds the
        connect and read timeouts to honour; the caller bounds the wall clock."""
        raise NotImplementedError
