"""``retroeventhandler``: the program Retrospect runs for every event.

Until the routing stage lands, the handler only reads its arguments into an
Event; it already honours the robustness contract's first rule (no
arguments: usage text, exit 0) and never raises on any input.
"""

from __future__ import annotations

import sys
from typing import Optional

USAGE = """\
usage: retroeventhandler EVENT [ARG ...]

Retrospect runs this program once per event (StartScript, EndSource, ...),
with the event's arguments in the order EVENTS.md lists them.
`router events` shows every event and its fields.
"""


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.stdout.write(USAGE)
        return 0
    try:
        from router.events import event_from_argv

        event_from_argv(args)
    except Exception as exc:  # the contract: never a traceback for Retrospect
        sys.stderr.write(f"retroeventhandler: {exc}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
