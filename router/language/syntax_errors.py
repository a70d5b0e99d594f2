"""Syntax errors in words: what Lark could not parse, said the way an admin
would say it, with a hint for the usual mistakes."""

from __future__ import annotations

import re
from typing import Optional

from lark import Lark
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from router.actions import KIND_NAMES
from router.language.diagnostics import ERROR, Diagnostic
from router.language.grammar import lark_parser

_WORDS = {
    "NAME": "a name",
    "STRING": "a string",
    "LONG_STRING": "a string",
    "NUMBER": "a number",
    "DURATION": "a duration (like 90s, 5m, 2h, 1d)",
    "SIZE": "a size (like 500KB, 2GB)",
    "COMPARE": "a comparison (==, !=, <, <=, >, >=)",
    "REGEX": "'=~'",
}
_ACTIONS = {keyword.upper() for keyword in KIND_NAMES}
#: "notify, run, abort, log, stop"
_ACTION_WORDS = ", ".join(KIND_NAMES)
_OPERATORS = {"COMPARE", "MATCHES", "REGEX", "CONTAINS", "_IN", "BETWEEN", "EXISTS", "_NOT"}
_STATEMENTS = {"TARGET", "DEFINE", "RULE", "ON", "EXPECT"}
#: Fields a condition may also start with (``run.X``; ``rule`` and ``target``
#: in silences): part of "a condition" or "a field", never listed apart.
_SILENCE_FIELDS = {"RUN_FIELD", "RULE", "TARGET"}


def _keyword(parser: Lark, name: str) -> Optional[str]:
    try:
        pattern = parser.get_terminal(name).pattern
    except KeyError:
        return None
    if pattern.type == "str":
        return pattern.value
    # A keyword written as a regex so it ends at a word boundary (``not``).
    match = re.fullmatch(r"([a-z]+)\(\?!\[A-Za-z0-9_\]\)", pattern.value)
    return match.group(1) if match else None


def describe_expected(parser: Lark, expected: set, whole: str = "file") -> str:
    """Lark's expected-terminal set, as an admin would say it (``whole``: what
    is being parsed, for "the end of the file")."""
    expected = set(expected)
    phrases: list[str] = []
    if {"NAME", "NUMBER", "STRING", "LPAR"} <= expected:
        phrases.append("a condition")
        expected -= {
            "NAME",
            "NUMBER",
            "STRING",
            "LONG_STRING",
            "LPAR",
            "DURATION",
            "SIZE",
            "TRUE",
            "FALSE",
            "LSQB",
            "_NOT",
        } | _SILENCE_FIELDS
    if {"COMPARE", "MATCHES"} <= expected:
        phrases.append("an operator (==, !=, <, >, matches, =~, contains, in, between, exists)")
        expected -= _OPERATORS | {"DOT"}
    if {"NUMBER", "STRING", "DURATION"} <= expected:
        value = "a value (number, string, duration, size, true, false, list)"
        phrases.append(("a field or " + value) if "NAME" in expected else value)
        expected -= {
            "NUMBER",
            "STRING",
            "LONG_STRING",
            "DURATION",
            "SIZE",
            "TRUE",
            "FALSE",
            "LSQB",
            "NAME",
        } | _SILENCE_FIELDS
    if expected >= _ACTIONS:
        phrases.append(f"an action ({_ACTION_WORDS})")
        expected -= _ACTIONS
    if expected >= _STATEMENTS:
        phrases.append("a statement (target, define, rule, on, expect)")
        expected -= _STATEMENTS | {"$END"}
    words = set()
    for name in expected:
        keyword = _keyword(parser, name)
        if name == "$END":
            words.add(f"the end of the {whole}")
            continue
        words.add(f"'{keyword}'" if keyword is not None else _WORDS.get(name, name.lower()))
    phrases.extend(sorted(words))
    if len(phrases) > 6:
        phrases = phrases[:6] + ["..."]
    if not phrases:
        return "something else"
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " or " + phrases[-1]


def reserved_words() -> frozenset:
    """Every keyword of the grammar: the alphabetic string terminals."""
    parser = lark_parser()
    words = (_keyword(parser, t.name) for t in parser.terminals)
    return frozenset(w for w in words if w is not None and w.isalpha())


def _expected_terminals(exc: UnexpectedInput) -> set:
    """What the parser could have taken where ``exc`` happened.

    Lark's ``expected`` comes from the LALR table, whose merged states also
    list terminals that only fit in another context (``every`` after an
    ``on`` rule's condition, ``)`` after an action's string); asking the
    parser which terminals it would really accept there gives the true set.
    """
    interactive = getattr(exc, "interactive_parser", None)
    if interactive is not None:
        try:
            return set(interactive.accepts())
        except Exception:  # pragma: no cover - fall back to Lark's table
            pass
    return set(
        getattr(exc, "expected", None)
        or getattr(exc, "allowed", None)
        or getattr(exc, "accepts", None)
        or ()
    )


