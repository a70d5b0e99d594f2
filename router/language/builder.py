"""Lark's tree -> our syntax tree (``nodes``), bottom-up, with spans.

Actions are built by their kinds (``router/actions/``): a grammar rule
with no method here is an action kind's rule or one of its parts.
"""

from __future__ import annotations

import builtins
import re
import textwrap
from datetime import timedelta
from typing import Optional

from lark import Token, Transformer, v_args

from router.actions import KIND_NAMES, Action, Part, all_kinds, kind
from router.language import nodes as n
from router.language.diagnostics import WARNING, Diagnostic
from router.units import parse_duration, parse_size

#: Grammar rules that are parts of an action (a notify's title, a run's timeout).
_ACTION_PARTS = frozenset(part for kind in all_kinds().values() for part in kind.parts)


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


class Builder(Transformer):
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
        if children[0].type == "RUN_FIELD":  # "run.status": one token
            return n.Field(tuple(children[0].value.split(".")), self.tspan(children[0]))
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
        span = self.mspan(meta) if not meta.empty else None
        if name in KIND_NAMES:
            return kind(name).build(self, span, children)
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
    def rule_field(self, meta, children) -> n.Field:
        """``rule`` in a silence's condition: the name of the rule notifying."""
        return n.Field(("rule",), self.mspan(meta))

    @v_args(meta=True)
    def target_field(self, meta, children) -> n.Field:
        """``target`` in a silence's condition: the target notified."""
        return n.Field(("target",), self.mspan(meta))

    @v_args(meta=True)
    def by_run(self, meta, children) -> n.Field:
        """``by run``: the event's run (its id) as a key."""
        return n.Field(("run",), self.mspan(meta))

    @v_args(meta=True)
    def throttle(self, meta, children) -> n.Throttle:
        return self._window("throttle", meta, children)

    @v_args(meta=True)
    def digest(self, meta, children) -> n.Throttle:
        return self._window("digest", meta, children)

    @v_args(meta=True)
    def digest_run(self, meta, children) -> n.Throttle:
        """``digest run``: one notification per run, when it ends."""
        span = self.mspan(meta)
        return n.Throttle("digest", n.RUN_WINDOW, (n.Field(("run",), span),), span, per_run=True)

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
        return self._rule(meta, children)

    @v_args(meta=True)
    def expect(self, meta, children) -> n.Rule:
        return self._rule(meta, children)

    def every(self, children) -> tuple[str, timedelta]:
        return ("every", parse_duration(children[0].value))

    def within(self, children) -> tuple[str, tuple[timedelta, tuple[str, n.Span]]]:
        duration, name = children
        return ("within", (parse_duration(duration.value), (name.value, self.tspan(name))))

    def at(self, children) -> tuple[str, tuple[n.Literal, Optional[n.Literal]]]:
        cron, *zone = children
        return ("at", (cron, zone[0] if zone else None))

    def _rule(self, meta, children) -> n.Rule:
        parts = dict(c for c in children if isinstance(c, tuple))
        within = parts.get("within")
        at = parts.get("at")
        actions = tuple(c for c in children if isinstance(c, Action))
        options = tuple(c for c in children if isinstance(c, n.Throttle))
        return n.Rule(
            parts.get("name"),
            parts["events"],
            parts.get("where"),
            actions,
            options,
            self.mspan(meta),
            every=parts.get("every"),
            grace=parts.get("grace"),
            within=within[0] if within else None,
            after=within[1] if within else None,
            at=at[0] if at else None,
            tz=at[1] if at else None,
        )

    def start(self, children) -> builtins.list[n.Statement]:
        return list(children)
