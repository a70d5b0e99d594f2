"""What ``router check`` finds, and what the engine loads from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from router.language import nodes as n
from router.language.diagnostics import Diagnostic


@dataclass
class CheckResult:
    """What ``router check`` reports, plus what the engine needs to load."""

    files: int = 0
    rule_files: list[n.RuleFile] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: File path -> its lines, for printing source lines under diagnostics.
    sources: dict[str, list[str]] = field(default_factory=dict)
    #: ``file`` templates' text, by the template node (the engine renders these).
    template_files: dict[n.Template, str] = field(default_factory=dict)
    #: Set when the paths themselves are unusable (exit status 2).
    usage_error: Optional[str] = None

    @property
    def rules(self) -> int:
        return sum(isinstance(s, n.Rule) for f in self.rule_files for s in f.statements)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]
