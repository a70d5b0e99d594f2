"""Text -> syntax tree (``nodes``), with syntax errors as Diagnostics.

The Lark grammar lives in ``grammar/rules.lark``; this module loads it,
parses, and transforms Lark's tree into our own dataclasses. When a file
does not parse, it is cut into top-level statements and each is parsed on
its own, so one broken rule never hides the errors of the rules after it.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Optional

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from router import trust
from router.actions import KINDS, Action, Part
from router.language import nodes as n
from router.language.diagnostics import ERROR, WARNING, Diagnostic
from router.units import parse_duration, parse_size

GRAMMAR_NAME = "rules.lark"
#: Grammar rules that are parts of an action (a notify's title, a run's timeout).
_ACTION_PARTS = frozenset(part for kind in KINDS.values() for part in kind.parts)

#: Words that start a top-level statement; a statement ends where one begins.
TOP_LEVEL = ("target", "define", "rule", "on", "expect")


def grammar_path() -> Path:
    """The grammar file: inside the installed package, or in the checkout.

    A wheel carries it as ``router/grammar/rules.lark``; a checkout (and an
    editable install) has it at ``grammar/rules.lark`` beside ``router/``.
    """
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (
        package_dir / "grammar" / GRAMMAR_NAME,
        package_dir.parent / "grammar" / GRAMMAR_NAME,
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{GRAMMAR_NAME} not found beside {package_dir}")


class Grammar:
    """The rule language's Lark parser: built once per process (analysing the
    grammar costs tenths of a second) and, given a private directory, cached
    there between processes.

    Lark's own ``cache=True`` would use a predictable file in the shared
    temporary directory; its cache is a pickle and the router may run as
    root, so only the private state directory is used, and a file there that
    another user owns is not read (``trust``).
    """

    def __init__(self) -> None:
        self.cache_dir: Optional[Path] = None
        self._lark: Optional[Lark] = None

    def use_cache_dir(self, directory: Optional[Path]) -> None:
        """Cache in ``directory`` from now on, if it is private (else not at all)."""
        ok = directory is not None and trust.cache_dir_ok(directory)
        self.cache_dir = Path(directory) if ok and directory is not None else None

    @property
    def lark(self) -> Lark:
        if self._lark is None:
            path = self.cache_dir / "grammar.lark-cache" if self.cache_dir else None
            cache: object = str(path) if path and not trust.private_problem(path) else False
            self._lark = Lark(
                grammar_path().read_text(encoding="utf-8"),
                parser="lalr",
                lexer="contextual",
                propagate_positions=True,
                maybe_placeholders=False,
                cache=cache,
            )
            if cache and os.name == "posix":
                # Lark writes it with the umask's mode; the state directory's files are 0600.
                with contextlib.suppress(OSError):
                    os.chmod(str(cache), 0o600)
        return self._lark


#: The process's grammar (the parse functions below use it).
GRAMMAR = Grammar()


def lark_parser() -> Lark:
    """The Lark parser of the process's grammar."""
    return GRAMMAR.lark


# ---------------------------------------------------------------------------
# Literal values
# ---------------------------------------------------------------------------

_ESCAPE = re.compile(r"\\(.)", re.S)
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


def unescape(body: str) -> str:
    """Resolve ``\\"``, ``\\\\``, ``\\n``, ``\\t``; any other backslash stays,
    so regular expressions like ``"\\d+"`` read as written."""
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), body)


def string_value(token: Token) -> tuple[str, int]:
    """The text of a string token and the file line its text starts on."""
    if token.type == "LONG_STRING":
        body = token.value[3:-3]
        line = token.line or 0
        if body.startswith("\n"):
            body, line = body[1:], line + 1
        elif body.startswith("\r\n"):
            body, line = body[2:], line + 1
        body = textwrap.dedent(body)
        # The closing quotes usually sit on their own indented line.
        if "\n" in body and body[body.rfind("\n") + 1 :].strip() == "":
            body = body[: body.rfind("\n")]
        return unescape(body), line
    return unescape(token.value[1:-1]), token.line or 0


# ---------------------------------------------------------------------------
# Lark tree -> nodes
# ---------------------------------------------------------------------------


