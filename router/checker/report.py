"""What the parts of one check share: where diagnostics go, the sources
(for spans), and the ruleset's names (targets and defines are shared by
every file of a rules directory)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

from router.checker.result import CheckResult
from router.checker.visitor import NodeVisitor
from router.language import nodes as n
from router.language.diagnostics import ERROR, WARNING, Diagnostic


class Checking:
    """One check of a ruleset in progress."""

    def __init__(self, result: CheckResult) -> None:
        self.result = result
        self.diagnostics = result.diagnostics
        self.targets: dict[str, n.TargetDef] = {}
        self.defines: dict[str, n.Define] = {}
        self.used_targets: set[str] = set()
        self.used_defines: set[str] = set()
        #: Directory of the rule file being checked, for relative paths.
        self.base_dir = Path(".")

    def report(
        self, span: n.Span, severity: str, code: str, message: str, hint: Optional[str] = None
    ) -> None:
        self.diagnostics.append(Diagnostic.at(span, severity, code, message, hint))

    def error(self, span: n.Span, code: str, message: str, hint: Optional[str] = None) -> None:
        self.report(span, ERROR, code, message, hint)

    def warning(self, span: n.Span, code: str, message: str, hint: Optional[str] = None) -> None:
        self.report(span, WARNING, code, message, hint)

    def check_window(self, window: Optional[timedelta], span: n.Span, what: str) -> None:
        """A duration that must be above zero (every, throttle, timeout)."""
        if window is not None and window.total_seconds() <= 0:
            self.error(span, "bad-duration", f"'{what}' needs a duration above zero")

    def source_line(self, span: n.Span) -> str:
        lines = self.result.sources.get(span.file) or []
        return lines[span.line - 1] if 0 < span.line <= len(lines) else ""


class CheckingVisitor(NodeVisitor):
    """A visitor that reports into a Checking; a node it has no check for is
    an error (the ruleset is refused), not a silent skip."""

    def __init__(self, checking: Checking) -> None:
        self.checking = checking

    def generic_visit(self, node: Any, *args: Any) -> None:
        span = getattr(node, "span", None) or n.Span("<rules>", 1, 1, 1, 1)
        self.checking.error(
            span,
            "unchecked",
            f"router check has no check for {type(node).__name__}: refused",
            "this is a bug in the router; please report it",
        )
