"""The one place a rule's ``=~`` pattern is compiled: with RE2, not Python's re.

Python's re backtracks, so ``"^(a+)+$"`` against forty a's and a b runs for
longer than Retrospect waits for the handler. RE2 (the dialect Prometheus and
Alertmanager use) matches in time linear in the text; in exchange it has no
backreferences, lookaround, possessive quantifiers or atomic groups. The
checker and the engine both compile through :func:`compile_regex`, so what
``router check`` accepts is exactly what runs.

Kept free of Lark (the handler compiles cached rules without it); RE2 itself
is imported on first use, so rules without ``=~`` never load it.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, Optional, Union

_LOOKAROUND = "RE2 has no lookahead or lookbehind: rewrite the pattern without it"
_NO_BACKREFERENCES = "RE2 has no backreferences: they cannot be matched in linear time"
#: Hints for what RE2 refuses, by how the part of the pattern it quotes starts.
_HINTS = (
    (("(?=", "(?!", "(?<=", "(?<!"), _LOOKAROUND),
    (("(?P=",), _NO_BACKREFERENCES),
    (("(?>",), "RE2 has no atomic groups; it never backtracks, so (?:...) does the same"),
    (("(?#",), "RE2 has no (?#...) comments"),
    (("\\Z",), "RE2 writes the end of the text as \\z"),
    (("\\u", "\\U", "\\N"), "RE2 writes a character by its code point as \\x{...}"),
)
_BACKREFERENCE = re.compile(r"\\[1-9]")
_POSSESSIVE = re.compile(r"(?:[*+?]|\{[\d,]*\})\+")
_FLAGS = re.compile(r"\(\?-?[A-Za-z]")
#: ``{,n}`` outside a character class (see ``_open_lower_bound``).
_OPEN_LOWER_BOUND = re.compile(r"\{,\d*\}")
_GENERAL_HINT = (
    "rule regular expressions use RE2 syntax (linear time; no backreferences or lookaround)"
)


@dataclass(frozen=True)
class RegexProblem:
    """Why a pattern cannot run: where (an offset into the pattern and a
    length, or None for the whole pattern), what, and how to fix it."""

    offset: Optional[int]
    length: int
    message: str
    hint: Optional[str] = None


class RegexError(ValueError):
    """A pattern reached the engine that RE2 cannot run (rules cached by an
    older router, checked with Python's re)."""


def compile_regex(pattern: str) -> Union[Any, RegexProblem]:
    """``pattern`` compiled with RE2 (its ``search`` finds a match anywhere
    in a text, as ``re.search`` does), or the problem that prevents it."""
    compiled, detail = _re2_compile(pattern)
    if detail is not None:
        return _problem(pattern, detail)
    offset = _open_lower_bound(pattern)
    if offset is not None:
        length = _OPEN_LOWER_BOUND.match(pattern, offset).end() - offset  # type: ignore[union-attr]
        return RegexProblem(
            offset,
            length,
            "invalid regular expression: RE2 reads {,n} as text, not as a repeat",
            "write {0,n} to repeat at most n times",
        )
    return compiled


def _re2_compile(pattern: str) -> tuple[Any, Optional[str]]:
    """``pattern`` compiled with RE2, or None and RE2's complaint (such as
    ``invalid perl operator: (?=``)."""
    import re2

    options = re2.Options()
    options.log_errors = False  # RE2 would print every problem to stderr itself
    try:
        return re2.compile(pattern, options), None
    except re2.error as exc:
        detail = exc.args[0] if exc.args else ""
        return None, detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)


def _python_error(pattern: str) -> Optional[re.error]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "possible nested set" and the like
        try:
            re.compile(pattern)
        except re.error as exc:
            return exc
    return None


def _problem(pattern: str, detail: str) -> RegexProblem:
    """The problem for a pattern RE2 refuses: what RE2 lacks (lookaround,
    backreferences...) in RE2's words, pointed at the part of the pattern it
    quotes; any other mistake (an unclosed group) in Python's words when
    Python refuses it too, since they say the exact position."""
    fragment = detail.partition(": ")[2]
    offset = _locate(pattern, fragment)
    hint = _hint(detail, fragment if offset is None else pattern[offset:])
    if hint is None or offset is None:
        python = _python_error(pattern)
        if python is not None and python.pos is not None:
            return RegexProblem(python.pos, 1, f"invalid regular expression: {python.msg}", hint)
    return RegexProblem(
        offset,
        len(fragment) if offset is not None else 0,
        f"invalid regular expression for RE2: {detail}",
        hint or _GENERAL_HINT,
    )


def _locate(pattern: str, fragment: str) -> Optional[int]:
    """Where in ``pattern`` the ``fragment`` RE2 complained about is.

    RE2 stops at the first problem, so it is the last occurrence before
    which the pattern still parses (an unclosed group aside): in
    ``(?P<n>a)(?P=n)`` the complaint "(?P" is about the second one.
    """
    found: Optional[int] = None
    start = pattern.find(fragment) if fragment else -1
    while start >= 0:
        before = _re2_compile(pattern[:start])[1]
        if before is None or before.startswith("missing )"):
            found = start
        start = pattern.find(fragment, start + len(fragment))
    return found


def _hint(detail: str, refused: str) -> Optional[str]:
    """What RE2 lacks or writes otherwise, when known; ``refused`` is the
    pattern from the part RE2 refused on."""
    if _BACKREFERENCE.match(refused):
        return _NO_BACKREFERENCES
    if _POSSESSIVE.match(refused):
        return "RE2 has no possessive quantifiers; it never backtracks, so a plain one does as well"
    if detail.startswith("invalid repetition size"):
        return "RE2 repeats at most 1000 times"
    for starts, hint in _HINTS:
        if refused.startswith(starts):
            return hint
    if _FLAGS.match(refused):
        return "RE2 knows the flags i, m, s and U only"
    return None


def _open_lower_bound(pattern: str) -> Optional[int]:
    """Where a pattern both dialects accept has ``{,n}``, which Python reads
    as ``{0,n}`` and RE2 as the text "{,n}": a rule that quietly changed
    meaning. Only looked for when Python accepts the pattern, so the walk
    follows Python's reading: escapes, and character classes up to the
    first ``]`` that is not their first member."""
    if "{," not in pattern or _python_error(pattern) is not None:
        return None
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            index += 2 if pattern[index + 1 : index + 2] == "^" else 1
            if pattern[index : index + 1] == "]":
                index += 1  # a "]" first in the class is one of its members
            continue
        elif _OPEN_LOWER_BOUND.match(pattern, index):
            return index
        index += 1
    return None
