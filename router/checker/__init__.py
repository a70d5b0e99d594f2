"""``router check``: everything about a ruleset that can be known before an
event arrives, beyond syntax.

The checker reads a whole ruleset at once (targets and defines are shared
by all files in a rules directory) and has no side effects: it sends
nothing, runs nothing, writes nothing. Its result is also what the engine
loads, so a ruleset is checked exactly as it will run.

Its parts: ``files`` (which files, may they be trusted), ``rules`` (the
statements, visited once), ``conditions`` (field types, patterns, defines),
``templates`` (Jinja), ``actions`` (each action kind's view while it checks
itself), all reporting into one ``Checking``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from router.bulk import collector_paused
from router.checker.files import (
    REFUSAL_HINT,
    RULE_SUFFIX,
    discover,
    no_rules,
    not_loaded,
    permission_problem,
    refusal,
)
from router.checker.parsed import ParseCache
from router.checker.report import Checking
from router.checker.result import CheckResult
from router.checker.rules import RulesetChecker
from router.language.diagnostics import Diagnostic
from router.language.parser import parse_text

__all__ = [
    "REFUSAL_HINT",
    "RULE_SUFFIX",
    "CheckResult",
    "ParseCache",
    "check_paths",
    "check_silence",
    "check_text",
    "discover",
    "permission_problem",
]


def check_paths(paths: Iterable[Path], parsed: Optional[ParseCache] = None) -> CheckResult:
    """Load every rule file under ``paths`` as the router would, and check it.
    ``parsed``: rule files parsed before, reused when unchanged."""
    with collector_paused():
        if parsed is None:
            return _check_paths(paths, ParseCache())
        parsed.start()
        result = _check_paths(paths, parsed)
        parsed.finish()
        return result


def _check_paths(paths: Iterable[Path], parsed: ParseCache) -> CheckResult:
    result = CheckResult()
    paths = list(paths)
    files, problem = discover(paths)
    if problem:
        result.usage_error = problem
        return result
    directories = [p for p in paths if p.is_dir()]
    for directory in directories:
        refused = permission_problem(directory, check_directory=False)
        if refused:
            result.diagnostics.append(refusal(str(directory), refused))
    given = {p for p in paths if not p.is_dir()}
    for path in files:
        rule_file, diagnostics = parsed.parse_file(path)
        result.files += 1
        result.rule_files.append(rule_file)
        result.sources[rule_file.path] = rule_file.text.splitlines()
        result.diagnostics.extend(diagnostics)
        # A file named on its own: its directory is checked with it (a
        # directory argument was checked once, above).
        refused = permission_problem(path, check_directory=path in given)
        if refused:
            result.diagnostics.append(refusal(rule_file.path, refused))
    for directory in directories:
        result.diagnostics.extend(not_loaded(directory))
    RulesetChecker(Checking(result)).run(result.rule_files, parsed.checks)
    if result.rules == 0 and not result.errors:
        result.diagnostics.extend(no_rules(directory) for directory in directories)
    result.diagnostics.sort(key=Diagnostic.sort_key)
    return result


def check_silence(condition: str, path: str = "condition") -> CheckResult:
    """Check a silence's condition as a rule's is checked (the same
    diagnostics), against any event's fields plus ``rule`` and ``target``;
    positions count from the condition's first character."""
    from router.checker.conditions import ConditionChecker
    from router.checker.scope import SILENCE
    from router.language.parser import parse_condition

    result = CheckResult(files=1)
    result.sources[path] = condition.splitlines() or [""]
    tree, diagnostics = parse_condition(condition, path)
    result.diagnostics.extend(diagnostics)
    if tree is not None:
        ConditionChecker(Checking(result)).check(tree, SILENCE)
    result.diagnostics.sort(key=Diagnostic.sort_key)
    return result


def check_text(text: str, path: str = "<rules>") -> CheckResult:
    """Check one rule file's text (tests, ``router test`` snippets)."""
    result = CheckResult(files=1)
    rule_file, diagnostics = parse_text(text, path)
    result.rule_files.append(rule_file)
    result.sources[path] = text.splitlines()
    result.diagnostics.extend(diagnostics)
    RulesetChecker(Checking(result)).run(result.rule_files)
    result.diagnostics.sort(key=Diagnostic.sort_key)
    return result
