"""Sandboxed Jinja templates: the environment, our filters, what a template
refers to (for ``router check``), rendering, and the built-in messages.

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

from jinja2 import nodes
from jinja2.environment import Template
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.runtime import ChainableUndefined, StrictUndefined, Undefined
from jinja2.sandbox import SandboxedEnvironment

from router.events import EVENTS, canonical_name
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


_ENV: Optional[SandboxedEnvironment] = None
_STRICT_ENV: Optional[SandboxedEnvironment] = None


def environment() -> SandboxedEnvironment:
    """The shared environment (built on first use: jinja2 stays off the handler's fast path)."""
    global _ENV
    if _ENV is None:
        _ENV = make_environment()
    return _ENV


def strict_environment() -> SandboxedEnvironment:
    """The same environment where a variable the event lacks is an error, not
    empty text: for what must be exactly right or not happen at all (a
    ``run`` argument, a log file's path)."""
    global _STRICT_ENV
    if _STRICT_ENV is None:
        _STRICT_ENV = environment().overlay(undefined=StrictUndefined)
    return _STRICT_ENV


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


# ---------------------------------------------------------------------------
# Compiling and rendering
# ---------------------------------------------------------------------------

#: Compiled templates by source text. The ruleset renders the same handful of
#: templates for every event, and compiling costs far more than rendering.
_COMPILED: dict[tuple[str, bool], Template] = {}
#: Rule edits in a long-running service keep adding sources; past this many
#: the cache starts over rather than growing without end.
_COMPILED_MAX = 4096


def compile_template(source: str, strict: bool = False) -> Template:
    """``source`` compiled in the sandbox, once per distinct text (and
    strictness, see :func:`strict_environment`).

    Raises TemplateSyntaxError for a broken template (not cached, so a fixed
    rule file is picked up as soon as its text changes).
    """
    key = (source, strict)
    template = _COMPILED.get(key)
    if template is None:
        env = strict_environment() if strict else environment()
        template = env.from_string(source)
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        _COMPILED[key] = template
    return template


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

    A template that passes a limit (``MAX_OUTPUT`` characters,
    ``MAX_RENDER_SECONDS``, ``MAX_RANGE_ITEMS``, or one operation making a
    value past the output bound) gives what it rendered before that,
    followed by a note such as ``[template output exceeded 64 KB: cut
    here]``; the error says which limit, with the word "exceeded".
    """
    try:
        text, breach = render_bounded(compile_template(source, strict), dict(variables))
    except Exception as exc:  # noqa: BLE001 - any failure must keep the message
        message = _error_message(exc)
        return Rendered(text=f"{source}\n[template error: {message}]", error=message)
    if breach is not None:
        return Rendered(text=f"{text}\n{breach.note}" if text else breach.note, error=breach.what)
    return Rendered(text=text, error=None)


def render_title(source: str, variables: Mapping[str, Any]) -> Rendered:
    """``render`` for a title: the result is always one line.

    Values may carry line breaks (argv can), and the error fallback adds a
    line; a title with a line break breaks mail subjects and chat headers.
    """
    rendered = render(source, variables)
    return Rendered(text=" ".join(rendered.text.split()), error=rendered.error)


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


# ---------------------------------------------------------------------------
# Built-in messages
# ---------------------------------------------------------------------------
#
# Used by ``notify`` without title/body. They are built from small pieces so
# that every event says the same things the same way, and each piece guards
# its fields: Retrospect may send fewer arguments (the field is absent) or
# garbage (the field is the raw string), and the message must still read well.


def _line(text: str, when: Optional[str] = None) -> str:
    """One body line with its newline, left out entirely when ``when`` is false."""
    if when is None:
        return text + "\n"
    return "{% if " + when + " %}" + text + "\n{% endif %}"


def _field_line(label: str, expression: str, name: str) -> str:
    """``Label: value`` when the event carried field ``name``."""
    return _line(f"{label}: {expression}", f"{name} is defined")


def _quoted(kind: str, name: str, missing: str) -> str:
    """``kind 'value'`` in a title, or ``missing`` when the value is absent or empty."""
    return (
        "{% if " + name + " %}" + kind + " '{{ " + name + " }}'{% else %}" + missing + "{% endif %}"
    )


_FAILED = "error_code is number and error_code != 0"
_HAS_ERRORS = "errors is number and errors > 0"
#: "error -530 (backup client not found)"; a raw error code prints as it came.
_ERROR_DETAIL = "{{ error_code }}{% if error_message %} ({{ error_message }}){% endif %}"
_ERROR = "error " + _ERROR_DETAIL
_ERROR_COUNT = "{{ errors }} error{% if errors != 1 %}s{% endif %}"
#: The outcome of a script or source, as Retrospect's example handlers word it.
_RESULT = (
    "{% if "
    + _FAILED
    + " %}failed: "
    + _ERROR
    + "{% elif "
    + _HAS_ERRORS
    + " %}completed with "
    + _ERROR_COUNT
    + "{% elif error_code is number %}succeeded"
    + "{% elif error_code is defined %}finished: "
    + _ERROR
    + "{% else %}finished (Retrospect sent no result){% endif %}"
)
_HOST = '{{ host or "unknown host" }}'
_WHEN = "{% if date is defined %} at {{ date | datetime }}{% endif %}"
#: EndSource's size: bytes when kb parsed, else kb as it came.
_SIZE = "((bytes | filesize) if bytes is number else ((kb ~ ' KB') if kb is defined else ''))"
_FILES = (
    "(((('{:,}'.format(files)) if files is number else files)"
    " ~ (' file' if files == 1 else ' files'))"
    " if files is defined else '')"
)
_DURATION = "((duration | duration) if duration is defined else '')"
_CLIENT_SUFFIX = (
    "{% if client and not (source is string and client is string"
    " and source.startswith(client ~ '/')) %} on client {{ client }}{% endif %}"
)
_SOURCE_FIELDS = (
    _field_line("Script", "{{ script }}", "script")
    + _field_line("Source", "{{ source }}", "source")
    + _field_line("Path", "{{ source_path }}", "source_path")
    + _field_line("Client", "{{ client }}", "client")
)

#: Lines every built-in body ends with: history, throttling, rule, host.
_FOOTER = (
    _line(
        "Status: {{ status }}"
        "{% if streak is number and streak > 1 %} ({{ streak }} in a row){% endif %}",
        "status",
    )
    + _line(
        "Previous {{ event }}: {{ previous.status }}"
        "{% if previous.streak is number and previous.streak > 1 %}"
        " ({{ previous.streak }} in a row){% endif %}",
        "previous.status and previous.status != status",
    )
    + _line(
        "{{ suppressed }} more like this were suppressed by throttling"
        " since the last notification.",
        "suppressed is number and suppressed > 0",
    )
    + _line("Rule: {{ rule }}", "rule")
    + "Host: "
    + _HOST
    + "{% if received %}, received {{ received | datetime }}{% endif %}"
)


def _body(event: str, opening: str, *lines: str) -> str:
    """The opening sentence, the event's fields, the footer.

    The opening says what happened even when Retrospect sent no arguments;
    the line after it says when Retrospect sent fewer arguments than usual,
    so a sparse message is not mistaken for a template bug.
    """
    spec = EVENTS[event]
    short = _line(
        "Retrospect sent {{ args | length }} of the "
        + str(len(spec.fields))
        + " arguments of "
        + event
        + "; the missing details are left out.",
        "args is sequence and args | length < " + str(spec.min_args),
    )
    return _line(opening) + short + "".join(lines) + _FOOTER


_MEDIA_FIELDS = (
    _field_line("Backup set", "{{ backup_set }}", "backup_set")
    + _field_line("Member", "{{ member }}", "member")
    + _field_line(
        "Known member",
        "{% if known is sameas true %}yes{% elif known is sameas false %}no, new media"
        "{% else %}{{ known }}{% endif %}",
        "known",
    )
    + _field_line("Waiting for", "{{ waited | duration }}", "waited")
)
_MEMBER_OF = (
    "{% if member %}: member '{{ member }}'"
    "{% if backup_set %} of backup set '{{ backup_set }}'{% endif %}"
    "{% elif backup_set %}: backup set '{{ backup_set }}'{% endif %}"
)

DEFAULT_MESSAGES: dict[str, tuple[str, str]] = {
    "StartApp": (
        "Retrospect starting on "
        + _HOST
        + "{% if autolaunched is sameas true %} (launched automatically){% endif %}",
        _body(
            "StartApp",
            "Retrospect is starting on " + _HOST + _WHEN + ".",
            _field_line(
                "Launched",
                "{% if autolaunched is sameas true %}automatically"
                "{% elif autolaunched is sameas false %}by a person"
                "{% else %}{{ autolaunched }}{% endif %}",
                "autolaunched",
            ),
        ),
    ),
    "EndApp": (
        "Retrospect quit on " + _HOST,
        _body("EndApp", "Retrospect quit on " + _HOST + _WHEN + "."),
    ),
    "StartBackupServer": (
        "Proactive Backup starting on " + _HOST,
        _body("StartBackupServer", "Proactive Backup is starting on " + _HOST + _WHEN + "."),
    ),
    "StopBackupServer": (
        "Proactive Backup stopped on " + _HOST,
        _body("StopBackupServer", "Proactive Backup stopped on " + _HOST + _WHEN + "."),
    ),
    "StartScript": (
        _quoted("Script", "script", "A script")
        + " starting"
        + "{% if date is defined %} at {{ date | datetime }}{% endif %}",
        _body(
            "StartScript",
            "A script is starting.",
            _field_line("Script", "{{ script }}", "script"),
            _field_line("Starting", "{{ date | datetime }}", "date"),
        ),
    ),
    "EndScript": (
        _quoted("Backup", "script", "A backup script") + " " + _RESULT,
        _body(
            "EndScript",
            "A script finished.",
            _field_line("Script", "{{ script }}", "script"),
            _line("Result: " + _RESULT),
            _field_line("Non-fatal errors", "{{ errors }}", "errors"),
        ),
    ),
    "StartSource": (
        _quoted("Source", "source", "A source")
        + _CLIENT_SUFFIX
        + " starting"
        + "{% if script %} (script '{{ script }}'){% endif %}",
        _body("StartSource", "A source is about to be backed up.", _SOURCE_FIELDS),
    ),
    "EndSource": (
        _quoted("Source", "source", "A source")
        + _CLIENT_SUFFIX
        + " "
        + _RESULT
        + "{% if not ("
        + _FAILED
        + ") %}{% set stats = ["
        + _SIZE
        + ", "
        + _FILES
        + ", "
        + _DURATION
        + "] | select | join(', ') %}{% if stats %}: {{ stats }}{% endif %}{% endif %}",
        _body(
            "EndSource",
            "A source finished.",
            _SOURCE_FIELDS,
            _line("Result: " + _RESULT),
            _line(
                "Copied: {{ " + _SIZE + " }}{% if bytes is number %} ({{ kb }} KB){% endif %}"
                "{% if files is defined %}, {{ " + _FILES + " }}{% endif %}",
                "kb is defined",
            ),
            _line("Copied: {{ " + _FILES + " }}", "kb is not defined and files is defined"),
            _field_line("Duration", "{{ duration | duration }}", "duration"),
            _field_line("Source started", "{{ source_start | datetime }}", "source_start"),
            _field_line("Source ended", "{{ source_end | datetime }}", "source_end"),
            _field_line("Script started", "{{ script_start | datetime }}", "script_start"),
            _field_line("Backup set", "{{ backup_set }}", "backup_set"),
            _field_line("Action", "{{ action }}", "action"),
            _field_line("Parent volume", "{{ parent_volume }}", "parent_volume"),
            _field_line("Non-fatal errors", "{{ errors }}", "errors"),
        ),
    ),
    "MediaRequest": (
        "Retrospect needs media"
        + _MEMBER_OF
        + "{% if waited is defined %} (waiting {{ waited | duration }}){% endif %}",
        _body(
            "MediaRequest",
            "Retrospect is waiting for media on " + _HOST + ".",
            _MEDIA_FIELDS,
        ),
    ),
    "TimedOutMediaRequest": (
        "Media request timed out"
        + "{% if waited is defined %} after {{ waited | duration }}{% endif %}"
        + _MEMBER_OF,
        _body(
            "TimedOutMediaRequest",
            "Retrospect's request for media timed out on " + _HOST + ".",
            _MEDIA_FIELDS,
        ),
    ),
    "ScriptCheckFailed": (
        _quoted("Script", "script", "A script")
        + " will not be able to run"
        + "{% if date is defined %} at {{ date | datetime }}{% endif %}"
        + "{% if reason %}: {{ reason }}{% elif error_code is defined %}: "
        + _ERROR
        + "{% endif %}",
        _body(
            "ScriptCheckFailed",
            "A scheduled script will not be able to run.",
            _field_line("Script", "{{ script }}", "script"),
            _field_line("Run that will fail", "{{ date | datetime }}", "date"),
            _field_line("Reason", "{{ reason }}", "reason"),
            _field_line("Error", _ERROR_DETAIL, "error_code"),
        ),
    ),
    "NextExec": (
        _quoted("Script", "script", "A script")
        + " next runs"
        + "{% if date is defined %} at {{ date | datetime }}{% else %} (date not sent){% endif %}",
        _body(
            "NextExec",
            "Retrospect scheduled the next run of a script.",
            _field_line("Script", "{{ script }}", "script"),
            _field_line("Next run", "{{ date | datetime }}", "date"),
        ),
    ),
    "StopSched": (
        _quoted("Script", "script", "A script")
        + " reached its scheduled stop time"
        + "{% if date is defined %} ({{ date | datetime }}){% endif %}",
        _body(
            "StopSched",
            "A script reached its scheduled stop time.",
            _field_line("Script", "{{ script }}", "script"),
            _field_line("Scheduled stop", "{{ date | datetime }}", "date"),
        ),
    ),
    "PasswordEntry": (
        "Password entry"
        + "{% if subject %} for '{{ subject }}'{% endif %}"
        + "{% if "
        + _FAILED
        + " %} failed: "
        + _ERROR
        + "{% elif error_code is number %} succeeded{% elif error_code is defined %}: "
        + _ERROR
        + "{% endif %}",
        _body(
            "PasswordEntry",
            "A password was entered in Retrospect.",
            _field_line("Logged into", "{{ subject }}", "subject"),
            _field_line("Attempts", "{{ attempts }}", "attempts"),
            _field_line("Error", _ERROR_DETAIL, "error_code"),
        ),
    ),
    "FatalBackupError": (
        "Fatal error in "
        + _quoted("script", "script", "a script")
        + "{% if error_code is defined %}: "
        + _ERROR
        + "{% elif reason %}: {{ reason }}{% endif %}",
        _body(
            "FatalBackupError",
            "A backup stopped with a fatal error.",
            _field_line("Script", "{{ script }}", "script"),
            _field_line("What failed", "{{ reason }}", "reason"),
            _field_line("Error", _ERROR_DETAIL, "error_code"),
            _field_line("Where", "{{ error_zone }}", "error_zone"),
        ),
    ),
    "AnomalyAlert": (
        "Anomaly on "
        + _quoted("source", "source", "a source")
        + _CLIENT_SUFFIX
        + "{% if changed_percent is number %}"
        + ": {{ '%.1f' | format(changed_percent) }}% of files changed"
        + "{% elif changed_percent is defined %}: {{ changed_percent }}% of files changed"
        + "{% else %}: unusually many files changed{% endif %}",
        _body(
            "AnomalyAlert",
            "Unusually many files changed on a source (anomaly detection).",
            _SOURCE_FIELDS,
            _field_line("Selector", "{{ selector }}", "selector"),
            _field_line("Files watched", "{{ watched_files }}", "watched_files"),
            _field_line("Files changed", "{{ changed_files }}", "changed_files"),
            _field_line(
                "Changed",
                "{% if changed_percent is number %}{{ '%.1f' | format(changed_percent) }}"
                "{% else %}{{ changed_percent }}{% endif %}%",
                "changed_percent",
            ),
        ),
    ),
}

#: For an event name the catalog does not know: its name and raw arguments.
UNKNOWN_EVENT_MESSAGE: tuple[str, str] = (
    "Unknown Retrospect event '{{ event | default('?', true) }}' on " + _HOST,
    _line("Retrospect sent an event the router does not know: '{{ event | default('?', true) }}'.")
    + "{% if args %}"
    + _line("Arguments, as received:")
    + "{% for arg in args %}"
    + _line("  {{ loop.index }}. {{ arg }}")
    + "{% endfor %}"
    + "{% else %}"
    + _line("It came with no arguments.")
    + "{% endif %}"
    + _FOOTER,
)


def default_message(event: str) -> tuple[str, str]:
    """The built-in (title, body) for ``event``; aliases and case resolved."""
    canonical = canonical_name(event)
    if canonical is None:
        return UNKNOWN_EVENT_MESSAGE
    return DEFAULT_MESSAGES[canonical]
