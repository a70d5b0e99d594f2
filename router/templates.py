"""Sandboxed Jinja templates: the environment, our filters, what a template
refers to (for ``router check``), rendering, and the built-in messages
(``router/messages/*.j2``, one file per event).

Event values come from outside Retrospect's control (client names, volume
paths), so they are only ever template *data*: the sandbox renders them,
and nothing ever compiles a value as template source.

Rendering never loses a message: a template that fails at run time yields
its own source plus a ``[template error: ...]`` line, so the admin still
learns that the event happened and why the text looks wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Optional, Union

from jinja2 import FileSystemLoader, nodes
from jinja2.environment import Template
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.runtime import ChainableUndefined, StrictUndefined, Undefined
from jinja2.sandbox import SandboxedEnvironment

from router.catalog import EVENTS, canonical_name
from router.locations import package_dir
from router.template_limits import MAX_OUTPUT as MAX_OUTPUT  # the limits, for callers
from router.template_limits import MAX_RANGE_ITEMS as MAX_RANGE_ITEMS
from router.template_limits import MAX_RENDER_SECONDS as MAX_RENDER_SECONDS
from router.template_limits import LimitedSandbox, render_bounded

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


class _Sandbox(LimitedSandbox):
    """Jinja's sandbox, bounded (``router.template_limits``), and an unsafe
    attribute is an error at once.

    Jinja's own sandbox returns an Undefined for ``x.__class__`` that only
    fails when used; with the chainable Undefined below, ``{{ x.__class__ }}``
    would then print as empty text and hide the escape attempt. Raising here
    makes every such template fail visibly, and the fallback in ``render``
    journals it.
    """

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe."
        )


def _finalize(value: Any) -> Any:
    """Print None as empty text: a missing value must never read as "None"."""
    return "" if value is None else value


def make_environment() -> SandboxedEnvironment:
    """The one Jinja environment every template renders in.

    No autoescape: messages are text, markdown or HTML by the target's
    choice, and values are data either way.

    ``ChainableUndefined``: a field the event lacks (Retrospect sent fewer
    arguments, or ``previous`` is empty) renders as empty text, and so does
    an attribute of it (``previous.status`` with no previous event), instead
    of failing the whole message. Using it in arithmetic or comparisons
    still raises, which ``render`` turns into a visible template error;
    templates guard with ``is defined`` or ``default``.
    """
    env = _Sandbox(
        autoescape=False,
        keep_trailing_newline=False,
        undefined=ChainableUndefined,
        finalize=_finalize,
    )
    env.filters.update(FILTERS)
    return env


class Templates:
    """The sandboxed environments and the templates compiled in them.

    One object per process (``TEMPLATES``) owns what is expensive to build:
    the environment, its strict twin, the messages' environment, and the
    compiled templates by source text (the ruleset renders the same handful
    for every event, and compiling costs far more than rendering).
    """

    #: Rule edits in a long-running service keep adding sources; past this
    #: many the cache starts over rather than growing without end.
    MAX_COMPILED = 4096

    def __init__(self) -> None:
        self.environment = make_environment()
        #: A variable the event lacks is an error here, not empty text: for
        #: what must be exactly right or not happen at all (a ``run``
        #: argument, a log file's path).
        self.strict = self.environment.overlay(undefined=StrictUndefined)
        #: The built-in messages: files in the package, written as forms (a
        #: block tag's line break and indentation are not output).
        self.messages = self.environment.overlay(
            loader=FileSystemLoader(MESSAGES_DIR),
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # package files: no stat per message
        )
        self._compiled: dict[tuple[str, bool], Template] = {}
        self._refs: dict[str, TemplateRefs] = {}

    def compile(self, source: str, strict: bool = False) -> Template:
        """``source`` compiled, once per distinct text. Raises
        TemplateSyntaxError for a broken template (not cached, so a fixed rule
        file is picked up as soon as its text changes)."""
        key = (source, strict)
        template = self._compiled.get(key)
        if template is None:
            template = (self.strict if strict else self.environment).from_string(source)
            if len(self._compiled) >= self.MAX_COMPILED:
                self._compiled.clear()
            self._compiled[key] = template
        return template

    def refs(self, source: str) -> TemplateRefs:
        """See :func:`template_refs`. Remembered by text: a ruleset repeats
        its templates (10,000 rules, a few hundred distinct texts)."""
        found = self._refs.get(source)
        if found is None:
            found = _template_refs(self.environment, source)
            if len(self._refs) >= self.MAX_COMPILED:
                self._refs.clear()
            self._refs[source] = found
        return found

    def render(self, source: str, variables: Mapping[str, Any], strict: bool = False) -> Rendered:
        """See :func:`render`."""
        try:
            stream = self.compile(source, strict).generate(dict(variables))
            return _bounded(stream)
        except Exception as exc:  # noqa: BLE001 - any failure must keep the message
            message = _error_message(exc)
            return Rendered(text=f"{source}\n[template error: {message}]", error=message)

    def render_message(self, name: str, part: str, variables: Mapping[str, Any]) -> Rendered:
        """Part (``title`` or ``body``) of the built-in message ``name``: an
        event's (aliases and case resolved; an unknown name gets the one
        for unknown events), or the router's own (``_expect``, ``_digest``)."""
        file = message_file(name)
        try:
            template = self.messages.get_template(file)
            fields = dict(variables, **_message_extras(name))
            # The shared pieces (_common.j2) are imported without context, so
            # Jinja builds their module once, not per message: they read the
            # message's variables from ``m``, which they are passed.
            context = template.new_context(dict(fields, m=fields))
            rendered = _bounded(template.blocks[part](context))
        except Exception as exc:  # noqa: BLE001 - as render: the message is never lost
            message = _error_message(exc)
            return Rendered(f"[built-in message {file} failed: {message}]", message)
        if part == "title":
            return Rendered(" ".join(rendered.text.split()), rendered.error)
        return Rendered(rendered.text.rstrip("\n"), rendered.error)


