"""What an action kind declares, and the plain data actions turn into.

Every kind (notify, run, abort, log, stop) is one ``Action`` subclass in a
module of its own. The class is the syntax-tree node the parser builds from
the grammar rule of the same name, and it says, in one place: how the node
is built, how ``router check`` checks it, what it renders into (a
Notification, a local Step), how a local step is performed, described and
timed. The stages reach the rest of the router only through the context
object they are handed (``contexts.py``), so these modules need nothing but
the standard library: the handler's fast path performs steps with them.

The package's ``__init__`` names every kind (``KIND_NAMES``) and imports a
kind's module when it is first asked for: the fast path loads only the
kinds of the steps it got, the parser and the checker all of them.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - the fast path must not import typing
    from collections.abc import Iterable
    from typing import Any, Optional

    from router.actions.contexts import BuildContext, CheckContext, RenderContext

#: Every action kind's keyword (and module name in this package), in the
#: order the documentation lists them.
KIND_NAMES = ("notify", "run", "abort", "log", "stop")
#: A ``run`` without ``timeout``: 5 minutes.
DEFAULT_RUN_TIMEOUT = 300.0


def _rebuild(cls: type, values: tuple) -> Any:
    node = cls.__new__(cls)
    for name, value in zip(cls.__slots__, values):
        object.__setattr__(node, name, value)
    return node


class Node:
    """A value of plain fields (``__slots__``): immutable, compared, hashed
    and pickled by its fields. Dataclasses would do the same, but importing
    them costs the handler's fast path about ten milliseconds."""

    __slots__: tuple[str, ...] = ()

    def __init__(self, *values: Any) -> None:
        if len(values) != len(self.__slots__):
            raise TypeError(f"{type(self).__name__} takes {', '.join(self.__slots__)}")
        for name, value in zip(self.__slots__, values):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.fields() == self.fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.fields()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({inner})"

    def __reduce__(self) -> tuple:
        return (_rebuild, (type(self), self.fields()))


class Part(Node):
    """What the parser hands a kind for one of its grammar sub-rules (a
    notify's ``title``, a run's ``timeout``): the rule's name and children."""

    __slots__ = ("name", "children", "span")


class Action(Node):
    """One action kind. Subclasses set the class attributes and override
    what applies; the defaults are what a kind without that trait does."""

    __slots__ = ()
    #: The grammar rule (and keyword) that writes this action.
    keyword = ""
    #: Sub-rules of the grammar that belong to this action (``Part``s in ``build``).
    parts: tuple[str, ...] = ()
    #: Renders into a local Step, performed where Retrospect waits.
    local = False
    #: Renders into notifications (a ``digest`` collects these).
    notifies = False
    #: Ends the evaluation of the event's rules (``stop``).
    ends_evaluation = False
    #: A local step that, done, makes Retrospect cancel or skip (``abort``).
    tells_retrospect = False
    #: Why an expect rule may not hold it: (diagnostic code, message, hint).
    refused_in_expect: Optional[tuple[str, str, Optional[str]]] = None
    #: Its check looks at files outside the rule file (a program, a log
    #: directory): a reload checks it again even when its rule file did not
    #: change.
    checks_files = False

    # -- the syntax tree

    @classmethod
    def build(cls, ctx: BuildContext, span: Any, children: list[Any]) -> Action:
        """The node for the grammar rule's ``children``."""
        raise NotImplementedError

    def templates(self) -> Iterable[Any]:
        """Every template the action renders (history use, ``router check``)."""
        return ()

    # -- router check

    def check(self, ctx: CheckContext) -> None:
        """Report what is wrong with the action (its templates, by default)."""
        for template in self.templates():
            ctx.check_template(template)

    # -- one event

    def render(self, ctx: RenderContext) -> list[Any]:
        """What the action turns into for one event: Notifications or Steps."""
        return []

    # -- local steps (``local`` kinds)

    @staticmethod
    def perform(step: Step, event_log: Optional[str]) -> dict[str, Any]:
        """Do the step; its outcome (``kind``, ``rule``, ``outcome``, ...)."""
        raise NotImplementedError

    @staticmethod
    def describe(step: Step) -> list[str]:
        """The step in words, for ``router test``."""
        return [f"{step.kind} from {step.rule}"]

    @staticmethod
    def time_allowed(step: Step) -> float:
        """The longest the step may take, in seconds."""
        return 1.0


class Step:
    """One local step, as plain data (it crosses the service's socket as JSON).

    ``error`` set means the step could not be prepared (a ``run`` argument
    that did not render): it is not performed, and a ``run``'s fallback runs.
    """

    __slots__ = (
        "kind",
        "rule",
        "argv",
        "env",
        "pass_env",
        "timeout",
        "fallback",
        "text",
        "path",
        "error",
    )

    def __init__(
        self,
        kind: str,
        rule: str = "",
        *,
        argv: Optional[list[str]] = None,
        env: Optional[dict[str, str]] = None,
        pass_env: Optional[list[str]] = None,
        timeout: float = DEFAULT_RUN_TIMEOUT,
        fallback: Optional[Step] = None,
        text: str = "",
        path: Optional[str] = None,
        error: Optional[str] = None,
    ) -> None:
        self.kind = kind
        self.rule = rule
        #: run: the program and its arguments, each rendered to one argument.
        self.argv = list(argv or [])
        #: run: the event's fields as RETRO_* variables.
        self.env = dict(env or {})
        #: run: names of the handler's own variables to pass on (``run_env``).
        self.pass_env = list(pass_env or [])
        #: run: seconds before the program is killed.
        self.timeout = float(timeout)
        #: run: what to do when the program fails (``run ... or ACTION``).
        self.fallback = fallback
        #: abort: the reason; log: the line.
        self.text = text
        #: abort: the intervention file; log: the file (None: the event log).
        self.path = path
        self.error = error

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        if self.fallback is not None:
            data["fallback"] = self.fallback.to_json()
        return data

    @classmethod
    def from_json(cls, data: Any) -> Step:
        """A step as the service sends it. Raises ValueError for anything
        that is not one (a fast path must not trip over a bad message). A
        kind that is not local is refused when performed."""
        if not isinstance(data, dict) or data.get("kind") not in KIND_NAMES:
            raise ValueError(f"not a local step: {data!r:.200}")
        values = {k: v for k, v in data.items() if k in cls.__slots__ and v is not None}
        kind = values.pop("kind")
        fallback = values.pop("fallback", None)
        try:
            step = cls(kind, **values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a local step: {exc}") from None
        step.env = {str(k): str(v) for k, v in step.env.items()}
        step.argv = [str(a) for a in step.argv]
        step.pass_env = [str(n) for n in step.pass_env]
        if fallback is not None:
            step.fallback = cls.from_json(fallback)
        return step

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Step) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"Step({self.to_json()!r})"
