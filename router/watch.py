"""Hot reload: the service follows the rules directory as it is edited.

docs/design.md ("Hot reload"): watch the rules *directory*, not single files,
because editors save in many ways (write in place, truncate then write,
write a temp file and rename it over, vim's rename-away-and-write-new, swap
files). Every file system event only says "something may have changed": after
a quiet period (the debounce, 100 ms) the directory is fingerprinted,
and only a changed fingerprint is parsed and checked. A ruleset with errors
is never swapped in: the last good one keeps running while the errors go to
the log, to ``last_reload_ok`` (the ``router_ruleset_last_reload_successful``
metric) and to ``on_error`` (the service sends them to the ``admin`` target).
A good one replaces the old one in a single attribute assignment, so a
reader sees either the old ruleset or the new one, never a mix, and the
handler's cache is rewritten so the inline fallback runs the same rules.

Events can be lost (inotify queue overflow, network file systems, a rules
directory deleted and created again), so a periodic rescan does the same
check without an event and re-establishes the watch when needed; ``poll``
uses watchdog's polling observer for file systems without inotify.

Two parts: ``DirectoryWatch`` keeps watchdog's observer on the rules
directory and says when something there may have changed;
``RulesWatcher`` holds the ruleset in force and runs the reload worker
(debounce, rescan, check, swap).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from router.bulk import settle_long_lived
from router.engine import Ruleset
from router.loader import (
    CACHE_NAME,
    RULE_SUFFIX,
    Checked,
    PickledRules,
    check_and_compile,
    fingerprint,
    load_for_service,
    parse_cache,
    write_cache,
)

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver, ObservedWatch

log = logging.getLogger("router.watch")

#: How often the polling observer (``poll=True``) compares directory snapshots.
POLL_INTERVAL = 0.5
#: Events that never change a file: our own reads (fingerprint, check) cause
#: them, so reacting to them would reload forever.
IGNORED_EVENTS = frozenset({"opened", "closed_no_write"})
#: While the rules directory is missing, look for it again this often (at
#: most), rather than waiting for the full rescan period.
MISSING_DIR_RESCAN = 1.0


def _ignore(*_args: object) -> None:
    """Default callback: do nothing."""


def content_key(ruleset: Ruleset) -> str:
    """A hash of what a ruleset is built from: each rule file's path and
    text, and each template file's text (with the template node naming it).

    The directory fingerprint covers *every* file in the tree, so an editor's
    swap file or backup changes it; comparing this key after a good check
    tells "the rules changed" from "some file changed", and only the first
    swaps (and reaches ``on_swap``)."""
    digest = hashlib.sha256()
    for path in sorted(ruleset.sources):
        digest.update(path.encode("utf-8", "surrogateescape") + b"\0")
        digest.update("\n".join(ruleset.sources[path]).encode("utf-8", "surrogateescape") + b"\0")
    for entry in sorted(f"{key!r}\0{text}" for key, text in ruleset.template_files.items()):
        digest.update(entry.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()


def prepare_for_reloads() -> None:
    """Make the first edit after start-up as quick to take as the next: load
    the parser an edited file needs (the ruleset came without it), and set
    the ruleset aside from the collector. In the watcher's thread, once
    running."""
    try:
        from router.language.grammar import lark_parser

        lark_parser()
        settle_long_lived()
    except Exception:  # a slower first reload, nothing worse
        log.exception("preparing for rule reloads failed")


def emptied_rule_files(rules_dir: Path, ruleset: Ruleset) -> list[Path]:
    """Rule files that are empty now but had text in ``ruleset``."""
    try:
        entries = list(os.scandir(rules_dir))
    except OSError:
        return []
    emptied = []
    for entry in entries:
        if not entry.name.endswith(RULE_SUFFIX):
            continue
        try:
            empty = entry.is_file() and entry.stat().st_size == 0
        except OSError:
            continue
        if empty and any(ruleset.sources.get(entry.path, ())):
            emptied.append(Path(entry.path))
    return sorted(emptied)


class _EventHandler(FileSystemEventHandler):
    """Forwards every watchdog event to its DirectoryWatch."""

    def __init__(self, watch: DirectoryWatch) -> None:
        super().__init__()
        self._directory_watch = watch

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._directory_watch.event(event)


class DirectoryWatch:
    """watchdog's observer on the rules directory (recursive: templates may
    sit in subfolders), kept watching it.

    ``on_change()`` is called, in the observer's thread, for every event
    that may have changed a file; events only the router's own reads cause,
    and writes into the state directory (should it sit in the rules
    directory), are left out. inotify watches an inode, not a path:
    ``ensure()`` watches again when the directory was replaced or the watch
    died, and ``watching`` says whether there is a usable watch now.
    """

    def __init__(
        self, directory: Path, state_dir: Path, on_change: Callable[[], None], poll: bool = False
    ) -> None:
        self.directory = directory
        self.state_dir = state_dir
        self.poll = poll
        self._on_change = on_change
        self.observer: Optional[BaseObserver] = None
        self._watch: Optional[ObservedWatch] = None
        self._watched_id: Optional[tuple[int, int]] = None
        self._watch_lost = False
        self._lock = threading.Lock()

    @property
    def watching(self) -> bool:
        """False while there is no usable watch (the directory is missing, or
        was deleted under the watch). True before ``start``."""
        return self.observer is None or (self._watch is not None and not self._watch_lost)

    def start(self) -> None:
        """Start the observer, watching the directory if it exists (a missing
        one is looked for again by ``ensure``)."""
        if self.poll:
            from watchdog.observers.polling import PollingObserver

            observer: BaseObserver = PollingObserver(timeout=POLL_INTERVAL)
        else:
            from watchdog.observers import Observer

            observer = Observer()
        self.observer = observer
        with self._lock:
            self._schedule()
        observer.start()

    def stop(self) -> None:
        """Stop the observer and wait for it."""
        observer = self.observer
        if observer is not None:
            observer.stop()
            if observer.is_alive():
                observer.join()
        self.observer = None
        self._watch = None

    def ensure(self) -> None:
        """Watch again when the watch has died or the directory was replaced
        (deleted and created again, or renamed away and another put there)."""
        with self._lock:
            observer = self.observer
            if observer is None or not observer.is_alive():
                return
            try:
                status = self.directory.stat()
            except OSError:
                return
            alive = False
            if self._watch is not None and not self._watch_lost:
                try:
                    emitters = list(observer.emitters)
                except RuntimeError:  # changed while copied: look next time
                    return
                alive = any(e.watch == self._watch and e.is_alive() for e in emitters)
            if alive and self._watched_id == (status.st_dev, status.st_ino):
                return
            if self._watch is not None:
                # A watch whose emitter died may be half gone already.
                with contextlib.suppress(KeyError, ValueError, OSError, RuntimeError):
                    observer.unschedule(self._watch)
                self._watch = None
            log.info("watching %s again", self.directory)
            self._schedule()

    def _schedule(self) -> None:
        """Watch the directory if it exists (the caller holds the lock)."""
        observer = self.observer
        if observer is None:
            return
        try:
            status = self.directory.stat()
            self._watch = observer.schedule(
                _EventHandler(self), str(self.directory), recursive=True
            )
        except OSError as exc:
            self._watch = None
            self._watched_id = None
            log.warning("cannot watch %s (%s); will look again", self.directory, exc)
            return
        self._watched_id = (status.st_dev, status.st_ino)
        self._watch_lost = False

    def event(self, event: FileSystemEvent) -> None:
        """One watchdog event: ``on_change()`` unless it cannot have changed
        a rule or template file."""
        if event.event_type in IGNORED_EVENTS:
            return
        if event.event_type in ("deleted", "moved") and os.fsdecode(event.src_path) == str(
            self.directory
        ):
            self._watch_lost = True  # the emitter stops; its inode may be reused
        paths = [os.fsdecode(event.src_path), os.fsdecode(getattr(event, "dest_path", "") or "")]
        if all(not path or self._in_state_dir(path) for path in paths):
            return  # our own cache writes, should the state dir sit in the rules dir
        self._on_change()

    def _in_state_dir(self, path: str) -> bool:
        state = os.path.join(str(self.state_dir), "")
        return path == str(self.state_dir) or path.startswith(state)


class RulesWatcher:
    """The ruleset in force in the service, reloaded when the rule files change.

    The ruleset is loaded at construction (through the handler's cache, like
    the handler); ``start()`` begins watching. ``on_swap(ruleset)`` and
    ``on_error(errors)`` run in the watcher's thread (or in the caller of
    :meth:`reload_now`), with reloads serialized; an exception they raise is
    logged and does not stop the watcher.

    The errors of the load at construction are in ``last_errors`` and
    ``last_reload_ok`` (the service reports them at startup); ``on_error`` is
    called for reloads, once per distinct list of errors, so an editor that
    keeps touching its swap file next to a broken rule file does not repeat
    the same message to the admin target.
    """

    def __init__(
        self,
        rules_dir: Path,
        state_dir: Path,
        date_order: str = "mdy",
        *,
        on_swap: Callable[[Ruleset], None] = _ignore,
        on_error: Callable[[list[str]], None] = _ignore,
        poll: bool = False,
        debounce: float = 0.1,
        rescan: float = 30.0,
        empty_grace: float = 2.0,
    ) -> None:
        """``empty_grace``: a rule file that had rules and is now empty is
        taken to be a save in progress (truncated, not yet written) for up to
        this many seconds before its emptiness is believed; see
        :meth:`_reload_when_settled`."""
        self.rules_dir = Path(rules_dir)
        self.state_dir = Path(state_dir)
        #: The rule files as last parsed: a reload re-parses the edited ones.
        self._parsed = parse_cache(self.state_dir)
        #: The rules as last written to the cache: unchanged ones are not pickled again.
        self._pickled = PickledRules()
        self.date_order = date_order
        self.poll = poll
        self.debounce = debounce
        self.rescan = rescan
        self.empty_grace = empty_grace
        #: A steady stream of events must not postpone a reload forever.
        self.max_delay = max(2.0, 8 * debounce)
        self._on_swap = on_swap
        self._on_error = on_error

        loaded = load_for_service(
            self.rules_dir, self.state_dir, date_order, self._parsed, self._pickled
        )
        #: The ruleset in force. Replaced in one assignment, compiled whole
        #: before it is (a service's events never wait for a compile).
        self.ruleset: Ruleset = loaded.ruleset.compile_all()
        self.last_reload_ok: bool = not loaded.errors
        self.last_reload_time: float = time.time()
        self.last_errors: list[str] = list(loaded.errors)
        self.reloads: int = 0
        self._fingerprint = loaded.fingerprint
        self._content = content_key(loaded.ruleset)
        if loaded.errors:
            log.error(
                "rules in %s have errors; running %s:\n%s",
                self.rules_dir,
                "the last good ruleset" if loaded.ruleset.sources else "no rules",
                "\n".join(loaded.errors),
            )

        self._reload_lock = threading.RLock()
        self._cond = threading.Condition()
        self._quiet_at: Optional[float] = None  # monotonic: last event + debounce
        self._latest_at: Optional[float] = None  # monotonic: first event + max_delay
        self._stopping = False
        self._empty_since: Optional[float] = None
        self._directory_watch: Optional[DirectoryWatch] = None
        self._worker: Optional[threading.Thread] = None

    @property
    def fingerprint(self) -> str:
        """The state of the rule files last looked at (for "once per broken version")."""
        return self._fingerprint

    # ------------------------------------------------------------------
    # Starting and stopping
    # ------------------------------------------------------------------

    def start(self) -> None:
        """Start watching the directory, and the worker thread that runs the
        debounce and the rescan.

        Once the watch is in place, the fingerprint is compared once more
        (in this thread), so an edit made between construction and start is
        swapped in now rather than at the first rescan."""
        if self._worker is not None:
            return
        self._directory_watch = DirectoryWatch(
            self.rules_dir, self.state_dir, self._arm, poll=self.poll
        )
        self._stopping = False
        self._directory_watch.start()
        self._worker = threading.Thread(target=self._run, name="router-rules-watch", daemon=True)
        self._worker.start()
        self._reload()

    def stop(self) -> None:
        """Stop the observer and the worker, and wait for both (a reload in
        progress finishes first)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._directory_watch is not None:
            self._directory_watch.stop()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join()
        self._worker = None
        self._directory_watch = None

    # ------------------------------------------------------------------
    # Debounce, rescan
    # ------------------------------------------------------------------

    def _arm(self) -> None:
        """(Re)start the debounce: the reload runs once changes have been
        quiet for ``debounce`` seconds (or ``max_delay`` after the first)."""
        now = time.monotonic()
        with self._cond:
            self._quiet_at = now + self.debounce
            if self._latest_at is None:
                self._latest_at = now + self.max_delay
            self._cond.notify_all()

    def _run(self) -> None:
        """The worker: waits for the debounce or the rescan, whichever comes
        first, and reloads in this thread (never in the observer's, so a slow
        check does not hold up the event queue)."""
        prepare_for_reloads()
        next_rescan = time.monotonic() + self.rescan
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    due = None
                    if self._quiet_at is not None and self._latest_at is not None:
                        due = min(self._quiet_at, self._latest_at)
                    wake = next_rescan if due is None else min(due, next_rescan)
                    if now >= wake:
                        break
                    self._cond.wait(wake - now)
                debounced = due is not None and now >= due
                if debounced:
                    self._quiet_at = self._latest_at = None
            rescanning = now >= next_rescan
            try:
                if debounced or rescanning:
                    # Watch first, then look: what changed before the watch
                    # existed is seen by this reload, what changes after it
                    # arrives as events.
                    if self._directory_watch is not None:
                        self._directory_watch.ensure()
                    self._reload_when_settled()
            except Exception:  # the watcher must outlive any surprise
                log.exception("reloading the rules in %s failed", self.rules_dir)
            period = self.rescan if self._watching() else min(self.rescan, MISSING_DIR_RESCAN)
            if rescanning:
                next_rescan = time.monotonic() + period
            else:  # the watch may have been lost just now: look again sooner
                next_rescan = min(next_rescan, time.monotonic() + period)

    def _watching(self) -> bool:
        """False while there is no usable watch (the directory is missing, or
        was deleted under the watch): the rescan then comes round sooner."""
        return self._directory_watch is None or self._directory_watch.watching

    def _reload_when_settled(self) -> None:
        """Reload, unless a rule file that had rules is now empty.

        An empty file is a valid ruleset with no rules, but a rule file that
        *became* empty is far more often a save caught between its truncate
        and its write (a slow writer, a network copy) than an admin who wants
        those rules gone (they would delete the file or comment it out).
        Running with the file's rules missing would drop events on the floor
        meanwhile, so such a state is given ``empty_grace`` seconds to
        become something else; if it is still empty then, it is believed.
        The debounce already merges an editor's truncate and write."""
        emptied = emptied_rule_files(self.rules_dir, self.ruleset)
        if emptied and self.empty_grace > 0:
            now = time.monotonic()
            if self._empty_since is None:
                self._empty_since = now
                log.info(
                    "%s became empty; waiting up to %.1f s for the rest of the save",
                    ", ".join(str(p) for p in emptied),
                    self.empty_grace,
                )
            if now - self._empty_since < self.empty_grace:
                self._arm()  # look again after another debounce
                return
        self._empty_since = None
        self.reload_now()

    # ------------------------------------------------------------------
    # Reloading
    # ------------------------------------------------------------------

    def reload_now(self) -> bool:
        """Check the rules directory now; swap in its ruleset if it is good
        and different. Returns True if a new ruleset was swapped in.

        Unchanged fingerprint: nothing is read beyond the hash. Errors: the
        ruleset in force stays, ``last_reload_ok`` becomes False, the errors
        are logged and (when they differ from the last ones) passed to
        ``on_error``. Good: the handler's cache is rewritten (by
        :func:`router.loader.check_and_compile`) and, if the rules differ
        from those in force (or the last reload had failed), they are swapped
        in and passed to ``on_swap``."""
        return self._reload()

    def _reload(self) -> bool:
        with self._reload_lock:
            current = fingerprint(self.rules_dir)
            if current == self._fingerprint:
                return False
            try:
                checked = check_and_compile(
                    self.rules_dir,
                    self.state_dir,
                    self.date_order,
                    current=current,
                    parsed=self._parsed,
                    write=False,
                )
            except Exception as exc:  # a checker crash must not end hot reload
                log.exception("checking the rules in %s crashed", self.rules_dir)
                checked = Checked(None, [f"{self.rules_dir}: the check crashed: {exc!r}"], current)
            self._fingerprint = current
            if checked.ruleset is None:
                self._failed(checked.errors)
                return False
            content = content_key(checked.ruleset)
            if content == self._content and self.last_reload_ok:
                log.debug("files in %s changed, the rules did not", self.rules_dir)
                self._write_cache(checked)
                return False
            # The rules of files that did not change are the same objects
            # (parsed once): their compiled form carries over.
            fresh = checked.ruleset.compile_all(previous=self.ruleset)
            self.ruleset = fresh  # the swap: one assignment
            self._content = content
            self.last_reload_ok = True
            self.last_errors = []
            self.last_reload_time = time.time()
            self.reloads += 1
            log.info(
                "rules reloaded from %s: %d rules in %d files",
                self.rules_dir,
                checked.ruleset.size,
                len(checked.ruleset.sources),
            )
            self._write_cache(checked)  # after the swap: the service does not wait for it
            self._call(self._on_swap, checked.ruleset)
            settle_long_lived()
            return True

    def _write_cache(self, checked: Checked) -> None:
        """The ruleset cache, for inline handlers: after the swap, off the
        path of the reload."""
        if checked.cache is not None:
            write_cache(self.state_dir / CACHE_NAME, checked.cache, self._pickled)

    def _failed(self, errors: list[str]) -> None:
        """Keep the last good ruleset; say why (once per distinct errors)."""
        repeated = not self.last_reload_ok and errors == self.last_errors
        self.last_reload_ok = False
        self.last_reload_time = time.time()
        self.last_errors = list(errors)
        if repeated:
            log.info("rules in %s still have the same errors", self.rules_dir)
            return
        log.error(
            "rules in %s not reloaded, the last good ruleset (%d rules) stays in force:\n%s",
            self.rules_dir,
            self.ruleset.size,
            "\n".join(errors),
        )
        self._call(self._on_error, list(errors))

    def _call(self, callback: Callable[..., None], *args: object) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("a hot-reload callback failed")
