"""The condition operators, each declared once: how it is written, what
``router check`` accepts for it, and what the engine tests.

Comparisons (``==`` ``!=`` ``<`` ``<=`` ``>`` ``>=``) and text patterns
(``contains``, ``matches``, ``=~``) are tables here; the checker and the
condition compiler read them, so a new comparison or pattern operator is its
token in the grammar plus one entry below. ``in``, ``between`` and
``exists`` have a shape of their own in the grammar, and a node each.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from router.language.regex import RegexError, RegexProblem, compile_regex


@dataclass(frozen=True)
class Comparison:
    """``FIELD op VALUE`` (or two fields, or two constants)."""

    symbol: str
    #: The same test with its operands swapped (``1 < x`` is ``x > 1``).
    flipped: str
    #: True: it orders values (numbers, sizes, durations, dates), so text
    #: and true/false fields cannot take it; False: equality, any type.
    orders: bool
    #: The test on two values of the same type (constants are decided at compile time).
    test: Callable[[Any, Any], Any]


COMPARISONS: dict[str, Comparison] = {
    c.symbol: c
    for c in (
        Comparison("==", "==", False, operator.eq),
        Comparison("!=", "!=", False, operator.ne),
        Comparison("<", ">", True, operator.lt),
        Comparison("<=", ">=", True, operator.le),
        Comparison(">", "<", True, operator.gt),
        Comparison(">=", "<=", True, operator.ge),
    )
}


@dataclass(frozen=True)
class PatternProblem:
    """Why a pattern is refused: its diagnostic, and where in the pattern
    (an offset and a length; None: the whole pattern)."""

    code: str
    message: str
    offset: Optional[int] = None
    length: int = 1
    hint: Optional[str] = None


@dataclass(frozen=True)
class PatternOperator:
    """``FIELD op "pattern"``: a test of text (or of a list's items)."""

    symbol: str
    #: What is wrong with a pattern, or None (``router check``).
    problem: Callable[[str], Optional[PatternProblem]]
    #: The pattern as the constant the test uses (a compiled expression).
    prepare: Callable[[str], Any]
    #: The test as a Python expression: ``{value}`` the field, ``{pattern}``
    #: the prepared pattern (see router.engine's condition compiler).
    expression: str


#: Field types a pattern operator reads.
PATTERN_TYPES = frozenset({"str", "path", "list"})


def glob_problem(pattern: str) -> Optional[PatternProblem]:
    """An unclosed ``[``: the one mistake fnmatch would silently take as a
    literal character."""
    index = 0
    while index < len(pattern):
        if pattern[index] == "[":
            start = index + 2 if pattern[index + 1 : index + 2] in ("!", "]") else index + 1
            close = pattern.find("]", start)
            if close < 0:
                message = f"invalid glob: '[' at position {index + 1} is never closed"
                return PatternProblem("bad-glob", message, index, 1)
            index = close
        index += 1
    return None


def regex_problem(pattern: str) -> Optional[PatternProblem]:
    compiled = compile_regex(pattern)
    if not isinstance(compiled, RegexProblem):
        return None
    return PatternProblem(
        "bad-regex", compiled.message, compiled.offset, compiled.length, compiled.hint
    )


def _regex(pattern: str) -> Any:
    compiled = compile_regex(pattern)
    if isinstance(compiled, RegexProblem):
        raise RegexError(compiled.message)
    return compiled


PATTERNS: dict[str, PatternOperator] = {
    p.symbol: p
    for p in (
        PatternOperator(
            "contains",
            problem=lambda pattern: None,
            prepare=str.casefold,
            # Case-insensitive; in a list, in any of its items.
            expression="((type(_v := {value}) is str and {pattern} in _v.casefold()) or"
            " (type(_v) is list and any({pattern} in str(x).casefold() for x in _v)))",
        ),
        PatternOperator(
            "matches",
            problem=glob_problem,
            prepare=lambda pattern: re.compile(fnmatch.translate(pattern), re.IGNORECASE),
            expression="(type(_v := {value}) is str and {pattern}.match(_v) is not None)",
        ),
        PatternOperator(
            "=~",
            problem=regex_problem,
            prepare=_regex,
            # RE2 matches UTF-8 bytes; "surrogatepass" keeps a value that arrived
            # with undecodable bytes (lone surrogates) searchable.
            expression="(type(_v := {value}) is str and"
            " {pattern}.search(_v.encode('utf-8', 'surrogatepass')) is not None)",
        ),
    )
}