def _bounded(stream: Any) -> Rendered:
    """A stream rendered within the limits, a breach as a note after the text."""
    text, breach = render_bounded(stream)
    if breach is not None:
        return Rendered(text=f"{text}\n{breach.note}" if text else breach.note, error=breach.what)
    return Rendered(text=text, error=None)


#: Where the built-in messages are: one ``EVENT.j2`` per event, the router's
#: own as ``_NAME.j2``, the shared pieces in ``_common.j2``.
MESSAGES_DIR = f"{package_dir()}/messages"
UNKNOWN_MESSAGE = "_unknown"


def message_file(name: str) -> str:
    if name.startswith("_"):
        return f"{name}.j2"
    return f"{canonical_name(name) or UNKNOWN_MESSAGE}.j2"


#: What a built-in message sees beyond a rule template's variables: the
#: event's argument counts (``_message_extras``) and ``m``, all of them as
#: one mapping for the shared pieces in ``_common.j2``.
MESSAGE_EXTRAS = ("expected_args", "required_args", "m")


def _message_extras(name: str) -> dict[str, Any]:
    """What the messages say about the event itself: how many arguments it has
    (for "Retrospect sent 2 of the 4 arguments"), from the catalog."""
    spec = EVENTS.get(canonical_name(name) or "")
    if spec is None:
        return {}
    return {"expected_args": len(spec.fields), "required_args": spec.min_args}


#: The process's templates.
TEMPLATES = Templates()


def environment() -> SandboxedEnvironment:
    """The environment rule templates render in (jinja2 is imported here,
    never on the handler's fast path)."""
    return TEMPLATES.environment


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
    stored.update(node.target for node in tree.find_all(nodes.Import))
    for node in tree.find_all(nodes.FromImport):
        stored.update(name if isinstance(name, str) else name[1] for name in node.names)
    if any(True for _ in tree.find_all(nodes.For)):
        stored.add("loop")
    # A macro's own name: a template may define one and call it.
    stored.update(macro.name for macro in tree.find_all(nodes.Macro))
    for macro in tree.find_all((nodes.Macro, nodes.CallBlock)):
        stored.update(arg.name for arg in macro.args)
        stored.update(("varargs", "kwargs", "caller"))
    return stored


def template_refs(source: str) -> TemplateRefs:
    """Parse ``source`` (never compile it) and list what it refers to. The
    answer is shared by every template of the same text: do not change it."""
    return TEMPLATES.refs(source)


def _template_refs(env: SandboxedEnvironment, source: str) -> TemplateRefs:
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


@dataclass
class Rendered:
    """A rendered template; ``error`` is set when the text is the fallback."""

    text: str
    #: One line saying what went wrong, for the journal; None on success.
    error: Optional[str] = None


def _error_message(exc: Exception) -> str:
    """A one-line description of a template failure, for the journal and the text."""
    if isinstance(exc, TemplateSyntaxError):
        message = f"syntax error at line {exc.lineno or 1}: {exc.message or exc}"
    else:
        detail = str(exc)
        message = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return " ".join(message.split())


def render(source: str, variables: Mapping[str, Any], *, strict: bool = False) -> Rendered:
    """Render ``source`` with ``variables``; never raises for a bad template.

    A syntax error, a sandbox SecurityError, an exception in a filter or in
    the template's own arithmetic all give the template's source followed by
    ``[template error: MESSAGE]``: a notification with a raw template still
    tells the admin what happened, where an empty or missing one would not.
    (With ``strict``, a variable the event lacks is such an error too.)

    A template that passes a limit (``MAX_OUTPUT`` characters,
    ``MAX_RENDER_SECONDS``, ``MAX_RANGE_ITEMS``, or one operation making a
    value past the output bound) gives what it rendered before that,
    followed by a note such as ``[template output exceeded 64 KB: cut
    here]``; the error says which limit, with the word "exceeded".
    """
    return TEMPLATES.render(source, variables, strict)


def render_title(source: str, variables: Mapping[str, Any]) -> Rendered:
    """``render`` for a title: the result is always one line.

    Values may carry line breaks (argv can), and the error fallback adds a
    line; a title with a line break breaks mail subjects and chat headers.
    """
    rendered = render(source, variables)
    return Rendered(text=" ".join(rendered.text.split()), error=rendered.error)


def render_message(name: str, part: str, variables: Mapping[str, Any]) -> Rendered:
    """The built-in message's ``part`` (see Templates.render_message)."""
    return TEMPLATES.render_message(name, part, variables)


def event_variables(
    fields: Mapping[str, Any],
    previous: Optional[Mapping[str, Any]],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """The variables a template sees for one event.

    Every field of the event (its own, derived, ``streak``), ``previous``
    (the previous event's fields; an empty dict when there is none, so
    ``previous.status`` is empty text and ``previous`` is false), and
    ``extra`` (``rule``, ``suppressed``, ``overdue``, ``events`` ...), which
    wins over a field of the same name because the caller set it on purpose.
    ``previous`` is a copy: a template calling ``previous.clear()`` must not
    change the history the next rule reads.
    """
    variables: dict[str, Any] = dict(fields)
    # An event with no history is the first of its streak.
    variables.setdefault("streak", 1)
    variables["previous"] = dict(previous) if previous else {}
    variables.update(extra)
    return variables