def _accepted_before(parser: Lark, text: str, position: int, whole: str) -> set:
    """What the parser accepts after ``text[:position]``: asked afresh when
    the error came up from inside a chain of reductions (a keyword that ends
    a condition in a rule, past the end of a condition on its own), where
    Lark's own answer is empty."""
    try:
        interactive = parser.parse_interactive(
            text[:position], start="condition" if whole == "condition" else "start"
        )
        interactive.exhaust_lexer()
        return set(interactive.accepts())
    except Exception:  # noqa: BLE001 - then the message just says less
        return set()


#: A number glued to letters that make it no literal: ``5x``, ``90sec``, ``2GiB``.
_BAD_LITERAL = re.compile(r"-?\d+(?:\.\d+)?[A-Za-z_]\w*")


def syntax_diagnostic(
    path: str,
    text: str,
    exc: UnexpectedInput,
    following: Optional[tuple[str, int]] = None,
    whole: str = "file",
) -> Diagnostic:
    """``exc`` in words. ``text`` may be one statement cut from a file; then
    ``following`` is the keyword (and its line) that starts the next one, so
    running out of text is not called the end of the file. ``whole``: what
    ``text`` is ("file", or "condition" for a silence's)."""
    parser = lark_parser()
    line, column = exc.line, exc.column
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        hint = None
        bad_literal = _BAD_LITERAL.match(text, exc.pos_in_stream)
        if bad_literal:
            word = bad_literal.group(0)
            message = f"'{word}' is not a number, duration or size"
            hint = "durations: 90s, 5m, 2h, 1d, 1w; sizes: 500KB, 20MB, 2GB, 1TB"
            end_column = column + len(word)
            return Diagnostic(path, line, column, line, end_column, ERROR, "syntax", message, hint)
        if char == '"':
            message = "unterminated string"
            hint = 'a string closes on the same line; use """...""" for text over several lines'
            start = exc.pos_in_stream
            if text.startswith('"""', start - 2):
                # The lexer took the first two quotes as an empty string.
                start, column = start - 2, column - 2
                hint = 'a """ string ends with """'
            end = text.find("\n", start)
            end_column = column + ((end if end >= 0 else len(text)) - start)
            return Diagnostic(path, line, column, line, end_column, ERROR, "syntax", message, hint)
        if char == "'":
            hint = "strings are written in double quotes"
        message = f"unexpected character {char!r}"
        allowed = _expected_terminals(exc)
        if allowed:
            message += f", expected {describe_expected(parser, allowed, whole)}"
        return Diagnostic(path, line, column, line, column + 1, ERROR, "syntax", message, hint)

    token = getattr(exc, "token", None)
    expected = _expected_terminals(exc)
    if isinstance(exc, UnexpectedEOF) or token is None or token.type == "$END":
        lines = text.rstrip().splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
        said = describe_expected(parser, expected, whole)
        message = f"unexpected end of {whole}, expected {said}"
        if following is not None:
            word, word_line = following
            message = (
                f"expected {describe_expected(parser, expected)}"
                f" before the next statement ('{word}' on line {word_line})"
            )
        return Diagnostic(path, line, column, line, column + 1, ERROR, "syntax", message)
    assert isinstance(exc, UnexpectedToken)
    if not expected:
        expected = _accepted_before(parser, text, token.start_pos, whole)
    found = token.value if len(token.value) <= 40 else token.value[:37] + "..."
    message = f"unexpected '{found}', expected {describe_expected(parser, expected, whole)}"
    hint = None
    if token.type in _ACTIONS | _STATEMENTS and {"NAME", "NUMBER", "STRING"} <= expected:
        # `where` with nothing (or half a condition) before the next action.
        hint = f"the condition before '{token.value}' is missing or incomplete"
    elif token.value in reserved_words() and "NAME" in expected:
        hint = f"'{token.value}' is a reserved word; it cannot be used as a name"
    elif (
        token.type == "NAME"
        and {"NOTIFY", "RUN"} & expected
        and "WHERE" in expected  # right after the events, where a condition could go
        and token.value not in reserved_words()
    ):
        hint = f"a condition goes after 'where'; actions are {_ACTION_WORDS}"
    elif token.type == "NAME" and {"NOTIFY", "RUN"} & expected:
        hint = f"actions are {_ACTION_WORDS}"
    return Diagnostic(
        path,
        token.line,
        token.column,
        token.end_line or token.line,
        token.end_column or token.column + len(token.value),
        ERROR,
        "syntax",
        message,
        hint,
    )
