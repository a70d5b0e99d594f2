"""Rule files parsed before, kept by their content: an edit re-parses the
file that changed, not the other nineteen.

Parsing is most of a check (Lark's LALR parser: about 0.3 ms a rule). A
process keeps what it parsed in memory (the service, across reloads);
with a directory (the state directory's ``parsed/``), processes share it
(a handler re-checking after an edit). A file is found by its path and
exact bytes, and the router's version: a changed byte is a new parse.

The files on disk are pickles, so they are read only from a private
directory and only when they are the router's own, like the ruleset
cache; a file that is not is ignored (the rule file is parsed again).
"""

from __future__ import annotations

import contextlib
import hashlib
import pickle
from pathlib import Path
from typing import Optional

from router import __version__
from router.bulk import collector_paused
from router.checker.reuse import FileChecks
from router.language import nodes as n
from router.language.diagnostics import Diagnostic
from router.language.parser import parse_bytes, parse_file
from router.trust import Untrusted, pickle_problem, write_private

Parsed = tuple[n.RuleFile, list[Diagnostic]]
#: Bumped when the syntax tree changes shape (with the router's version).
FORMAT = 6


class ParseCache:
    """Parses rule files, remembering each by its path and content."""

    def __init__(self, directory: Optional[Path] = None) -> None:
        self.directory = directory
        self._memory: dict[str, Parsed] = {}
        #: What checking each file found (kept in memory only): see reuse.py.
        self.checks: FileChecks = {}
        #: Keys used since ``start``: the others are dropped at ``finish``.
        self._used: set[str] = set()
        self.parsed = self.reused = 0

    def start(self) -> None:
        """A check begins: count afresh what it parses and reuses."""
        self._used = set()
        self.parsed = self.reused = 0

    def parse_file(self, path: Path, display: Optional[str] = None) -> Parsed:
        name = display or str(path)
        try:
            data = path.read_bytes()
        except OSError:
            return parse_file(path, display)  # its diagnostic says why
        key = _key(name, data)
        self._used.add(key)
        found = self._memory.get(key) or self._read(key)
        if found is not None:
            self.reused += 1
        else:
            found = parse_bytes(data, name)
            self.parsed += 1
            self._write(key, found)
        self._memory[key] = found
        rule_file, diagnostics = found
        return rule_file, list(diagnostics)

    def finish(self) -> None:
        """Forget the files no longer there (or no longer in that state)."""
        for key in [k for k in self._memory if k not in self._used]:
            del self._memory[key]
        if self.directory is None or not self.directory.is_dir():
            return
        for entry in self.directory.iterdir():
            if entry.suffix == ".pickle" and entry.stem not in self._used:
                with contextlib.suppress(OSError):
                    entry.unlink()

    def _read(self, key: str) -> Optional[Parsed]:
        if self.directory is None:
            return None
        path = self.directory / f"{key}.pickle"
        if not path.exists() or pickle_problem(path):
            return None
        try:
            with path.open("rb") as handle, collector_paused():
                found = pickle.load(handle)
        except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError, TypeError):
            return None
        if not (isinstance(found, tuple) and len(found) == 2):
            return None
        if not isinstance(found[0], n.RuleFile):
            return None
        return found

    def _write(self, key: str, parsed: Parsed) -> None:
        """Atomically (a temporary file, then a rename); no cache is slower,
        never wrong."""
        if self.directory is None:
            return
        try:
            data = pickle.dumps(parsed, protocol=pickle.HIGHEST_PROTOCOL)
            write_private(self.directory / f"{key}.pickle", data)
        except (OSError, Untrusted, pickle.PicklingError):
            pass


def _key(name: str, data: bytes) -> str:
    digest = hashlib.sha256(f"{__version__}/{FORMAT}\0{name}\0".encode("utf-8", "surrogateescape"))
    digest.update(data)
    return digest.hexdigest()
