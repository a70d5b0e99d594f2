"""Loading the ruleset a process runs with, through a cache in the state directory.

The handler runs once per event, so it must not re-parse and re-check the
rules every time: the checked syntax tree is cached (pickled) beside the
journal, keyed by a hash of every rule file and template file. When the
files change, they are checked again; a ruleset with errors never replaces
the last good one, which stays in force while the errors are reported.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, Optional

from router import __version__, locations
from router.bulk import collector_paused
from router.engine import Ruleset, compile_ruleset
from router.engine.ruleset import statements
from router.engine.screen import LeftOut, Screen, ScreenIndex, screens_of
from router.language import nodes as n
from router.trust import Untrusted, pickle_problem, private_problem, write_private

if TYPE_CHECKING:  # the checker pulls in Lark; a cached ruleset must load without it
    from router.checker import CheckResult, ParseCache
    from router.events import Event

CACHE_NAME = locations.RULESET_CACHE_NAME
#: Bumped when the pickled syntax tree changes shape, so a cache written by
#: the same version of an older checkout is checked again, not trusted.
CACHE_FORMAT = 9
_CACHE_VERSION = f"{__version__}/{CACHE_FORMAT}"
RULE_SUFFIX = ".rules"


class RulesetError(Exception):
    """A ruleset with errors: never compiled, never run."""

    def __init__(self, result: CheckResult) -> None:
        self.result = result
        first = result.errors[0]
        more = len(result.errors) - 1
        suffix = f" (and {more} more)" if more else ""
        super().__init__(f"{first.path}:{first.line}:{first.column}: {first.message}{suffix}")


def build_ruleset(result: CheckResult, date_order: str = "mdy") -> Ruleset:
    """Compile a checked ruleset. Raises RulesetError if it has errors."""
    if result.errors:
        raise RulesetError(result)
    return compile_ruleset(result.rule_files, result.template_files, result.sources, date_order)


@dataclass
class LoadedRuleset:
    """The ruleset in force, and what went wrong getting it (if anything)."""

    ruleset: Ruleset
    #: Problems with the current rule files (the ruleset may be the last good one).
    errors: list[str] = field(default_factory=list)
    #: True when the ruleset in force is older than the files on disk.
    stale: bool = False
    from_cache: bool = False
    #: Things worth saying that are not rule errors (a cache that was refused).
    warnings: list[str] = field(default_factory=list)
    #: The fingerprint of the files this load looked at (taken before reading
    #: them), so a watcher knows which state of the directory it has seen.
    fingerprint: str = ""


@dataclass
class _Cached:
    version: str
    fingerprint: str
    rule_files: list[n.RuleFile]
    template_files: dict[n.Template, str]
    sources: dict[str, list[str]]


def use_caches(state_dir: Path) -> None:
    """Let the grammar analysis and Apprise's scheme index be kept in the
    state directory between processes, if it is private (else nowhere)."""
    from router.language.grammar import GRAMMAR
    from router.urls import SCHEMES

    GRAMMAR.use_cache_dir(state_dir)
    SCHEMES.use_cache_dir(state_dir)


def parse_cache(state_dir: Path) -> ParseCache:
    """Rule files parsed before, kept in the state directory when it is
    private (pickles are read from nowhere else), else in memory only."""
    from router.checker import ParseCache

    private = state_dir.is_dir() and private_problem(state_dir) is None
    return ParseCache(state_dir / locations.PARSED_DIR if private else None)


def empty_ruleset() -> Ruleset:
    return Ruleset()


def fingerprint(rules_dir: Path) -> str:
    """A hash of everything the ruleset is built from: names and contents of
    the rule files, and of any other file in the directory tree that a
    ``body file "..."`` may name (templates usually sit in a subfolder)."""
    digest = hashlib.sha256(_CACHE_VERSION.encode())
    if not rules_dir.is_dir():
        return digest.hexdigest()
    for root, dirs, files in os.walk(rules_dir):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            try:
                data = path.read_bytes()
                mode = path.stat().st_mode
            except OSError:
                continue
            digest.update(str(path.relative_to(rules_dir)).encode("utf-8", "surrogateescape"))
            digest.update(mode.to_bytes(4, "little"))
            digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def load_ruleset(
    rules_dir: Path, state_dir: Path, date_order: str = "mdy", event: Optional[Event] = None
) -> LoadedRuleset:
    """The ruleset to run: from the cache when the files are unchanged,
    otherwise checked afresh (and cached when good). With ``event``, a
    ruleset from the cache holds only what evaluating that event needs (and
    the timers): a handler of one event need not load 10,000 rules."""
    cache_path = state_dir / CACHE_NAME
    current = fingerprint(rules_dir)
    refused = pickle_problem(cache_path)
    warnings = [f"the ruleset cache was not read: {refused}"] if refused else []
    if not refused:
        cached = _read_cache(cache_path, date_order, current, event)
        if cached is not None:
            return LoadedRuleset(cached, from_cache=True, fingerprint=current)

    checked = check_and_compile(rules_dir, state_dir, date_order, current=current)
    if checked.ruleset is not None:
        return LoadedRuleset(checked.ruleset, fingerprint=current, warnings=warnings)
    last_good = None if refused else _read_cache(cache_path, date_order)
    if last_good is None:
        last_good = empty_ruleset()
    return LoadedRuleset(
        last_good, errors=checked.errors, stale=True, fingerprint=current, warnings=warnings
    )


def load_for_service(
    rules_dir: Path,
    state_dir: Path,
    date_order: str,
    parsed: ParseCache,
    pickled: PickledRules,
) -> LoadedRuleset:
    """The ruleset a long-running process starts with: checked through its
    parse cache (not read from the handler's ruleset cache), so that the
    trees a reload reuses are the very ones in force; the cache is written
    (and ``pickled`` remembers the rules). Rules with errors: the last good
    ruleset, from the cache."""
    current = fingerprint(rules_dir)
    checked = check_and_compile(
        rules_dir, state_dir, date_order, current=current, parsed=parsed, write=False
    )
    if checked.ruleset is None or checked.cache is None:
        return load_ruleset(rules_dir, state_dir, date_order)
    write_cache(state_dir / CACHE_NAME, checked.cache, pickled)
    return LoadedRuleset(checked.ruleset, fingerprint=current)


class Checked(NamedTuple):
    """A fresh check of the rules directory: the compiled ruleset when it has
    no errors (None otherwise), the errors as ``file:line:column: message``,
    and the fingerprint the check belongs to."""

    ruleset: Optional[Ruleset]
    errors: list[str]
    fingerprint: str
    #: What to write to the ruleset cache, when the caller writes it itself.
    cache: Optional[_Cached] = None


def check_and_compile(
    rules_dir: Path,
    state_dir: Path,
    date_order: str = "mdy",
    *,
    current: Optional[str] = None,
    parsed: Optional[ParseCache] = None,
    write: bool = True,
) -> Checked:
    """Parse and check the rules directory afresh (never from the cache), and
    compile it when it is good; a good ruleset is also written to the cache,
    so the handler's inline fallback runs the same rules as the caller.

    ``parsed``: the rule files parsed before (default: the state
    directory's). ``write=False``: the caller writes ``Checked.cache``
    itself, when it is not waited for.

    Shared by :func:`load_ruleset` and the service's watcher. ``current`` is
    a fingerprint the caller already took; it must be taken *before* the
    files are read, so that an edit racing with the check gives a cache entry
    whose fingerprint no longer matches (checked again next time) rather than
    a stale ruleset filed under the new fingerprint.
    """
    if current is None:
        current = fingerprint(rules_dir)

    from router.checker import check_paths

    use_caches(state_dir)

    if not rules_dir.is_dir():
        return Checked(None, [f"rules directory {rules_dir} does not exist"], current)
    result = check_paths([rules_dir], parsed or parse_cache(state_dir))
    if result.usage_error:
        return Checked(None, [result.usage_error], current)
    errors = [
        f"{d.path}:{d.line}:{d.column}: {d.message}" for d in result.diagnostics if d.is_error
    ]
    if errors:
        return Checked(None, errors, current)
    fresh = _Cached(
        _CACHE_VERSION,
        current,
        result.rule_files,
        result.template_files,
        result.sources,
    )
    if not write:  # the caller writes it when it can wait (the service, after the swap)
        return Checked(_build(fresh, date_order), [], current, fresh)
    write_cache(state_dir / CACHE_NAME, fresh)
    return Checked(_build(fresh, date_order), [], current)


def _build(cached: _Cached, date_order: str) -> Ruleset:
    return compile_ruleset(cached.rule_files, cached.template_files, cached.sources, date_order)


#: The cache file: the length of its header (8 bytes), the header (a
#: pickle: the version, the fingerprint, and where each section is), then
#: the sections, each a pickle: ``shared`` (targets, defines, template
#: files), ``sources`` (the rule files' text, for explanations), and the
#: rules by position: ``timers`` (expectations, digests), ``any``, and
#: ``event:NAME`` for each event. Every rule is in one of these. An event's
#: section holds its rules each pickled on its own, with their
#: :class:`ScreenIndex`: a handler reads the first three sections and, of
#: its event's, only the rules that can match the event (at 10,000 rules,
#: unpickling and compiling everything costs about 0.4 s).
_HEADER = struct.Struct("<Q")
_READ_ERRORS = (
    OSError,
    pickle.PickleError,
    EOFError,
    AttributeError,
    ImportError,
    TypeError,
    ValueError,
    KeyError,
    IndexError,
    struct.error,
)


def _read_header(handle: BinaryIO) -> Optional[dict[str, Any]]:
    (size,) = _HEADER.unpack(handle.read(_HEADER.size))
    if size > os.fstat(handle.fileno()).st_size:
        return None  # not a cache of this format
    header = pickle.loads(handle.read(size))
    if not isinstance(header, dict) or header.get("version") != _CACHE_VERSION:
        return None
    header["base"] = _HEADER.size + size
    return header


def _read_section(handle: BinaryIO, header: dict[str, Any], name: str) -> Any:
    offset, length = header["sections"][name]
    handle.seek(header["base"] + offset)
    with collector_paused():
        return pickle.loads(handle.read(length))


def _read_cache(
    path: Path, date_order: str, current: Optional[str] = None, event: Optional[Event] = None
) -> Optional[Ruleset]:
    """The cached ruleset (None when there is none, or, given ``current``,
    when it is not of the files as they are). With ``event``: only what
    evaluating that event needs (the ``any`` rules, those of its rules that
    can match it, and the expectations and digests the timers run)."""
    from router.catalog import canonical_name

    screened: list[int] = []
    try:
        with path.open("rb") as handle:
            header = _read_header(handle)
            if header is None or (current is not None and header.get("fingerprint") != current):
                return None
            sections = header["sections"]
            targets, defines, template_files, size = _read_section(handle, header, "shared")
            parts: dict[int, n.Rule] = {}
            if event is None:
                names = [name for name in sections if name not in ("shared", "sources")]
                sources = _read_section(handle, header, "sources")
            else:
                names = ["timers", "any"]
                sources = {}
                section = f"event:{canonical_name(event.name) or ''}"
                if section in sections:
                    screened = _read_screened(handle, header, section, event, parts)
            for name in names:
                if name not in sections:
                    continue
                found = _read_section(handle, header, name)
                if name.startswith("event:"):
                    with collector_paused():
                        found = {p: pickle.loads(blob) for p, blob in found[1].items()}
                parts.update(found)
    except _READ_ERRORS:
        return None
    kept = sorted(parts)
    # A screened rule may be back as a timer's (a digest): then it is kept.
    left_out = [position for position in screened if position not in parts]
    return Ruleset(
        [parts[position] for position in kept],
        targets,
        template_files,
        sources,
        defines,
        date_order,
        size=size,
        left_out=LeftOut(kept, left_out) if left_out else None,
    )


def _read_screened(
    handle: BinaryIO, header: dict[str, Any], section: str, event: Event, parts: dict[int, Any]
) -> list[int]:
    """Add to ``parts`` the rules of ``section`` that can match ``event``;
    the positions of all the section's rules, in order."""
    index, blobs = _read_section(handle, header, section)
    with collector_paused():
        for position in index.select(event.fields):
            parts[position] = pickle.loads(blobs[position])
    return sorted(blobs)


class PickledRules:
    """Each rule pickled on its own, and its screens, as the cache holds
    them. A long-running process keeps one between writes: the rules of
    files that did not change are the same objects (parsed once), and are
    not pickled again (at 10,000 rules that is most of a write)."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[n.Rule, bytes, list[Screen]]] = {}
        self._next: dict[int, tuple[n.Rule, bytes, list[Screen]]] = {}

    def of(self, rule: n.Rule) -> tuple[bytes, list[Screen]]:
        found = self._memo.get(id(rule))
        if found is None or found[0] is not rule:
            blob = pickle.dumps(rule, protocol=pickle.HIGHEST_PROTOCOL)
            found = (rule, blob, screens_of(rule))
        self._next[id(rule)] = found
        return found[1], found[2]

    def done(self) -> None:
        """Keep only the rules of the write just made."""
        self._memo, self._next = self._next, {}


def _sections(cached: _Cached, pickled: PickledRules) -> dict[str, Any]:
    """What the cache file holds, by section (see _HEADER)."""
    from router.catalog import canonical_name

    targets, defines, rules = statements(cached.rule_files)
    sections: dict[str, Any] = {
        "shared": (targets, defines, dict(cached.template_files), len(rules)),
        "sources": dict(cached.sources),
        "timers": {},
        "any": {},
    }
    by_event: dict[str, list[tuple[int, bytes, list[Screen]]]] = {}
    for position, rule in enumerate(rules):
        if rule.is_expect or any(option.kind == "digest" for option in rule.options):
            sections["timers"][position] = rule
        if rule.any_event:
            sections["any"][position] = rule
        if rule.is_expect:
            continue  # expectations are all in "timers"
        names = {canonical_name(name) for name, _ in rule.events} - {None}
        if names:
            blob, screens = pickled.of(rule)
            for name in names:
                by_event.setdefault(name, []).append((position, blob, screens))
    for name, found in by_event.items():
        index = ScreenIndex((position, screens) for position, _, screens in found)
        sections[f"event:{name}"] = (index, {position: blob for position, blob, _ in found})
    pickled.done()
    return sections


def write_cache(path: Path, cached: _Cached, pickled: Optional[PickledRules] = None) -> None:
    """Write atomically (temp file, then rename), so a concurrent handler
    reads either the old cache or the new one, never half of one.
    ``pickled``: the rules pickled for the last write (a long-running
    process's)."""
    try:
        with collector_paused():
            blobs = {
                name: pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
                for name, value in _sections(cached, pickled or PickledRules()).items()
            }
        where, offset = {}, 0
        for name, blob in blobs.items():
            where[name] = (offset, len(blob))
            offset += len(blob)
        header = pickle.dumps(
            {"version": cached.version, "fingerprint": cached.fingerprint, "sections": where},
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        write_private(path, b"".join([_HEADER.pack(len(header)), header, *blobs.values()]))
    except (OSError, Untrusted, pickle.PicklingError):
        pass  # no cache is slower, never wrong
