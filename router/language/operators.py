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


class Glob:
    """A ``matches`` pattern: fnmatch's glob, case-insensitive, matching the
    whole value. A pattern of ASCII text and ``*`` (most of them) matches an
    ASCII value by finding its pieces in order; anything else goes through
    fnmatch's regular expression, compiled when first needed. (Compiling one
    costs about 0.3 ms: 0.6 s for a ruleset of 2,000 globs, on every handler
    run that evaluates them.)"""

    __slots__ = ("_pieces", "_regex", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        plain = pattern.isascii() and "?" not in pattern and "[" not in pattern
        self._pieces: Optional[list[str]] = pattern.lower().split("*") if plain else None
        self._regex: Any = None

    def match(self, value: str) -> bool:
        if self._pieces is not None and value.isascii():
            return _pieces_match(self._pieces, value.lower())
        if self._regex is None:
            self._regex = re.compile(fnmatch.translate(self.pattern), re.IGNORECASE)
        return self._regex.match(value) is not None


def _pieces_match(pieces: list[str], value: str) -> bool:
    """Does ``value`` match the glob whose text between its ``*`` is ``pieces``?"""
    if len(pieces) == 1:
        return value == pieces[0]
    first, last = pieces[0], pieces[-1]
    if len(value) < len(first) + len(last):
        return False
    if not value.startswith(first) or not value.endswith(last):
        return False
    position, end = len(first), len(value) - len(last)
    for piece in pieces[1:-1]:
        found = value.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


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
            prepare=Glob,
            expression="(type(_v := {value}) is str and {pattern}.match(_v))",
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
