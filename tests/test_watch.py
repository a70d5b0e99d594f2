"""Hot reload (router.watch): real saves on a real directory, seen by the real
watchdog observer (inotify, and the polling observer for a subset).

Every wait is on a condition with a deadline (a swap, an error, a reload
attempt, a log line), never a sleep hoping the watcher got there. To show
that something did *not* happen (a rewrite with the same bytes), the test
waits until the watcher has finished looking at the change, and then checks
that no swap came of it.
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from helpers import wait_until
from watchdog.events import (
    FileClosedNoWriteEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)

from router.engine import Ruleset
from router.loader import load_ruleset
from router.watch import DirectoryWatch, RulesWatcher

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions and renames")

FIRST = 'rule "first"\non EndScript\n  log "first"\n'
SECOND = 'rule "second"\non EndScript where errors > 0\n  log "second"\n'
THIRD = 'rule "third"\non StartScript\n  log "third"\n'
BROKEN = 'rule "broken"\non EndScrip\n  log "broken"\n'
TIMEOUT = 5.0

OBSERVERS = [pytest.param(False, id="inotify"), pytest.param(True, id="polling")]


def write(path: Path, text: str) -> Path:
    """Write in place (open, truncate, write, close), then make the file
    private: the checker refuses rule files others can write."""
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def labels(ruleset: Ruleset) -> list[str]:
    return [rule.label for rule in ruleset.rules]


class Recorder:
    """What the watcher reported, with waits on it."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.swaps: list[list[str]] = []
        self.swap_times: list[float] = []
        self.errors: list[list[str]] = []
        self.attempts: list[bool] = []

    def on_swap(self, ruleset: Ruleset) -> None:
        with self.cond:
            self.swaps.append(labels(ruleset))
            self.swap_times.append(time.monotonic())
            self.cond.notify_all()

    def on_error(self, errors: list[str]) -> None:
        with self.cond:
            self.errors.append(errors)
            self.cond.notify_all()

    def spy(self, watcher: RulesWatcher) -> None:
        """Record every reload attempt's result (the worker calls
        ``watcher.reload_now``, so an instance attribute wraps it)."""
        real = watcher.reload_now

        def reload_now() -> bool:
            swapped = real()
            with self.cond:
                self.attempts.append(swapped)
                self.cond.notify_all()
            return swapped

        watcher.reload_now = reload_now  # type: ignore[method-assign]

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError(
                    f"timed out waiting for {what}: swaps={self.swaps} errors={self.errors} "
                    f"attempts={self.attempts}"
                )


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    directory.chmod(0o700)
    write(directory / "a.rules", FIRST)
    return directory


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_watcher(
    rules_dir: Path, state_dir: Path, recorder: Recorder
) -> Iterator[Callable[..., RulesWatcher]]:
    """Build and start a watcher reporting to ``recorder``; stopped at the end."""
    made: list[RulesWatcher] = []

    def make(start: bool = True, spy: bool = False, **options: Any) -> RulesWatcher:
        watcher = RulesWatcher(
            rules_dir,
            state_dir,
            on_swap=recorder.on_swap,
            on_error=recorder.on_error,
            **options,
        )
        made.append(watcher)
        if spy:
            recorder.spy(watcher)
        if start:
            watcher.start()
        return watcher

    yield make
    for watcher in made:
        watcher.stop()


# ---------------------------------------------------------------------------
# The ways editors and people save
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("poll", OBSERVERS)
def test_write_in_place(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path, poll: bool
) -> None:
    watcher = make_watcher(poll=poll)
    assert labels(watcher.ruleset) == ["first"] and watcher.last_reload_ok
    write(rules_dir / "a.rules", FIRST + SECOND)
    recorder.wait(lambda: recorder.swaps, "the swap")
    assert recorder.swaps == [["first", "second"]]
    assert labels(watcher.ruleset) == ["first", "second"]
    assert (watcher.reloads, watcher.last_reload_ok, watcher.last_errors) == (1, True, [])


