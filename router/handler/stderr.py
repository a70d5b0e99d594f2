"""What the handler says: one line on stderr, named after the program.

Retrospect keeps nothing of it, but an admin running the handler by hand
(or reading a service manager's log) sees why an event took the path it did.
"""

from __future__ import annotations

import sys


def say(message: str) -> None:
    """``message`` on stderr as ``retroeventhandler: message``."""
    sys.stderr.write(f"retroeventhandler: {message}\n")
