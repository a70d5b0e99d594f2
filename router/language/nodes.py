"""The rule language's syntax tree: plain dataclasses with source positions.

The parser turns Lark's tree into these once; every later stage (checker,
compiler, engine) reads only these, so Lark stays an implementation detail
of ``parser.py``. An action's node is its kind's class (``router/actions/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import PurePath
from typing import Optional, Union

from router.actions import Action


@dataclass(frozen=True)
class Span:
    """Where a node sits in its file: 1-based lines and columns, end exclusive.

    Every node has one (100,000 at 10,000 rules), so no ``__dict__``: a
    third of the memory. Pickled as its five values (the default for slots
    would set them one by one, which a frozen class refuses)."""

    __slots__ = ("file", "line", "column", "end_line", "end_column")

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def __reduce__(self) -> tuple[type[Span], tuple[str, int, int, int, int]]:
        return (Span, (self.file, self.line, self.column, self.end_line, self.end_column))


# ---- literals and operands --------------------------------------------------


@dataclass(frozen=True)
class Size:
    """A size literal (``20MB``): a byte count, kept apart from plain ints so
    the checker can tell ``bytes > 20MB`` from ``kb > 20MB``."""

    bytes: int

    def __int__(self) -> int:
        return self.bytes


#: ``kind`` of a Literal: number, string, duration, size, bool, list.
LiteralValue = Union[int, float, str, bool, timedelta, Size, tuple["Literal", ...]]


@dataclass(frozen=True)
class Literal:
    value: LiteralValue
    kind: str
    span: Span
    #: For strings: the file line the text starts on (see Template.first_line).
    first_line: int = 0


@dataclass(frozen=True)
class Field:
    """A field reference: ``script`` or ``previous.status`` (``path`` holds the parts)."""

    path: tuple[str, ...]
    span: Span

    @property
    def name(self) -> str:
        return ".".join(self.path)


Operand = Union[Field, Literal]


# ---- conditions ---------------------------------------------------------------


@dataclass(frozen=True)
class Compare:
    op: str  # == != < <= > >=
    left: Operand
    right: Operand
    span: Span


@dataclass(frozen=True)
class Pattern:
    """``matches`` (glob), ``=~`` (regex) or ``contains`` against a string."""

    op: str
    field: Field
    pattern: Literal
    span: Span


@dataclass(frozen=True)
class Member:
    field: Field
    values: Literal  # kind == "list"
    negated: bool
    span: Span


@dataclass(frozen=True)
class Between:
    field: Field
    low: Operand
    high: Operand
    span: Span


@dataclass(frozen=True)
class Exists:
    field: Field
    span: Span


@dataclass(frozen=True)
class Reference:
    """A bare name in a condition: a ``define``, or a boolean field."""

    name: str
    span: Span


@dataclass(frozen=True)
class Not:
    operand: Condition
    span: Span


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    operands: tuple[Condition, ...]
    span: Span


Condition = Union[Compare, Pattern, Member, Between, Exists, Reference, Not, BoolOp]


# ---- templates and options (the actions: router/actions/) ------------------


@dataclass(frozen=True)
class Template:
    """Jinja source text. For ``file "..."`` templates, ``path`` names the file
    (relative to the rule file) and ``source`` is filled in when it is read."""

    source: str
    span: Span
    path: Optional[str] = None
    #: Line in the rule file where the template's first line sits, so Jinja's
    #: line numbers can be mapped back (a triple-quoted body starts a line
    #: below its opening quotes once common indentation is removed).
    first_line: int = 0


@dataclass(frozen=True)
class Throttle:
    """``throttle`` or ``digest`` (``kind``): a window and the fields that key it."""

    kind: str
    window: timedelta
    by: tuple[Field, ...]
    span: Span
    #: ``digest run``: the window is the run (``by`` is the run; ``window``
    #: only a bound); it closes when the run ends.
    per_run: bool = False


#: ``digest run``'s window, a bound: a run ends (or is given up) long before.
RUN_WINDOW = timedelta(days=30)


# ---- statements ----------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One destination source of a target: ``url``, ``env`` or ``config``."""

    kind: str
    value: str
    span: Span
    tag: Optional[str] = None


@dataclass(frozen=True)
class TargetDef:
    name: str
    sources: tuple[Source, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Define:
    name: str
    condition: Condition
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Rule:
    """An ``on`` rule, or an ``expect`` rule when ``every`` is set."""

    name: Optional[str]
    #: Event names as written, each with its span; empty for ``any``.
    events: tuple[tuple[str, Span], ...]
    condition: Optional[Condition]
    actions: tuple[Action, ...]
    options: tuple[Throttle, ...]
    span: Span
    every: Optional[timedelta] = None
    grace: Optional[timedelta] = None
    #: ``expect EndScript within D after StartScript``: a run that started
    #: and has not ended D later (a hung backup); ``after`` names the start.
    within: Optional[timedelta] = None
    after: Optional[tuple[str, Span]] = None
    #: ``at "CRON" [tz "ZONE"]``: a schedule (router/schedules.py).
    at: Optional[Literal] = None
    tz: Optional[Literal] = None

    @property
    def is_expect(self) -> bool:
        return self.every is not None or self.within is not None or self.at is not None

    @property
    def any_event(self) -> bool:
        return not self.events

    @property
    def label(self) -> str:
        """The rule's name, or ``FILE:LINE`` for an unnamed rule (docs/rules.md).

        FILE is the file's name without its directory: the journal, ``router
        test`` and ``replay --expect`` then say ``ops.rules:12`` wherever the
        rules directory happens to be.
        """
        if self.name is not None:
            return self.name
        return f"{PurePath(self.span.file).name}:{self.span.line}"


Statement = Union[TargetDef, Define, Rule]


@dataclass
class RuleFile:
    """One parsed ``*.rules`` file. ``text`` is kept for diagnostics' source lines."""

    path: str
    text: str
    statements: list[Statement] = field(default_factory=list)
