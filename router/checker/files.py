"""Which files are rules, and whether the router may trust them.

Rules can run programs as the user Retrospect runs as (often root): a rule
file, its directory and every file a rule reads (templates, Apprise
configs, programs) must be owned by root or the router's user and
writable by no one else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from router.language.diagnostics import ERROR, WARNING, Diagnostic
from router.trust import admin_problem

RULE_SUFFIX = ".rules"
REFUSAL_HINT = (
    "rules can run programs as the user Retrospect runs as (often root):"
    " make it owned by root or that user, and chmod go-w it"
)
#: File names that look like rule files but are not loaded (only *.rules is).
_LOOKALIKE = re.compile(r"(?i)\.(rules?|rls)(\.txt)?$")


def discover(paths: Iterable[Path]) -> tuple[list[Path], Optional[str]]:
    """Rule files under ``paths``: a directory gives its ``*.rules`` in name order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix == RULE_SUFFIX))
        elif path.is_file():
            found.append(path)
        else:
            return [], f"{path}: no such file or directory"
    return found, None


def permission_problem(path: Path, *, check_directory: bool = True) -> Optional[str]:
    """Why the router refuses ``path``, or None."""
    return admin_problem(path, check_directory=check_directory)


def refusal(path: str, reason: str) -> Diagnostic:
    """A file the router will not read, as a diagnostic on the whole file."""
    return _file_diagnostic(path, ERROR, "insecure-permissions", f"refused: {reason}", REFUSAL_HINT)


def not_loaded(directory: Path) -> list[Diagnostic]:
    """Warnings for files in ``directory`` an admin probably meant as rules:
    ``ops.rule``, ``ops.RULES``, Notepad's ``ops.rules.txt``."""
    found = []
    for path in sorted(directory.iterdir()):
        if path.suffix == RULE_SUFFIX or not _LOOKALIKE.search(path.name):
            continue
        stem = _LOOKALIKE.sub("", path.name)
        found.append(
            _file_diagnostic(
                str(path),
                WARNING,
                "not-loaded",
                f"'{path.name}' is not loaded: only files named *.rules are",
                f"rename it to {stem}{RULE_SUFFIX} to load it",
            )
        )
    return found


def no_rules(directory: Path) -> Diagnostic:
    return _file_diagnostic(
        str(directory),
        WARNING,
        "no-rules",
        f"no rules in {directory}: events are journaled, and nothing else happens",
        "rules go in files named *.rules in this directory",
    )


def _file_diagnostic(
    path: str, severity: str, code: str, message: str, hint: Optional[str]
) -> Diagnostic:
    return Diagnostic(path, 1, 1, 1, 1, severity, code, message, hint)
