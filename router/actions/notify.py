"""``notify TARGET, ... [title T] [body T] [type KIND] [format FORMAT]``.

One notification per target, rendered here and delivered later (the
outbox, Apprise): a notify is never a local step. Without title or body the
built-in message of the event is used; without type, the event's status
decides (``TYPE_FOR_STATUS``).
"""

from __future__ import annotations

from router.actions.base import Action, Node, Part
from router.suggest import did_you_mean

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterable
    from typing import Any, Optional

    from router.actions.contexts import BuildContext, CheckContext, RenderContext

TYPES = ("info", "success", "warning", "failure")
FORMATS = ("text", "markdown", "html")
#: Without ``type``, a notification's type follows the event's status.
TYPE_FOR_STATUS = {"failure": "failure", "warning": "warning", "success": "success"}


class Notification(Node):
    """A rendered notification for one target (before its URLs are resolved)."""

    __slots__ = ("rule", "target", "title", "body", "type", "format")


class Notify(Action):
    keyword = "notify"
    parts = ("title", "body", "type", "format")
    notifies = True
    __slots__ = ("targets", "title", "body", "type", "format", "span")

    @classmethod
    def build(cls, ctx: BuildContext, span: Any, children: list[Any]) -> Notify:
        targets = tuple(ctx.word(child) for child in children if ctx.is_word(child))
        options: dict[str, Any] = {}
        for part in (child for child in children if isinstance(child, Part)):
            value = part.children[0]
            if part.name in ("type", "format"):
                value = ctx.word(value)
            if part.name in options:
                where = value[1] if isinstance(value, tuple) else getattr(value, "span", span)
                ctx.warning(
                    where, "duplicate-option", f"'{part.name}' is given twice; the last one is used"
                )
            options[part.name] = value
        return cls(
            targets,
            options.get("title"),
            options.get("body"),
            options.get("type"),
            options.get("format"),
            span,
        )

    def templates(self) -> Iterable[Any]:
        return tuple(t for t in (self.title, self.body) if t is not None)

    def check(self, ctx: CheckContext) -> None:
        for name, span in self.targets:
            ctx.use_target(name, span)
        for option, allowed in (("type", TYPES), ("format", FORMATS)):
            chosen: Optional[tuple[str, Any]] = getattr(self, option)
            if chosen is not None and chosen[0] not in allowed:
                ctx.error(
                    chosen[1],
                    "bad-value",
                    f"unknown {option} '{chosen[0]}'" + did_you_mean(chosen[0], allowed),
                    f"{option} is one of: {', '.join(allowed)}",
                )
        super().check(ctx)

    def render(self, ctx: RenderContext) -> list[Any]:
        title = ctx.text(self.title, "title", one_line=True)
        body = ctx.text(self.body, "body")
        kind = self.type[0] if self.type else ctx.default_type
        body_format = self.format[0] if self.format else "text"
        return [
            Notification(ctx.rule, name, title, body, kind, body_format) for name, _ in self.targets
        ]


#: What ``router.actions.kind("notify")`` returns.
KIND = Notify
