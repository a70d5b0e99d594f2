"""``stop``: no later rule sees the event (the rule's other actions still happen)."""

from __future__ import annotations

from router.actions.base import Action

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    from router.actions.contexts import BuildContext


class Stop(Action):
    keyword = "stop"
    ends_evaluation = True
    refused_in_expect = ("bad-action", "'stop' has no event to stop in an expect rule", None)
    __slots__ = ("span",)

    @classmethod
    def build(cls, ctx: BuildContext, span: Any, children: list[Any]) -> Stop:
        return cls(span)


#: What ``router.actions.kind("stop")`` returns.
KIND = Stop
