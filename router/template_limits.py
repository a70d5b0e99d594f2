"""Bounds on rendering one template: the text it makes and the time it takes.

The handler runs while Retrospect waits, and a notification goes to people:
a template loop that never ends (``range(100000)`` inside another) must not
hang it, and ``'a' * 100000000`` must not become a 100 MB message. Every
render therefore runs on a budget, kept per render in a context variable
(the service renders in several threads):

- its output stops at ``MAX_OUTPUT`` characters (``render_bounded`` reads
  the template's stream and stops reading there);
- it stops after ``MAX_RENDER_SECONDS``, checked wherever a template can
  spend time without printing: every item of every ``for`` loop, every
  call, every intercepted operator, every chunk of output;
- ``range`` yields at most ``MAX_RANGE_ITEMS`` items in all;
- one operation that would make a huge value out of a small one (``*``,
  ``**``, ``%``, the width of ``center`` or of a ``format`` field, a
  ``join`` separator ...) is refused before it runs, since nothing can
  interrupt it once it has started.

A breach raises ``LimitExceeded``; ``router.templates.render`` turns it
into a note in the text and a journaled template error.
"""

from __future__ import annotations

import functools
import inspect
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Optional

from jinja2 import nodes, pass_eval_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import do_join, make_attrgetter
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SandboxedFormatter, safe_range
from jinja2.utils import Namespace, generate_lorem_ipsum

#: Characters one rendered template may produce.
MAX_OUTPUT = 64 * 1024
#: Seconds one template may take to render.
MAX_RENDER_SECONDS = 1.0
#: Items ``range`` may yield in one render, all its loops together.
MAX_RANGE_ITEMS = 100_000
#: Decimal digits per bit, to size an integer's text from its bit length.
_DIGITS_PER_BIT = 0.30103


class LimitExceeded(Exception):
    """A template went past one of its bounds. ``what`` says which, in one line."""

    def __init__(self, what: str, stop: str = "stopped") -> None:
        super().__init__(what)
        self.what = what
        self.stop = stop

    @property
    def note(self) -> str:
        """The line the rendered text ends with."""
        return f"[template {self.what}: {self.stop}]"


@dataclass
class Budget:
    """What is left of one render's budget."""

    deadline: float
    range_items: int = MAX_RANGE_ITEMS


_BUDGET: ContextVar[Optional[Budget]] = ContextVar("router_template_budget", default=None)


def check_time() -> None:
    """Stop the render in progress if its time is up (outside a render: nothing)."""
    budget = _BUDGET.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise LimitExceeded(f"rendering exceeded {MAX_RENDER_SECONDS:g} s")


def check_size(size: int, what: str) -> None:
    """Refuse a value of ``size`` characters (or items) past the output bound."""
    if size > MAX_OUTPUT:
        raise LimitExceeded(f"{what} exceeded {MAX_OUTPUT // 1024} KB")


def render_bounded(stream: Iterator[str]) -> tuple[str, Optional[LimitExceeded]]:
    """A template's text (``stream``: its generate(), or a block's), read
    until the end or a limit; with the breach, if there was one (the text is
    then what came before it). Nothing in a Jinja stream runs before it is
    read, so the budget set here covers all of the rendering."""
    parts: list[str] = []
    size = 0
    token = _BUDGET.set(Budget(time.monotonic() + MAX_RENDER_SECONDS))
    try:
        for chunk in stream:
            if size + len(chunk) > MAX_OUTPUT:
                parts.append(chunk[: MAX_OUTPUT - size])
                cut = LimitExceeded(f"output exceeded {MAX_OUTPUT // 1024} KB", "cut here")
                return "".join(parts), cut
            parts.append(chunk)
            size += len(chunk)
            check_time()
    except LimitExceeded as breach:
        return "".join(parts), breach
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
        _BUDGET.reset(token)
    return "".join(parts), None


# ---------------------------------------------------------------------------
# Loops
# ---------------------------------------------------------------------------


def bounded(items: Iterable[Any]) -> Iterator[Any]:
    """A ``for`` loop's items, with the deadline checked before each one:
    a loop that prints nothing and calls nothing still stops in time."""
    for item in items:
        check_time()
        yield item


def _counted(items: Iterable[Any]) -> Iterator[Any]:
    budget = _BUDGET.get()
    for item in items:
        if budget is not None:
            budget.range_items -= 1
            if budget.range_items < 0:
                raise LimitExceeded(f"range() exceeded {MAX_RANGE_ITEMS} items")
        check_time()
        yield item


class BoundedRange:
    """``range`` for templates: a real range (the sandbox caps its length)
    that still has a length, indexes and ``in``, but whose items, when
    iterated, draw on the render's ``MAX_RANGE_ITEMS``."""

    __slots__ = ("_range",)

    def __init__(self, *args: int) -> None:
        self._range = safe_range(*args)

    def __len__(self) -> int:
        return len(self._range)

    def __getitem__(self, index: Any) -> Any:
        item = self._range[index]
        return BoundedRange(item.start, item.stop, item.step) if isinstance(item, range) else item

    def __contains__(self, item: Any) -> bool:
        return item in self._range

    def __iter__(self) -> Iterator[int]:
        return _counted(self._range)

    def __reversed__(self) -> Iterator[int]:
        return _counted(reversed(self._range))

    def __repr__(self) -> str:
        return repr(self._range)

    def __getattr__(self, name: str) -> Any:  # start, stop, step, count, index
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._range, name)


