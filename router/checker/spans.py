"""Where a character of a string literal's value sits in its file, so a bad
regex or glob is underlined where it goes wrong, not as a whole."""

from __future__ import annotations

from typing import Optional

from router.checker.report import Checking
from router.language import nodes as n


def char_span(checking: Checking, literal: n.Literal, index: Optional[int]) -> n.Span:
    """The span of one character of a string literal's value, in the file."""
    span = literal.span
    column = span.column + 1 + _source_offset(checking, literal, index)
    return n.Span(span.file, span.line, column, span.line, column + 1)


def pattern_span(
    checking: Checking, literal: n.Literal, index: Optional[int], length: int
) -> n.Span:
    """The span of ``length`` characters of a string literal's value from
    ``index``; the whole literal when the index is unknown or the literal
    spans lines (its columns no longer follow the value's)."""
    span = literal.span
    if index is None or span.end_line != span.line or _is_long_string(checking, literal):
        return span
    start = char_span(checking, literal, index)
    end = span.column + 1 + _source_offset(checking, literal, index + max(length, 1))
    return n.Span(span.file, span.line, start.column, span.line, max(end, start.end_column))


def _source_offset(checking: Checking, literal: n.Literal, index: Optional[int]) -> int:
    """How many source characters, after the opening quote, spell the
    first ``index`` characters of a string literal (``\\"`` spells one)."""
    index = index or 0
    span = literal.span
    if span.end_line != span.line or _is_long_string(checking, literal):
        return index
    raw, offset = checking.source_line(span)[span.column : span.end_column - 2], 0
    for _ in range(index):
        if offset >= len(raw):
            break
        escaped = raw[offset] == "\\" and raw[offset + 1 : offset + 2] in ('"', "\\", "n", "t")
        offset += 2 if escaped else 1
    return offset


def _is_long_string(checking: Checking, literal: n.Literal) -> bool:
    """A triple-quoted string: its value's characters are not where its columns say."""
    span = literal.span
    return checking.source_line(span)[span.column - 1 : span.column + 2] == '"""'
