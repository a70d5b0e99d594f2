"""``abort TEXT``: tell Retrospect to cancel or skip, with a reason.

The reason goes into the intervention file Retrospect passed with the
event (appending, so two aborts for one event both reach its log); the
handler then exits with status 1. Only some events pass that file.
"""

from __future__ import annotations

from router.actions.base import Action, Step

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterable
    from typing import Any, Optional

    from router.actions.contexts import BuildContext, CheckContext, RenderContext


class Abort(Action):
    keyword = "abort"
    local = True
    tells_retrospect = True
    refused_in_expect = (
        "abort-without-intervention",
        "'abort' in an expect rule: no event is waiting to be stopped",
        None,
    )
    __slots__ = ("text", "span")

    @classmethod
    def build(cls, ctx: BuildContext, span: Any, children: list[Any]) -> Abort:
        return cls(children[0], span)

    def templates(self) -> Iterable[Any]:
        return (self.text,)

    def check(self, ctx: CheckContext) -> None:
        self._check_events(ctx)
        super().check(ctx)

    def _check_events(self, ctx: CheckContext) -> None:
        if ctx.is_expect:
            return  # refused_in_expect says it
        if not ctx.events:
            ctx.error(
                self.span,
                "abort-without-intervention",
                "'abort' needs events that pass an intervention file, not 'any'",
                "list the events, for example: on StartScript, StartSource",
            )
            return
        lacking = [e for e in ctx.events if not ctx.catalog[e].has_intervention_file]
        if lacking:
            able = [spec.name for spec in ctx.catalog.values() if spec.has_intervention_file]
            ctx.error(
                self.span,
                "abort-without-intervention",
                f"'abort' on {', '.join(lacking)}, which passes no intervention file",
                f"abort works on: {', '.join(able)}",
            )
        elif "NextExec" in ctx.events:
            ctx.warning(
                self.span,
                "abort-no-effect",
                "NextExec's intervention file is optional and has no known effect",
            )

    def render(self, ctx: RenderContext) -> list[Any]:
        return [Step("abort", ctx.rule, text=ctx.text(self.text), path=ctx.intervention_file)]

    @staticmethod
    def perform(step: Step, event_log: Optional[str]) -> dict[str, Any]:
        """Write the reason into Retrospect's intervention file."""
        result: dict[str, Any] = {"kind": "abort", "rule": step.rule, "text": step.text}
        if not step.path:
            result.update(outcome="error", error="this event passed no intervention file")
            return result
        try:
            with open(step.path, "a", encoding="utf-8") as handle:
                handle.write(step.text.rstrip("\n") + "\n")
        except OSError as exc:
            result.update(outcome="error", error=f"cannot write {step.path}: {exc.strerror or exc}")
            return result
        result["outcome"] = "ok"
        return result

    @staticmethod
    def describe(step: Step) -> list[str]:
        where = step.path or "no intervention file"
        return [f"abort: {step.text!r} into {where} (exit status 1) from {step.rule}"]


#: What ``router.actions.kind("abort")`` returns.
KIND = Abort
