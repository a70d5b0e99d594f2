"""The action kinds: one module each, all listed in ``KINDS``.

To add an action: its rule in ``grammar/rules.lark`` (and in the ``action``
alternatives), and a module here with its ``Action`` subclass, listed in
``KINDS`` below. The parser, ``router check``, rendering, the local steps
and ``router test`` all find it there.
"""

from __future__ import annotations

from router.actions.abort import Abort
from router.actions.base import KINDS, Action, Node, Part, Step, local_kinds
from router.actions.log import Log
from router.actions.notify import Notification, Notify
from router.actions.run import Run
from router.actions.stop import Stop

KINDS.update((kind.keyword, kind) for kind in (Notify, Run, Abort, Log, Stop))

__all__ = [
    "KINDS",
    "Abort",
    "Action",
    "Log",
    "Node",
    "Notification",
    "Notify",
    "Part",
    "Run",
    "Step",
    "Stop",
    "local_kinds",
]