class _Builder(Transformer):
    """Builds ``nodes`` bottom-up. Spans come from tokens and Lark's ``meta``."""

    def __init__(self, path: str) -> None:
        super().__init__(visit_tokens=False)
        self.path = path
        #: Problems the grammar cannot express (a notify option given twice).
        self.diagnostics: list[Diagnostic] = []

    # -- positions

    def tspan(self, token: Token) -> n.Span:
        return n.Span(self.path, token.line, token.column, token.end_line, token.end_column)

    def mspan(self, meta) -> n.Span:
        return n.Span(self.path, meta.line, meta.column, meta.end_line, meta.end_column)

    @staticmethod
    def join(first: n.Span, last: n.Span) -> n.Span:
        return n.Span(first.file, first.line, first.column, last.end_line, last.end_column)

    # -- literals

    def string(self, children: builtins.list[Token]) -> n.Literal:
        token = children[0]
        text, first_line = string_value(token)
        return n.Literal(text, "string", self.tspan(token), first_line=first_line)

    def number(self, children: builtins.list[Token]) -> n.Literal:
        text = children[0].value
        value = float(text) if "." in text else int(text)
        return n.Literal(value, "number", self.tspan(children[0]))

    def duration(self, children: builtins.list[Token]) -> n.Literal:
        return n.Literal(parse_duration(children[0].value), "duration", self.tspan(children[0]))

    def size(self, children: builtins.list[Token]) -> n.Literal:
        return n.Literal(n.Size(parse_size(children[0].value)), "size", self.tspan(children[0]))

    @v_args(meta=True)
    def true(self, meta, children) -> n.Literal:
        return n.Literal(True, "bool", self.mspan(meta))

    @v_args(meta=True)
    def false(self, meta, children) -> n.Literal:
        return n.Literal(False, "bool", self.mspan(meta))

    @v_args(meta=True)
    def list(self, meta, children) -> n.Literal:
        return n.Literal(tuple(children), "list", self.mspan(meta))

    def field(self, children: builtins.list[Token]) -> n.Field:
        return n.Field(
            tuple(t.value for t in children),
            self.join(self.tspan(children[0]), self.tspan(children[-1])),
        )

    # -- conditions

    def compare(self, children) -> n.Compare:
        left, op, right = children
        return n.Compare(op.value, left, right, self.join(left.span, right.span))

    def pattern(self, children) -> n.Pattern:
        field, op, pattern = children
        return n.Pattern(op.value, field, pattern, self.join(field.span, pattern.span))

    def member(self, children) -> n.Member:
        field, values = children
        return n.Member(field, values, False, self.join(field.span, values.span))

    def not_member(self, children) -> n.Member:
        field, values = children
        return n.Member(field, values, True, self.join(field.span, values.span))

    def between(self, children) -> n.Between:
        field, low, high = children
        return n.Between(field, low, high, self.join(field.span, high.span))

    @v_args(meta=True)
    def exists(self, meta, children) -> n.Exists:
        return n.Exists(children[0], self.mspan(meta))

    def reference(self, children: builtins.list[Token]) -> n.Reference:
        return n.Reference(children[0].value, self.tspan(children[0]))

    @v_args(meta=True)
    def negation(self, meta, children) -> n.Not:
        return n.Not(children[0], self.mspan(meta))

    def _boolop(self, op: str, children) -> n.BoolOp:
        return n.BoolOp(op, tuple(children), self.join(children[0].span, children[-1].span))

    def or_cond(self, children) -> n.BoolOp:
        return self._boolop("or", children)

    def and_cond(self, children) -> n.BoolOp:
        return self._boolop("and", children)

    # -- templates and actions

    @v_args(meta=True)
    def template_file(self, meta, children) -> n.Template:
        literal = children[0]
        return n.Template("", self.mspan(meta), path=literal.value, first_line=1)

    # -- actions: each kind builds its own node (router/actions/)

    def __default__(self, data, children, meta):
        """A grammar rule with no method here: an action kind's rule, or
        one of its parts. Anything else is a grammar rule nobody builds."""
        name = str(data)
        kind = KINDS.get(name)
        span = self.mspan(meta) if not meta.empty else None
        if kind is not None:
            return kind.build(self, span, children)
        if name in _ACTION_PARTS:
            return Part(name, tuple(children), span)
        raise ValueError(f"the grammar rule {name!r} has no builder")

    def is_word(self, child: object) -> bool:
        return isinstance(child, Token)

    def word(self, token: Token) -> tuple[str, n.Span]:
        return token.value, self.tspan(token)

    def template(self, children) -> n.Template:
        return self.template_of(children[0])

    def template_of(self, literal: n.Literal) -> n.Template:
        """A string literal as a template (a run's arguments, a log's path)."""
        return n.Template(literal.value, literal.span, first_line=literal.first_line)

    def duration_of(self, token: Token) -> timedelta:
        return parse_duration(token.value)

    def warning(self, span: n.Span, code: str, message: str) -> None:
        self.diagnostics.append(Diagnostic.at(span, WARNING, code, message))

    def by(self, children) -> tuple[n.Field, ...]:
        return tuple(children)

    @v_args(meta=True)
    def throttle(self, meta, children) -> n.Throttle:
        return self._window("throttle", meta, children)

    @v_args(meta=True)
    def digest(self, meta, children) -> n.Throttle:
        return self._window("digest", meta, children)

    def _window(self, kind: str, meta, children) -> n.Throttle:
        by = children[1] if len(children) > 1 else ()
        return n.Throttle(kind, parse_duration(children[0].value), by, self.mspan(meta))

    # -- statements

    def url_source(self, children) -> n.Source:
        return n.Source("url", children[0].value, children[0].span)

    @v_args(meta=True)
    def env_source(self, meta, children) -> n.Source:
        return n.Source("env", children[0].value, self.mspan(meta))

    @v_args(meta=True)
    def config_source(self, meta, children) -> n.Source:
        tag = children[1].value if len(children) > 1 else None
        return n.Source("config", children[0].value, self.mspan(meta), tag=tag)

    @v_args(meta=True)
    def target(self, meta, children) -> n.TargetDef:
        name, *sources = children
        return n.TargetDef(name.value, tuple(sources), self.mspan(meta), self.tspan(name))

    @v_args(meta=True)
    def define(self, meta, children) -> n.Define:
        name, condition = children
        return n.Define(name.value, condition, self.mspan(meta), self.tspan(name))

    def rule_name(self, children) -> tuple[str, str]:
        return ("name", children[0].value)

    def events(self, children: builtins.list[Token]):
        if children[0].type == "ANY":
            return ("events", ())
        return ("events", tuple((t.value, self.tspan(t)) for t in children))

    def where(self, children):
        return ("where", children[0])

    def grace(self, children):
        return ("grace", parse_duration(children[0].value))

    @v_args(meta=True)
    def rule(self, meta, children) -> n.Rule:
        return self._rule(meta, children, every=None)

    @v_args(meta=True)
    def expect(self, meta, children) -> n.Rule:
        every = next(parse_duration(c.value) for c in children if isinstance(c, Token))
        return self._rule(meta, [c for c in children if not isinstance(c, Token)], every=every)

    def _rule(self, meta, children, every: Optional[timedelta]) -> n.Rule:
        parts = dict(c for c in children if isinstance(c, tuple))
        actions = tuple(c for c in children if isinstance(c, Action))
        options = tuple(c for c in children if isinstance(c, n.Throttle))
        return n.Rule(
            parts.get("name"),
            parts["events"],
            parts.get("where"),
            actions,
            options,
            self.mspan(meta),
            every=every,
            grace=parts.get("grace"),
        )

    def start(self, children) -> builtins.list[n.Statement]:
        return list(children)


