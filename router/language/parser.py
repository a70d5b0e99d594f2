"""Text -> syntax tree (``nodes``), with syntax errors as Diagnostics.

When a file does not parse, it is cut into top-level statements and each
is parsed on its own, so one broken rule never hides the errors of the
rules after it. The grammar is ``grammar.py``'s, the tree is built by
``builder.py``, and errors are put in words by ``syntax_errors.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from lark.exceptions import UnexpectedInput

from router.language import nodes as n
from router.language.builder import Builder
from router.language.diagnostics import ERROR, Diagnostic
from router.language.grammar import lark_parser
from router.language.syntax_errors import syntax_diagnostic

#: Words that start a top-level statement; a statement ends where one begins.
TOP_LEVEL = ("target", "define", "rule", "on", "expect")


_SCAN = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*(?:"""|$)'  # long string (possibly unterminated)
    r'|"(?:[^"\\\n]|\\.)*"?'  # string (possibly unterminated)
    r"|#[^\n]*"  # comment
    r"|(?<![\w.])[A-Za-z_]\w*",  # word
    re.S,
)


def split_statements(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) offsets of each top-level statement, found by keyword.

    Strings and comments are skipped as units, so a keyword inside one
    does not split. ``rule "NAME" on`` stays one statement.
    """
    starts: list[int] = []
    previous: list[str] = []
    for match in _SCAN.finditer(text):
        word = match.group(0)
        kind = "str" if word.startswith('"') else "comment" if word.startswith("#") else word
        if kind == "comment":
            continue
        if kind in TOP_LEVEL and not (
            kind in ("on", "expect") and previous[-2:] == ["rule", "str"]
        ):
            starts.append(match.start())
        previous.append(kind)
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(text)
        yield start, end


def _padded_piece(text: str, start: int, end: int) -> str:
    """text[start:end], preceded by blank space so its positions match the whole file."""
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1)
    return "\n" * (line - 1) + " " * column + text[start:end]


def parse_text(text: str, path: str = "<rules>") -> tuple[n.RuleFile, list[Diagnostic]]:
    """Parse one rule file's text. Never raises for bad input."""
    rule_file = n.RuleFile(path=path, text=text)
    builder = Builder(path)
    try:
        tree = lark_parser().parse(text, start="start")
    except UnexpectedInput:
        pass
    else:
        rule_file.statements = builder.transform(tree)
        return rule_file, builder.diagnostics

    diagnostics: list[Diagnostic] = []
    for start, end in split_statements(text):
        piece = _padded_piece(text, start, end)
        try:
            tree = lark_parser().parse(piece, start="start")
        except UnexpectedInput as exc:
            following = None
            if end < len(text):
                word = re.match(r"\w+", text[end:])
                following = (word.group(0) if word else text[end], text.count("\n", 0, end) + 1)
            diagnostics.append(syntax_diagnostic(path, piece, exc, following))
            continue
        rule_file.statements.extend(builder.transform(tree))
    return rule_file, diagnostics + builder.diagnostics


def parse_condition(text: str, path: str) -> tuple[Optional[n.Condition], list[Diagnostic]]:
    """One condition on its own (a silence's), its positions counted from its
    first character. Never raises for bad input."""
    builder = Builder(path)
    try:
        tree = lark_parser().parse(text, start="condition")
    except UnexpectedInput as exc:
        return None, [syntax_diagnostic(path, text, exc, whole="condition")]
    if not text.strip():
        return None, [Diagnostic(path, 1, 1, 1, 1, ERROR, "syntax", "the condition is empty")]
    condition = builder.transform(tree)
    return condition, builder.diagnostics


def parse_file(path: Path, display: Optional[str] = None) -> tuple[n.RuleFile, list[Diagnostic]]:
    """Parse a rule file from disk. Unreadable or non-UTF-8 files become diagnostics."""
    name = display or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        diag = Diagnostic(name, 1, 1, 1, 1, ERROR, "io", f"cannot read: {exc.strerror or exc}")
        return n.RuleFile(name, ""), [diag]
    return parse_bytes(data, name)


def parse_bytes(data: bytes, name: str) -> tuple[n.RuleFile, list[Diagnostic]]:
    """Parse a rule file's content, as read from disk (UTF-8, maybe a BOM)."""
    try:
        text = data.decode("utf-8")
        # Windows editors (Notepad before 2019) start UTF-8 files with a BOM.
        text = text[1:] if text.startswith("\ufeff") else text
    except UnicodeDecodeError as exc:
        prefix = data[: exc.start]
        line = prefix.count(b"\n") + 1
        column = exc.start - (prefix.rfind(b"\n") + 1) + 1
        diag = Diagnostic(
            name,
            line,
            column,
            line,
            column + 1,
            ERROR,
            "encoding",
            "rule files must be UTF-8",
            "re-save the file as UTF-8",
        )
        return n.RuleFile(name, ""), [diag]
    return parse_text(text, name)