def test_truncate_then_write_in_two_steps_swaps_once(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path
) -> None:
    """Two separate opens: the first leaves an empty file (a valid ruleset
    with no rules), the second writes the new text. Within the debounce they
    are one change: the empty state is never swapped in."""
    watcher = make_watcher(spy=True)
    path = rules_dir / "a.rules"
    with path.open("r+", encoding="utf-8") as handle:
        handle.truncate(0)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(FIRST + SECOND)
    recorder.wait(lambda: recorder.swaps, "the swap")
    assert recorder.swaps == [["first", "second"]]
    assert recorder.attempts == [True]  # one reload for both steps
    assert labels(watcher.ruleset) == ["first", "second"]


def test_a_slow_truncate_then_write_keeps_the_rules_in_between(
    make_watcher: Callable[..., RulesWatcher],
    recorder: Recorder,
    rules_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The two steps further apart than the debounce: a rule file that had
    rules and is now empty is taken for a save in progress (for up to
    ``empty_grace``), so its rules keep running until the write lands."""
    caplog.set_level(logging.INFO, logger="router.watch")
    watcher = make_watcher(empty_grace=10.0)
    path = rules_dir / "a.rules"
    path.write_bytes(b"")
    wait_until(
        lambda: any("became empty" in r.getMessage() for r in caplog.records),
        "the watcher to see the empty file",
    )
    assert labels(watcher.ruleset) == ["first"]  # still in force
    assert recorder.swaps == []
    write(path, FIRST + SECOND)
    recorder.wait(lambda: recorder.swaps, "the swap")
    assert recorder.swaps == [["first", "second"]]


def test_an_emptied_file_is_believed_after_the_grace(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path
) -> None:
    write(rules_dir / "b.rules", SECOND)
    watcher = make_watcher(empty_grace=0.5)
    assert labels(watcher.ruleset) == ["first", "second"]
    started = time.monotonic()
    (rules_dir / "b.rules").write_bytes(b"")
    recorder.wait(lambda: recorder.swaps, "the swap")
    assert time.monotonic() - started >= 0.5
    assert recorder.swaps == [["first"]]
    assert watcher.last_reload_ok


@pytest.mark.parametrize("poll", OBSERVERS)
def test_temp_file_then_rename_over(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path, poll: bool
) -> None:
    watcher = make_watcher(poll=poll)
    handle, temp = tempfile.mkstemp(dir=str(rules_dir), prefix=".a.rules.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(SECOND)
    assert os.stat(temp).st_mode & 0o777 == 0o600  # mkstemp's files are private already
    os.replace(temp, rules_dir / "a.rules")
    recorder.wait(lambda: recorder.swaps, "the swap")
    assert recorder.swaps == [["second"]]
    assert labels(watcher.ruleset) == ["second"]
    assert sorted(p.name for p in rules_dir.iterdir()) == ["a.rules"]


def test_vims_way(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path
) -> None:
    """vim (backupcopy=no/auto): a writability probe file "4913", a swap
    file, rename the original to a.rules~, write a new a.rules, delete the
    backup. One swap, to the new text."""
    watcher = make_watcher(spy=True)
    swap = write(rules_dir / ".a.rules.swp", "b0VIM 9.0 swap")
    probe = write(rules_dir / "4913", "")
    probe.unlink()
    os.rename(rules_dir / "a.rules", rules_dir / "a.rules~")
    write(rules_dir / "a.rules", FIRST + THIRD)
    (rules_dir / "a.rules~").unlink()
    swap.unlink()
    recorder.wait(lambda: recorder.swaps, "the swap")
    assert recorder.swaps == [["first", "third"]]
    assert recorder.attempts == [True]
    assert labels(watcher.ruleset) == ["first", "third"]


def test_a_swap_file_alone_does_not_swap(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path, state_dir: Path
) -> None:
    """An editor's swap file changes the directory's fingerprint, so the
    rules are checked, but they did not change: no swap, no on_swap."""
    watcher = make_watcher(spy=True)
    write(rules_dir / ".a.rules.swp", "b0VIM 9.0 swap, version 1")
    recorder.wait(lambda: recorder.attempts, "the reload attempt")
    assert recorder.attempts == [False]
    assert recorder.swaps == [] and watcher.reloads == 0 and watcher.last_reload_ok
    # The handler's cache was refreshed for the new fingerprint: the inline
    # fallback does not re-check on every event while the swap file exists.
    assert load_ruleset(rules_dir, state_dir).from_cache


@pytest.mark.parametrize("poll", OBSERVERS)
def test_delete_a_file(
    make_watcher: Callable[..., RulesWatcher],
    recorder: Recorder,
    rules_dir: Path,
    poll: bool,
) -> None:
    write(rules_dir / "b.rules", SECOND)
    watcher = make_watcher(poll=poll)
    assert labels(watcher.ruleset) == ["first", "second"]
    (rules_dir / "b.rules").unlink()
    recorder.wait(lambda: recorder.swaps, "the swap")
    assert recorder.swaps == [["first"]]
    assert labels(watcher.ruleset) == ["first"]


def test_add_a_file(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path
) -> None:
    watcher = make_watcher()
    write(rules_dir / "b.rules", SECOND)
    recorder.wait(lambda: recorder.swaps, "the swap")
    assert recorder.swaps == [["first", "second"]]
    assert labels(watcher.ruleset) == ["first", "second"]


def test_a_template_in_a_subfolder(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path
) -> None:
    templates = rules_dir / "templates"
    templates.mkdir()
    templates.chmod(0o700)
    write(templates / "body.j2", "old body {{ script }}")
    write(
        rules_dir / "a.rules",
        'target t = "json://localhost/x"\nrule "first"\non EndScript\n'
        '  notify t body file "templates/body.j2"\n',
    )
    watcher = make_watcher()
    assert "old body" in "".join(watcher.ruleset.template_files.values())
    write(templates / "body.j2", "new body {{ script }}")
    recorder.wait(lambda: recorder.swaps, "the swap")
    assert "new body" in "".join(watcher.ruleset.template_files.values())


@pytest.mark.parametrize("poll", OBSERVERS)
def test_an_invalid_edit_keeps_the_last_good_then_its_fix_swaps(
    make_watcher: Callable[..., RulesWatcher],
    recorder: Recorder,
    rules_dir: Path,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
    poll: bool,
) -> None:
    caplog.set_level(logging.INFO, logger="router.watch")
    watcher = make_watcher(poll=poll)
    write(rules_dir / "a.rules", FIRST + BROKEN)
    recorder.wait(lambda: recorder.errors, "the error")
    assert recorder.swaps == []
    assert labels(watcher.ruleset) == ["first"]  # the last good one keeps running
    assert (watcher.last_reload_ok, watcher.reloads) == (False, 0)
    [errors] = recorder.errors
    assert len(errors) == 1 and errors == watcher.last_errors
    assert errors[0].startswith(f"{rules_dir / 'a.rules'}:5:")  # file:line:column
    assert "EndScrip" in errors[0]
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged and errors[0] in logged[-1].getMessage()
    # The handler's cache still holds the last good ruleset.
    inline = load_ruleset(rules_dir, state_dir)
    assert (inline.stale, [r.label for r in inline.ruleset.rules]) == (True, ["first"])

    write(rules_dir / "a.rules", FIRST + SECOND)  # the fix
    recorder.wait(lambda: recorder.swaps, "the swap")
    assert recorder.swaps == [["first", "second"]]
    assert (watcher.last_reload_ok, watcher.last_errors, watcher.reloads) == (True, [], 1)
    assert len(recorder.errors) == 1


def test_the_same_errors_are_reported_once(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path
) -> None:
    """A broken file next to an editor's busy swap file: rechecked on every
    save of the swap file, but the admin hears about the errors once."""
    watcher = make_watcher(spy=True)
    write(rules_dir / "a.rules", FIRST + BROKEN)
    recorder.wait(lambda: recorder.errors, "the error")
    write(rules_dir / ".a.rules.swp", "b0VIM 9.0 swap, version 2")
    recorder.wait(lambda: len(recorder.attempts) == 2, "the second attempt")
    assert len(recorder.errors) == 1 and not watcher.last_reload_ok
    write(rules_dir / "a.rules", FIRST + "\n" + BROKEN)  # a different error (line 6)
    recorder.wait(lambda: len(recorder.errors) == 2, "the new error")
    assert ":6:" in recorder.errors[1][0]


def test_unchanged_content_does_not_swap(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path
) -> None:
    watcher = make_watcher(spy=True)
    path = rules_dir / "a.rules"
    path.write_bytes(path.read_bytes())  # the same bytes, saved again
    os.utime(path)
    recorder.wait(lambda: recorder.attempts, "the reload attempt")
    assert recorder.attempts == [False] and recorder.swaps == [] and watcher.reloads == 0


def test_a_burst_of_writes_gives_one_reload(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path
) -> None:
    watcher = make_watcher(spy=True)
    path = rules_dir / "a.rules"
    for i in range(10):
        write(path, FIRST + f'rule "burst {i}"\non EndScript\n  log "{i}"\n')
    recorder.wait(lambda: recorder.swaps, "the swap")
    assert recorder.swaps == [["first", "burst 9"]]
    # A later change: if the burst had left a reload pending, it would show
    # up here as a third attempt.
    write(rules_dir / "b.rules", THIRD)
    recorder.wait(lambda: len(recorder.swaps) == 2, "the second swap")
    assert recorder.attempts == [True, True]
    assert labels(watcher.ruleset) == ["first", "burst 9", "third"]


# ---------------------------------------------------------------------------
# Lost events, a lost directory
# ---------------------------------------------------------------------------


def test_the_rescan_picks_up_a_change_the_observer_missed(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path
) -> None:
    """The observer's watch is removed behind the watcher's back (as if its
    events were lost): the rescan finds the change, and watches again."""
    watcher = make_watcher(rescan=0.5)
    watcher._directory_watch.observer.unschedule_all()  # type: ignore[union-attr]
    write(rules_dir / "a.rules", FIRST + SECOND)
    recorder.wait(lambda: recorder.swaps, "the rescan's swap")
    assert labels(watcher.ruleset) == ["first", "second"]
    # Watching again: the next change arrives by event (well before the
    # rescan period would have to come round several times).
    write(rules_dir / "b.rules", THIRD)
    recorder.wait(lambda: len(recorder.swaps) == 2, "the second swap")
    assert labels(watcher.ruleset) == ["first", "second", "third"]


def test_the_rescan_without_an_observer(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path
) -> None:
    """The periodic rescan alone (no event ever arrives) is enough."""
    watcher = make_watcher(start=False, rescan=0.3)
    watcher.start()
    watcher._directory_watch.observer.unschedule_all()  # type: ignore[union-attr]
    watcher._directory_watch.observer.stop()  # type: ignore[union-attr]
    write(rules_dir / "a.rules", SECOND)
    recorder.wait(lambda: recorder.swaps, "the rescan's swap")
    assert recorder.swaps == [["second"]]


def test_the_rules_directory_deleted_and_created_again(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path
) -> None:
    watcher = make_watcher()  # rescan 30 s: a missing directory is looked for sooner
    shutil.rmtree(rules_dir)
    recorder.wait(lambda: recorder.errors, "the error")
    assert recorder.errors == [[f"rules directory {rules_dir} does not exist"]]
    assert labels(watcher.ruleset) == ["first"] and not watcher.last_reload_ok

    rules_dir.mkdir()
    rules_dir.chmod(0o700)
    write(rules_dir / "a.rules", SECOND)
    recorder.wait(lambda: recorder.swaps, "the swap")
    assert recorder.swaps == [["second"]] and watcher.last_reload_ok
    # Watched again: a later edit arrives by event.
    write(rules_dir / "a.rules", SECOND + THIRD)
    recorder.wait(lambda: len(recorder.swaps) == 2, "the second swap")
    assert labels(watcher.ruleset) == ["second", "third"]


# ---------------------------------------------------------------------------
# reload_now, the cache, start and stop
# ---------------------------------------------------------------------------


def test_reload_now_is_synchronous_and_writes_the_handlers_cache(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path, state_dir: Path
) -> None:
    watcher = make_watcher(start=False)
    assert watcher.reload_now() is False  # nothing changed since construction
    write(rules_dir / "a.rules", FIRST + SECOND)
    before = watcher.last_reload_time
    assert watcher.reload_now() is True
    assert recorder.swaps == [["first", "second"]] and watcher.last_reload_time >= before
    assert watcher.reload_now() is False
    inline = load_ruleset(rules_dir, state_dir)  # what the handler's fallback runs
    assert inline.from_cache and [r.label for r in inline.ruleset.rules] == ["first", "second"]

    write(rules_dir / "a.rules", BROKEN)
    assert watcher.reload_now() is False
    assert len(recorder.errors) == 1 and not watcher.last_reload_ok
    assert labels(watcher.ruleset) == ["first", "second"]


def test_a_broken_ruleset_at_construction(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path
) -> None:
    """No cache and broken files: no rules, the errors are in last_errors
    (the service reports them at startup), and the fix swaps in."""
    write(rules_dir / "a.rules", BROKEN)
    watcher = make_watcher(start=False)
    assert watcher.ruleset.rules == [] and not watcher.last_reload_ok
    assert len(watcher.last_errors) == 1 and "EndScrip" in watcher.last_errors[0]
    write(rules_dir / "a.rules", FIRST)
    assert watcher.reload_now() is True
    assert recorder.swaps == [["first"]] and watcher.last_reload_ok


def test_reverting_a_broken_edit_to_the_last_good_text_recovers(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path
) -> None:
    """The same rules as those in force, but the last reload had failed:
    this is a recovery, so it swaps (and the metric goes back to 1)."""
    watcher = make_watcher(start=False)
    write(rules_dir / "a.rules", BROKEN)
    assert watcher.reload_now() is False and not watcher.last_reload_ok
    write(rules_dir / "a.rules", FIRST)
    assert watcher.reload_now() is True
    assert watcher.last_reload_ok and recorder.swaps == [["first"]]


def test_a_failing_callback_does_not_stop_the_watcher(
    rules_dir: Path, state_dir: Path, recorder: Recorder
) -> None:
    calls: list[list[str]] = []

    def on_swap(ruleset: Ruleset) -> None:
        calls.append(labels(ruleset))
        if len(calls) == 1:
            raise RuntimeError("the service's callback broke")
        recorder.on_swap(ruleset)

    watcher = RulesWatcher(rules_dir, state_dir, on_swap=on_swap)
    watcher.start()
    try:
        write(rules_dir / "a.rules", SECOND)
        wait_until(lambda: calls, "the first swap")
        write(rules_dir / "a.rules", THIRD)
        recorder.wait(lambda: recorder.swaps, "the second swap")
        assert calls == [["second"], ["third"]]
    finally:
        watcher.stop()


def test_start_sees_an_edit_made_after_construction(
    make_watcher: Callable[..., RulesWatcher], recorder: Recorder, rules_dir: Path
) -> None:
    """The service may build the watcher a while before starting it."""
    watcher = make_watcher(start=False)
    write(rules_dir / "a.rules", SECOND)
    watcher.start()
    assert recorder.swaps == [["second"]]  # at once, not at the first rescan
    assert labels(watcher.ruleset) == ["second"]


def test_stop_ends_the_threads(make_watcher: Callable[..., RulesWatcher]) -> None:
    watcher = make_watcher()
    observer: Optional[Any] = watcher._directory_watch.observer  # type: ignore[union-attr]
    worker = watcher._worker
    assert observer is not None and worker is not None
    watcher.stop()
    assert not observer.is_alive() and not worker.is_alive()
    watcher.stop()  # twice is fine


# ---------------------------------------------------------------------------
# The directory watch alone
# ---------------------------------------------------------------------------


class Changes:
    """A DirectoryWatch's ``on_change`` calls, counted, with a wait on them."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.count = 0

    def __call__(self) -> None:
        with self.cond:
            self.count += 1
            self.cond.notify_all()

    def wait(self, what: str) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.count > 0, TIMEOUT), f"no change for {what}"


