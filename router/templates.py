"""Sandboxed Jinja templates: the environment, our filters, and what a
template refers to (for ``router check``).

Event values come from outside Retrospect's control (client names, volume
paths), so they are only ever template *data*: the sandbox renders them,
and nothing ever compiles a value as template source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Optional, Union

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

# ---------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------

_UNITS = (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def duration_filter(value: Union[timedelta, int, float, str, None]) -> str:
    """Seconds or a timedelta as ``2 hours 5 minutes`` (the two largest units)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        return "" if value is None else str(value)  # a raw string: show what arrived
    sign, remaining = ("-" if seconds < 0 else ""), int(round(abs(seconds)))
    parts = []
    for name, size in _UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count} {name}{'' if count == 1 else 's'}")
    if not parts:
        return "0 seconds"
    return sign + " ".join(parts[:2])


def filesize_filter(value: Union[int, float, str, None]) -> str:
    """Bytes as ``1.5 GB`` (powers of 1024, as Retrospect shows sizes)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "" if value is None else str(value)
    size = float(value)
    if abs(size) < 1024:
        return f"{int(size)} bytes"
    for unit in ("KB", "MB", "GB", "TB", "PB"):
        size /= 1024
        if abs(size) < 1024 or unit == "PB":
            return f"{size:.1f} {unit}".replace(".0 ", " ")
    raise AssertionError("unreachable")


def datetime_filter(value: Any, pattern: Optional[str] = None) -> str:
    """A datetime as ``2016-11-21 18:06`` or with a strftime ``pattern``."""
    if not isinstance(value, datetime):
        return "" if value is None else str(value)  # an unparsed date stays as received
    if pattern:
        return value.strftime(pattern)
    return value.strftime("%Y-%m-%d %H:%M:%S" if value.second else "%Y-%m-%d %H:%M")


FILTERS = {
    "duration": duration_filter,
    "filesize": filesize_filter,
    "datetime": datetime_filter,
}


def make_environment() -> SandboxedEnvironment:
    """The one Jinja environment every template renders in.

    No autoescape: messages are text, markdown or HTML by the target's
    choice, and values are data either way.
    """
    env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=False)
    env.filters.update(FILTERS)
    return env


_ENV: Optional[SandboxedEnvironment] = None


def environment() -> SandboxedEnvironment:
    global _ENV
    if _ENV is None:
        _ENV = make_environment()
    return _ENV


# ---------------------------------------------------------------------------
# What a template refers to
# ---------------------------------------------------------------------------


@dataclass
class TemplateRefs:
    """The names a template reads, each with its 1-based line in the template."""

    syntax_error: Optional[tuple[int, str]] = None
    #: Top-level variables read (not those the template assigns itself).
    variables: list[tuple[str, int]] = field(default_factory=list)
    #: ``base.attr`` reads on a variable, such as ``previous.status``.
    attributes: list[tuple[str, str, int]] = field(default_factory=list)
    filters: list[tuple[str, int]] = field(default_factory=list)
    tests: list[tuple[str, int]] = field(default_factory=list)


def _stored_names(tree: nodes.Template) -> set[str]:
    """Names the template binds itself: loop targets, set, macro and call args."""
    stored = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    if any(True for _ in tree.find_all(nodes.For)):
        stored.add("loop")
    for macro in tree.find_all((nodes.Macro, nodes.CallBlock)):
        stored.update(arg.name for arg in macro.args)
        stored.update(("varargs", "kwargs", "caller"))
    return stored


def template_refs(source: str) -> TemplateRefs:
    """Parse ``source`` (never compile it) and list what it refers to."""
    env = environment()
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        return TemplateRefs(syntax_error=(exc.lineno or 1, exc.message or str(exc)))
    refs = TemplateRefs()
    stored = _stored_names(tree) | set(env.globals)
    # `x is defined` is how a template guards a field some events lack.
    stored |= {
        test.node.name
        for test in tree.find_all(nodes.Test)
        if test.name in ("defined", "undefined") and isinstance(test.node, nodes.Name)
    }
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in stored:
            refs.variables.append((name.name, name.lineno))
    for getattr_node in tree.find_all(nodes.Getattr):
        base = getattr_node.node
        if isinstance(base, nodes.Name) and base.ctx == "load" and base.name not in stored:
            refs.attributes.append((base.name, getattr_node.attr, getattr_node.lineno))
    # find_all descends into {% filter %} blocks too: their filter is a Filter node.
    for filter_node in tree.find_all(nodes.Filter):
        refs.filters.append((filter_node.name, filter_node.lineno))
    for test in tree.find_all(nodes.Test):
        refs.tests.append((test.name, test.lineno))
    return refs
