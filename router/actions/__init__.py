"""The action kinds: one module each, named in ``KIND_NAMES``.

To add an action: its rule in ``grammar/rules.lark`` (and in the ``action``
alternatives), and a module here named for its keyword, defining its
``Action`` subclass as ``KIND``, with the keyword added to ``KIND_NAMES``
(``base.py``).
The parser, ``router check``, rendering, the local steps and ``router
test`` all find it there.

A kind's module is imported when the kind is first asked for
(``kind(name)``): the handler's fast path performs a ``log`` step without
loading the other kinds. ``all_kinds()`` loads every one, for the parser
and the checker.
"""

from __future__ import annotations

import sys

from router.actions.base import KIND_NAMES, Action, Node, Part, Step

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - the fast path must not import typing
    from typing import Any

_LOADED: dict[str, type[Action]] = {}

#: The classes other modules import by name, and the kind module of each.
_CLASSES = {
    "Notify": "notify",
    "Notification": "notify",
    "Run": "run",
    "Abort": "abort",
    "Log": "log",
    "Stop": "stop",
}


def kind(name: str) -> type[Action]:
    """The action kind ``name``; KeyError when there is none."""
    found = _LOADED.get(name)
    if found is None:
        if name not in KIND_NAMES:
            raise KeyError(name)
        __import__(f"router.actions.{name}")
        found = _LOADED[name] = sys.modules[f"router.actions.{name}"].KIND
    return found


def all_kinds() -> dict[str, type[Action]]:
    """Every action kind, by keyword, in ``KIND_NAMES`` order."""
    return {name: kind(name) for name in KIND_NAMES}


def local_kinds() -> tuple[str, ...]:
    """The kinds performed on the engine's machine (run, abort, log)."""
    return tuple(name for name, found in all_kinds().items() if found.local)


def __getattr__(name: str) -> Any:
    """``from router.actions import Notify`` (and the other classes): the
    kind's module, imported on first use."""
    module = _CLASSES.get(name)
    if module is None:
        raise AttributeError(f"module 'router.actions' has no attribute {name!r}")
    kind(module)
    return getattr(sys.modules[f"router.actions.{module}"], name)


__all__ = [
    "KIND_NAMES",
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
    "all_kinds",
    "kind",
    "local_kinds",
]