def test_which_events_count_as_a_change(rules_dir: Path) -> None:
    """Our own reads, and writes in a state directory inside the rules
    directory, are no change; a file renamed out of the state directory is."""
    changes = Changes()
    state = rules_dir / "state"
    watch = DirectoryWatch(rules_dir, state, changes)
    for event in (
        FileOpenedEvent(str(rules_dir / "a.rules")),
        FileClosedNoWriteEvent(str(rules_dir / "a.rules")),
        FileModifiedEvent(str(state / "ruleset.pickle")),
        FileMovedEvent(str(state / "tmp123"), str(state / "ruleset.pickle")),
    ):
        watch.event(event)
    assert changes.count == 0
    watch.event(FileMovedEvent(str(state / "a.rules"), str(rules_dir / "a.rules")))
    watch.event(FileModifiedEvent(str(rules_dir / "a.rules")))
    assert changes.count == 2


@pytest.mark.parametrize("poll", OBSERVERS)
def test_the_directory_watch_reports_a_save(rules_dir: Path, state_dir: Path, poll: bool) -> None:
    changes = Changes()
    watch = DirectoryWatch(rules_dir, state_dir, changes, poll=poll)
    watch.start()
    try:
        write(rules_dir / "b.rules", SECOND)
        changes.wait("a new rule file")
    finally:
        watch.stop()
    assert watch.observer is None


