"""The rule language's grammar (``grammar/rules.lark``) as a Lark parser.

Built once per process (analysing the grammar costs tenths of a second)
and, given a private directory, cached there between processes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from router import trust

if TYPE_CHECKING:  # Lark is imported when the grammar is first used, not before:
    from lark import Lark  # the inline handler tells it where to cache, then never parses

GRAMMAR_NAME = "rules.lark"


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
            from lark import Lark

            path = self.cache_dir / "grammar.lark-cache" if self.cache_dir else None
            cache: object = str(path) if path and not trust.private_problem(path) else False
            self._lark = Lark(
                grammar_path().read_text(encoding="utf-8"),
                parser="lalr",
                lexer="contextual",
                propagate_positions=True,
                maybe_placeholders=False,
                # A silence's condition is parsed on its own (parse_condition).
                start=["start", "condition"],
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
