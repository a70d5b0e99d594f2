"""``log TEXT [to PATH]``: one line appended to a file (default: the event log).

The line is written with one ``O_APPEND`` write, so concurrent handlers
never interleave. As root, a log line must never be a way to write into
another file: the path is opened without following a symlink, must be a
regular file with one link owned by root or the router's user, and a
rendered path must stay inside the directory its literal part names.
"""

from __future__ import annotations

import os

from router import trust
from router.actions.base import Action, Step

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterable
    from pathlib import Path
    from typing import Any, Optional

    from router.actions.contexts import BuildContext, CheckContext, RenderContext

_TEMPLATE_MARKS = ("{{", "{%")


class Log(Action):
    keyword = "log"
    checks_files = True
    local = True
    __slots__ = ("text", "path", "span")

    @classmethod
    def build(cls, ctx: BuildContext, span: Any, children: list[Any]) -> Log:
        path = ctx.template_of(children[1]) if len(children) > 1 else None
        return cls(children[0], path, span)

    def templates(self) -> Iterable[Any]:
        return (self.text,) if self.path is None else (self.text, self.path)

    def check(self, ctx: CheckContext) -> None:
        super().check(ctx)
        if self.path is None or _has_marks(self.path.source):
            return
        target = ctx.base_dir / self.path.source
        if not target.parent.is_dir():
            ctx.warning(
                self.path.span,
                "missing-directory",
                f"directory '{target.parent}' does not exist; the log line will fail",
            )

    def render(self, ctx: RenderContext) -> list[Any]:
        text = ctx.text(self.text)
        if self.path is None:
            return [Step("log", ctx.rule, text=text)]
        rendered, problem = ctx.exact(self.path)
        path = None
        if problem is None:
            path, problem = confined_path(self.path.source, rendered, ctx.rule_dir)
            if problem:
                ctx.error(f"log path at {self.path.span}: {problem}")
        error = f"not written: {problem}" if problem else None
        return [Step("log", ctx.rule, text=text, path=path, error=error)]

    @staticmethod
    def perform(step: Step, event_log: Optional[str]) -> dict[str, Any]:
        return append_log(step, event_log)

    @staticmethod
    def describe(step: Step) -> list[str]:
        if step.error is not None:
            return [f"log: {step.error} (from {step.rule})"]
        return [f"log to {step.path or 'the event log'}: {step.text} from {step.rule}"]


def _has_marks(source: str) -> bool:
    return any(mark in source for mark in _TEMPLATE_MARKS)


def confined_path(
    source: str, rendered: str, base_dir: Optional[Path]
) -> tuple[str, Optional[str]]:
    """The file a ``log ... to`` path names, and why it may not be written
    (or None).

    A path without template marks is taken as written (relative to the rule
    file). A rendered one must stay inside the directory its literal part
    names: event values are data, never a path of their own, so a client
    called ``../../etc/x`` cannot move the file out of ``/var/log/backup/``.
    """

    def absolute(text: str) -> str:
        if base_dir is not None and not os.path.isabs(text):
            text = os.path.join(str(base_dir), text)
        return os.path.normpath(text)

    if "\0" in rendered:
        return rendered, "the path has a NUL character"
    marks = [source.find(mark) for mark in _TEMPLATE_MARKS if mark in source]
    if not marks:
        return absolute(rendered), None
    literal = source[: min(marks)]
    root = absolute(literal if literal.endswith(("/", os.sep)) else os.path.dirname(literal) or ".")
    path = absolute(rendered)
    parts = rendered.replace(os.sep, "/").split("/")
    if ".." in parts or os.path.commonpath([root, path]) != root or path == root:
        return path, f"the rendered path {rendered!r} leaves {root}"
    return path, None


def append_log(step: Step, default_path: Any) -> dict[str, Any]:
    """Append ``step.text`` as one line to its file (or ``default_path``).

    The file is opened without following a symlink, must be a regular file
    with one link owned by root or the router's user, in a directory no other
    user may write into (unless sticky).
    """
    result: dict[str, Any] = {"kind": "log", "rule": step.rule}
    if step.path is None and default_path is None:
        result.update(outcome="error", error="no event log")
        return result
    # os.path, not pathlib: this runs on the fast path, for every event the
    # default rules log, and pathlib's import costs more than the write.
    path = os.fspath(step.path or default_path)
    result["path"] = path
    if step.error is not None:
        result.update(outcome="error", error=step.error)
        return result
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
            refused = trust.admin_problem(parent, check_directory=False)
            if refused:
                raise PermissionError(f"refused: {refused}")
        data = (step.text.replace("\n", " ") + "\n").encode("utf-8", "replace")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o600)
        try:
            _check_log_file(fd, path)
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, PermissionError) and str(exc).startswith("refused"):
            reason = str(exc)
        result.update(outcome="error", error=f"cannot write {path}: {reason}")
        return result
    result["outcome"] = "ok"
    return result


def _check_log_file(fd: int, path: str) -> None:
    if not trust.CHECKED:
        return
    import stat

    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise PermissionError(f"refused: {path} is not a regular file")
    if info.st_nlink > 1:
        raise PermissionError(f"refused: {path} has {info.st_nlink} hard links")
    if info.st_uid not in (0, os.geteuid()):
        raise PermissionError(f"refused: {path} is owned by uid {info.st_uid}")


#: What ``router.actions.kind("log")`` returns.
KIND = Log