# ---------------------------------------------------------------------------
# Syntax errors in words
# ---------------------------------------------------------------------------

_WORDS = {
    "NAME": "a name",
    "STRING": "a string",
    "LONG_STRING": "a string",
    "NUMBER": "a number",
    "DURATION": "a duration (like 90s, 5m, 2h, 1d)",
    "SIZE": "a size (like 500KB, 2GB)",
    "COMPARE": "a comparison (==, !=, <, <=, >, >=)",
    "REGEX": "'=~'",
    "$END": "the end of the file",
}
_ACTIONS = {"NOTIFY", "RUN", "ABORT", "LOG", "STOP"}
_OPERATORS = {"COMPARE", "MATCHES", "REGEX", "CONTAINS", "_IN", "BETWEEN", "EXISTS", "_NOT"}
_STATEMENTS = {"TARGET", "DEFINE", "RULE", "ON", "EXPECT"}


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


def describe_expected(parser: Lark, expected: set) -> str:
    """Lark's expected-terminal set, as an admin would say it."""
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
        }
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
        }
    if expected >= _ACTIONS:
        phrases.append("an action (notify, run, abort, log, stop)")
        expected -= _ACTIONS
    if expected >= _STATEMENTS:
        phrases.append("a statement (target, define, rule, on, expect)")
        expected -= _STATEMENTS | {"$END"}
    words = set()
    for name in expected:
        keyword = _keyword(parser, name)
        words.add(f"'{keyword}'" if keyword is not None else _WORDS.get(name, name.lower()))
    phrases.extend(sorted(words))
    if len(phrases) > 6:
        phrases = phrases[:6] + ["..."]
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


