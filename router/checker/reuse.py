"""What checking one rule file found, kept for the next check (a reload):
a file whose text and shared names (targets, defines) are as they were is
not checked again.

Only a file whose check reads nothing but the rules is kept: one with a
``file`` template, an action that looks at other files (``run``'s
program, ``log``'s directory) or a target read from the environment or a
configuration file is checked every time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from router.actions import Action
from router.checker.report import Checking
from router.language import nodes as n
from router.language.diagnostics import Diagnostic

#: File checks by rule file, text and shared names (see RulesetChecker.run).
FileChecks = dict[str, "FileCheck"]


@dataclass(frozen=True)
class FileCheck:
    """What checking one file added: its diagnostics and the shared names it used."""

    diagnostics: tuple[Diagnostic, ...]
    used_targets: frozenset[str]
    used_defines: frozenset[str]

    @classmethod
    def record(cls, checking: Checking, check: Callable[[], None]) -> FileCheck:
        """Run ``check`` (one file's) and keep what it added."""
        start = len(checking.diagnostics)
        targets, defines = checking.used_targets, checking.used_defines
        checking.used_targets, checking.used_defines = set(), set()
        try:
            check()
            found = cls(
                tuple(checking.diagnostics[start:]),
                frozenset(checking.used_targets),
                frozenset(checking.used_defines),
            )
        finally:
            targets |= checking.used_targets
            defines |= checking.used_defines
            checking.used_targets, checking.used_defines = targets, defines
        return found

    def apply(self, checking: Checking) -> None:
        checking.diagnostics.extend(self.diagnostics)
        checking.used_targets |= self.used_targets
        checking.used_defines |= self.used_defines


def shared_names_key(checking: Checking) -> str:
    """The targets and defines every file sees, as one key."""
    digest = hashlib.sha256()
    for kind, names in (("target", checking.targets), ("define", checking.defines)):
        for name in sorted(names):
            digest.update(f"{kind}\0{name}\0{names[name]!r}\0".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def self_contained(rule_file: n.RuleFile) -> bool:
    """Whether checking the file reads nothing but the rules."""
    for statement in rule_file.statements:
        if isinstance(statement, n.TargetDef):
            if any(source.kind != "url" for source in statement.sources):
                return False
        elif isinstance(statement, n.Rule):
            for action in statement.actions:
                if not isinstance(action, Action) or action.checks_files:
                    return False
                if any(template.path is not None for template in action.templates()):
                    return False
    return True
