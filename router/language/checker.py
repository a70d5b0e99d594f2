"""Semantic checks over parsed rule files (LANGUAGE.md, "Checking").

Work in progress: this first version finds rule files and reports syntax
errors; the semantic checks follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from router.language.diagnostics import Diagnostic
from router.language.nodes import Rule, RuleFile
from router.language.parser import parse_file

RULE_SUFFIX = ".rules"


@dataclass
class CheckResult:
    """What ``router check`` reports, plus what the engine needs to load."""

    files: int = 0
    rule_files: list[RuleFile] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: File path -> its lines, for printing source lines under diagnostics.
    sources: dict[str, list[str]] = field(default_factory=dict)
    #: Set when the paths themselves are unusable (exit status 2).
    usage_error: Optional[str] = None

    @property
    def rules(self) -> int:
        return sum(isinstance(s, Rule) for f in self.rule_files for s in f.statements)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]


def discover(paths: list[Path]) -> tuple[list[Path], Optional[str]]:
    """Rule files under ``paths``: directories give their ``*.rules`` in name order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix == RULE_SUFFIX))
        elif path.is_file():
            found.append(path)
        else:
            return [], f"{path}: no such file or directory"
    return found, None


def check_paths(paths: list[Path]) -> CheckResult:
    result = CheckResult()
    files, problem = discover(paths)
    if problem:
        result.usage_error = problem
        return result
    for path in files:
        rule_file, diagnostics = parse_file(path)
        result.files += 1
        result.rule_files.append(rule_file)
        result.sources[rule_file.path] = rule_file.text.splitlines()
        result.diagnostics.extend(diagnostics)
    result.diagnostics.sort(key=Diagnostic.sort_key)
    return result