#: A number glued to letters that make it no literal: ``5x``, ``90sec``, ``2GiB``.
_BAD_LITERAL = re.compile(r"-?\d+(?:\.\d+)?[A-Za-z_]\w*")


def syntax_diagnostic(
    path: str, text: str, exc: UnexpectedInput, following: Optional[tuple[str, int]] = None
) -> Diagnostic:
    """``exc`` in words. ``text`` may be one statement cut from a file; then
    ``following`` is the keyword (and its line) that starts the next one, so
    running out of text is not called the end of the file."""
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
            message += f", expected {describe_expected(parser, allowed)}"
        return Diagnostic(path, line, column, line, column + 1, ERROR, "syntax", message, hint)

    token = getattr(exc, "token", None)
    expected = _expected_terminals(exc)
    if isinstance(exc, UnexpectedEOF) or token is None or token.type == "$END":
        lines = text.rstrip().splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
        message = f"unexpected end of file, expected {describe_expected(parser, expected)}"
        if following is not None:
            word, word_line = following
            message = (
                f"expected {describe_expected(parser, expected)}"
                f" before the next statement ('{word}' on line {word_line})"
            )
        return Diagnostic(path, line, column, line, column + 1, ERROR, "syntax", message)
    assert isinstance(exc, UnexpectedToken)
    found = token.value if len(token.value) <= 40 else token.value[:37] + "..."
    message = f"unexpected '{found}', expected {describe_expected(parser, expected)}"
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
        hint = "a condition goes after 'where'; actions are notify, run, abort, log, stop"
    elif token.type == "NAME" and {"NOTIFY", "RUN"} & expected:
        hint = "actions are notify, run, abort, log, stop"
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


# ---------------------------------------------------------------------------
# Recovery: one statement at a time
# ---------------------------------------------------------------------------

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
    builder = _Builder(path)
    try:
        tree = lark_parser().parse(text)
    except UnexpectedInput:
        pass
    else:
        rule_file.statements = builder.transform(tree)
        return rule_file, builder.diagnostics

    diagnostics: list[Diagnostic] = []
    for start, end in split_statements(text):
        piece = _padded_piece(text, start, end)
        try:
            tree = lark_parser().parse(piece)
        except UnexpectedInput as exc:
            following = None
            if end < len(text):
                word = re.match(r"\w+", text[end:])
                following = (word.group(0) if word else text[end], text.count("\n", 0, end) + 1)
            diagnostics.append(syntax_diagnostic(path, piece, exc, following))
            continue
        rule_file.statements.extend(builder.transform(tree))
    return rule_file, diagnostics + builder.diagnostics


def parse_file(path: Path, display: Optional[str] = None) -> tuple[n.RuleFile, list[Diagnostic]]:
    """Parse a rule file from disk. Unreadable or non-UTF-8 files become diagnostics."""
    name = display or str(path)
    try:
        text = path.read_bytes().decode("utf-8")
        # Windows editors (Notepad before 2019) start UTF-8 files with a BOM.
        text = text[1:] if text.startswith("\ufeff") else text
    except UnicodeDecodeError as exc:
        prefix = path.read_bytes()[: exc.start]
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
    except OSError as exc:
        diag = Diagnostic(name, 1, 1, 1, 1, ERROR, "io", f"cannot read: {exc.strerror or exc}")
        return n.RuleFile(name, ""), [diag]
    return parse_text(text, name)