def test_the_directory_watch_follows_a_directory_made_again(
    rules_dir: Path, state_dir: Path
) -> None:
    """The directory deleted under the watch: no usable watch until it is
    back; then ``ensure`` watches the new one, whose events arrive."""
    watch = DirectoryWatch(rules_dir, state_dir, Changes())
    seen: list[str] = []
    forward = watch.event

    def spy(event: Any) -> None:
        seen.append(os.fsdecode(event.src_path))
        forward(event)

    watch.event = spy  # type: ignore[method-assign]
    watch.start()
    try:
        shutil.rmtree(rules_dir)
        wait_until(lambda: not watch.watching, "the watch to be lost", timeout=TIMEOUT)
        rules_dir.mkdir()
        rules_dir.chmod(0o700)
        watch.ensure()
        assert watch.watching
        write(rules_dir / "after.rules", FIRST)
        wait_until(lambda: str(rules_dir / "after.rules") in seen, "an event from the new one")
    finally:
        watch.stop()


# ---------------------------------------------------------------------------
# Latency (printed, not asserted: the bench holds the number)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("poll", OBSERVERS)
def test_edit_to_swap_latency(
    make_watcher: Callable[..., RulesWatcher],
    recorder: Recorder,
    rules_dir: Path,
    poll: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    watcher = make_watcher(poll=poll)
    path = rules_dir / "a.rules"
    latencies = []
    edits = 4 if poll else 8  # polling is slower; keep the file's run short
    for i in range(edits):
        edited = time.monotonic()
        write(path, FIRST + f'rule "edit {i}"\non EndScript\n  log "{i}"\n')
        recorder.wait(lambda i=i: len(recorder.swaps) == i + 1, f"swap {i}")
        latencies.append(recorder.swap_times[i] - edited)
    assert labels(watcher.ruleset) == ["first", f"edit {edits - 1}"]
    ms = sorted(1000 * x for x in latencies)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    with capsys.disabled():
        print(
            f"\n[{'polling' if poll else 'inotify'}] edit to swap, {len(ms)} edits: "
            f"median {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms, max {ms[-1]:.0f} ms "
            f"(debounce {watcher.debounce * 1000:.0f} ms)"
        )