class LimitedCodeGenerator(CodeGenerator):
    """Compiles every ``{% for %}`` to iterate through ``bounded``."""

    def visit_Template(self, node: nodes.Template, frame: Optional[Frame] = None) -> None:
        for loop in list(node.find_all(nodes.For)):
            iterable = nodes.Call(
                nodes.ImportedName(f"{__name__}.bounded"),
                [loop.iter],
                [],
                None,
                None,
                lineno=loop.iter.lineno,
            )
            loop.iter = iterable.set_environment(self.environment)
        super().visit_Template(node, frame)


class BoundedNamespace(Namespace):
    """``namespace()``, whose attributes carry values from one loop pass to
    the next: ``ns.s = ns.s ~ ns.s`` doubles without end, so a too long
    text is refused when it is stored."""

    def __setitem__(self, name: str, value: Any) -> None:
        check_time()
        if isinstance(value, (str, bytes)):
            check_size(len(value), f"namespace value '{name}'")
        super().__setitem__(name, value)


# ---------------------------------------------------------------------------
# Sizes of what one operation would make
# ---------------------------------------------------------------------------

_PRINTF = re.compile(r"%(?:\(([^)]*)\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_NUMBER = re.compile(r"\d+")
_TEXT = (str, bytes)


def _weight(item: Any) -> int:
    """How much text an item of a repeated list stands for."""
    return len(item) if isinstance(item, (str, bytes, list, tuple)) else 1


def _int_digits(value: int) -> int:
    return int(abs(value).bit_length() * _DIGITS_PER_BIT) + 1


def binop_size(operator: str, left: Any, right: Any) -> int:
    """The size of ``left OPERATOR right`` (characters, items or digits), as
    far as it can be known without computing it; 0 when it is small anyway."""
    if operator == "*":
        if isinstance(left, int) and not isinstance(right, int):
            left, right = right, left
        if isinstance(right, int) and isinstance(left, _TEXT):
            return len(left) * right
        if isinstance(right, int) and isinstance(left, (list, tuple)):
            return sum(_weight(item) for item in left) * right
        if isinstance(left, int) and isinstance(right, int):
            return _int_digits(left) + _int_digits(right)
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            return int(right * abs(left).bit_length() * _DIGITS_PER_BIT)
    elif operator == "%" and isinstance(left, str):
        return printf_size(left, right)
    return 0


def printf_size(text: str, values: Any) -> int:
    """About the most ``text % values`` can make: the text, and for each
    conversion its width or precision and the longest value."""
    specs = _PRINTF.findall(text)
    if isinstance(values, Mapping):
        items = [values[key] for key, _, _ in specs if key and key in values]
    else:
        items = list(values) if isinstance(values, tuple) else [values]
    longest = max((len(v) for v in items if isinstance(v, _TEXT)), default=0)
    widths = [v for v in items if isinstance(v, int)]  # what "*" takes
    size = len(text)
    for _, width, precision in specs:
        numbers = [int(n) for n in (width, precision) if n.isdigit()]
        if "*" in (width, precision):
            numbers += widths
        size += max(numbers, default=0) + longest
    return size


def _replace_size(text: Any, old: Any, new: Any, count: Any = -1) -> int:
    if not isinstance(text, str) or not isinstance(old, str) or not isinstance(new, str):
        return 0
    times = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    return len(text) + times * len(new)


def _string_method_size(method: Any, args: tuple[Any, ...]) -> int:
    """The size of ``TEXT.method(*args)`` for the methods that can make much
    text out of little; 0 for the others."""
    text = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    if not isinstance(text, _TEXT) or not args:
        return 0
    if name in ("center", "ljust", "rjust", "zfill") and isinstance(args[0], int):
        return max(args[0], len(text))
    if name == "expandtabs" and isinstance(args[0], int):
        return len(text) + text.count("\t" if isinstance(text, str) else b"\t") * args[0]
    if name == "replace" and len(args) >= 2:
        return _replace_size(text, *args[:3])
    if name == "translate" and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, _TEXT)), default=1)
        return len(text) * longest
    return 0


def measured(items: Iterable[Any], separator: int, what: str) -> Iterator[Any]:
    """``items`` for a join: their text and the separators between them are
    counted as they go, so a join stops before its text passes the bound."""
    size = 0
    for index, item in enumerate(items):
        size += (separator if index else 0) + len(str(item))
        check_size(size, what)
        check_time()
        yield item


# ---------------------------------------------------------------------------
# Filters, globals and str.format
# ---------------------------------------------------------------------------


