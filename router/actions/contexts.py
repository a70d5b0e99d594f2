"""What each stage hands an action kind: the rest of the router, as seen
from ``router/actions/``. Only for type checking: the kinds import nothing
of the stages above them, the stages pass themselves in."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Optional, Protocol


class BuildContext(Protocol):
    """The parser, building a node from a grammar rule's children."""

    def is_word(self, child: Any) -> bool:
        """A NAME token (a target, a notify type)."""

    def word(self, token: Any) -> tuple[str, Any]:
        """A NAME token's text and span."""

    def template_of(self, literal: Any) -> Any:
        """A string literal as a Template (run's program and arguments, log's path)."""

    def duration_of(self, token: Any) -> timedelta:
        """A DURATION token's value."""

    def warning(self, span: Any, code: str, message: str) -> None:
        """A problem the grammar cannot express (an option given twice)."""


class CheckContext(Protocol):
    """``router check``, checking one action of one rule."""

    #: The rule's events (canonical names); empty for ``any``.
    events: tuple[str, ...]
    #: The event catalog: name -> EventSpec.
    catalog: Any
    #: The rule file's directory (relative paths are relative to it).
    base_dir: Path
    is_expect: bool

    def error(self, span: Any, code: str, message: str, hint: Optional[str] = None) -> None: ...

    def warning(self, span: Any, code: str, message: str, hint: Optional[str] = None) -> None: ...

    def refuse(self, span: Any, reason: str) -> None:
        """A file the rule relies on may not be trusted (``insecure-permissions``)."""

    def check_template(self, template: Any) -> None: ...

    def check_action(self, action: Any) -> None:
        """Another action of the rule (a run's fallback)."""

    def check_window(self, window: Optional[timedelta], span: Any, what: str) -> None:
        """A duration that must be above zero."""

    def use_target(self, name: str, span: Any) -> None:
        """A target the action notifies (unknown: an error)."""


class RenderContext(Protocol):
    """One planned action of one event (or timer), being rendered."""

    #: The rule's label (its name, or FILE:LINE).
    rule: str
    #: The rule file's directory (a relative ``log ... to`` path is under it).
    rule_dir: Optional[Path]
    #: A notification's type when the action gives none.
    default_type: str
    #: The event's fields as RETRO_* variables (a program's environment).
    retro_env: dict[str, str]
    #: The router's own variables a program may inherit (``run_env``).
    run_env: list[str]
    #: The file Retrospect reads an abort's reason from, if the event passed one.
    intervention_file: Optional[str]

    def text(self, template: Any, part: str = "body", one_line: bool = False) -> str:
        """``template`` rendered (without one: ``part`` of the built-in message)."""

    def exact(self, template: Any) -> tuple[str, Optional[str]]:
        """A template that must render exactly (an argument, a path), or why not."""

    def error(self, message: str) -> None:
        """A problem rendering the action (kept with the event, never raised)."""

    def render(self, action: Any) -> list[Any]:
        """Another action in the same context (a run's fallback)."""