def _guarded(func: Callable[..., Any], size: Callable[[Mapping[str, Any]], int]) -> Callable:
    """The filter or global ``func``, refusing a call whose result ``size``
    (given its arguments by name) puts past the bound, before it runs."""
    signature = inspect.signature(func)
    what = f"result of {func.__name__.replace('do_', '')}"
    # A filter Jinja also has in an async variant is passed the evaluation
    # context first, though the signature it shows (the sync one) lacks it.
    first = next(iter(signature.parameters), "")
    passed = getattr(func, "jinja_pass_arg", None) is not None
    skip = 1 if passed and first not in ("environment", "eval_ctx", "context") else 0

    @functools.wraps(func)  # keeps Jinja's pass_environment / pass_eval_context mark
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            arguments = signature.bind(*args[skip:], **kwargs)
        except TypeError:
            return func(*args, **kwargs)  # a wrong call: Jinja's own error says why
        arguments.apply_defaults()
        check_size(size(arguments.arguments), what)
        return func(*args, **kwargs)

    return guarded


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) else default


def _text_len(value: Any) -> int:
    return len(value) if isinstance(value, _TEXT) else 0


def _indent_size(a: Mapping[str, Any]) -> int:
    indent = a["width"] if isinstance(a["width"], int) else _text_len(a["width"])
    return _text_len(a["s"]) + (str(a["s"]).count("\n") + 1) * indent


def _wordwrap_size(a: Mapping[str, Any]) -> int:
    text = str(a["s"])
    joiner = a["wrapstring"] if a["wrapstring"] is not None else "\n"
    lines = len(text) // max(_int(a["width"], 1), 1) + text.count("\n") + 1
    return len(text) + lines * _text_len(joiner)


_SIZES: dict[str, Callable[[Mapping[str, Any]], int]] = {
    "center": lambda a: max(_int(a["width"]), _text_len(a["value"])),
    "indent": _indent_size,
    "format": lambda a: printf_size(str(a["value"]), a["kwargs"] or a["args"]),
    "wordwrap": _wordwrap_size,
    "replace": lambda a: _replace_size(a["s"], a["old"], a["new"], a["count"]),
    "batch": lambda a: _int(a["linecount"]) if a["fill_with"] is not None else 0,
    "slice": lambda a: _int(a["slices"]),
}


@pass_eval_context
def bounded_join(
    eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: Any = None
) -> str:
    """Jinja's ``join``, stopping before its text passes the bound."""
    if attribute is not None:
        value = map(make_attrgetter(eval_ctx.environment, attribute), value)
    return do_join(eval_ctx, measured(value, len(str(d)), "result of join"), d)


def bounded_filters(filters: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """The filters that can make much text out of little, guarded."""
    guarded = {name: _guarded(filters[name], size) for name, size in _SIZES.items()}
    guarded["join"] = bounded_join
    return guarded


bounded_lipsum = _guarded(generate_lorem_ipsum, lambda a: _int(a["n"]) * _int(a["max"]) * 16)


class BoundedFormatter(SandboxedFormatter):
    """``str.format`` in the sandbox, counting what it makes: a field's width
    or precision past the bound is refused before it is applied."""

    def __init__(self, env: SandboxedEnvironment) -> None:
        super().__init__(env)
        self.size = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        widest = max((int(n) for n in _NUMBER.findall(format_spec)), default=0)
        check_size(self.size + widest, "result of format")
        text = super().format_field(value, format_spec)
        self.size += len(text)
        check_size(self.size, "result of format")
        check_time()
        return text


def bounded_format(env: SandboxedEnvironment, text: str, name: str) -> Callable[..., str]:
    """``text.format`` or ``text.format_map`` (``name``) for templates."""

    def format_text(*args: Any, **kwargs: Any) -> str:
        if name == "format_map":
            if kwargs or len(args) != 1:
                raise TypeError("format_map() takes exactly one argument")
            args, kwargs = (), args[0]
        return BoundedFormatter(env).vformat(text, args, kwargs)

    return format_text


def _result_of(function: Any) -> str:
    """``result of NAME()`` for a breach message (a macro has a ``name``)."""
    name = getattr(function, "__name__", None) or getattr(function, "name", None)
    return f"result of {name if isinstance(name, str) else 'a call'}()"


class LimitedSandbox(SandboxedEnvironment):
    """Jinja's sandbox with the checks above wired into it: loops compiled
    through ``bounded``, calls, operators, ``range``, ``namespace``,
    ``lipsum``, ``str.format`` and the text-making filters."""

    code_generator_class = LimitedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.update(range=BoundedRange, namespace=BoundedNamespace, lipsum=bounded_lipsum)
        self.filters.update(bounded_filters(self.filters))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        check_time()
        size = _string_method_size(__obj, args)
        if size > MAX_OUTPUT:
            check_size(size, _result_of(__obj))
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, _TEXT) and len(result) > MAX_OUTPUT:
            check_size(len(result), _result_of(__obj))  # a macro's text, say
        return result

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        check_time()
        check_size(binop_size(operator, left, right), f"result of '{operator}'")
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, (*_TEXT, list, tuple)):
            check_size(len(result), f"result of '{operator}'")
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is str and attribute in ("format", "format_map"):
            return bounded_format(self, obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if type(obj) is str and argument in ("format", "format_map"):
            return bounded_format(self, obj, argument)
        return super().getitem(obj, argument)
