"""``retroeventhandler``: the program Retrospect runs for every event.

Retrospect waits for this process, unattended, so it keeps EVENTS.md's
robustness contract whatever happens: no traceback, no hang, no lost event.
The inline path: argv -> Event -> ruleset (cached) -> journal + outbox ->
local steps (run, abort, log) -> deliver within a deadline. What is not
delivered by then stays queued for the next handler, the service or
``router outbox retry``.

Exit status: 1 when an ``abort`` wrote the intervention file (as
Retrospect's example handlers do), else 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

USAGE = """\
usage: retroeventhandler EVENT [ARG ...]

Retrospect runs this program once per event (StartScript, EndSource, ...),
with the event's arguments in the order EVENTS.md lists them.
`router events` shows every event and its fields; `router test EVENT ARG...`
shows what the rules would do with one.
"""

#: How much of a program's output the journal keeps.
OUTPUT_TAIL = 2000
FALLBACK_NAME = "unrecorded-events.jsonl"


# ---------------------------------------------------------------------------
# Local steps
# ---------------------------------------------------------------------------


def _kill_group(process: subprocess.Popen) -> None:
    """Kill the program and everything it started (its own process group)."""
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            subprocess.run(
                ["taskkill", "/F", "/T", "/PID", str(process.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
    except (OSError, ProcessLookupError):
        process.kill()


def run_program(step: Any) -> dict[str, Any]:
    """Run ``step.argv`` without a shell; kill its whole group on timeout."""
    import tempfile

    started = time.monotonic()
    result: dict[str, Any] = {"kind": "run", "rule": step.rule, "program": step.argv[0]}
    # The output goes to an unnamed temporary file, not a pipe: waiting for
    # a pipe's end would also wait for any daemon the program left behind
    # holding it (a "start the service" script), past the timeout and even
    # past the kill, when the daemon left the process group.
    try:
        output_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the with below
    except OSError:  # no writable temporary directory: run it, without its output
        output_file = open(os.devnull, "w+b")  # noqa: SIM115 - closed by the with below
    options: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": output_file,
        "stderr": subprocess.STDOUT,
        "env": {**os.environ, **step.env},
    }
    if os.name == "posix":
        options["start_new_session"] = True
    else:  # pragma: no cover - Windows
        options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    with output_file:
        try:
            process = subprocess.Popen(step.argv, **options)
        except (OSError, ValueError) as exc:
            result.update(outcome="error", error=f"cannot start: {exc}")
            return result
        try:
            process.wait(timeout=step.timeout)
            result.update(outcome="ok" if process.returncode == 0 else "failed")
            result["exit_code"] = process.returncode
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.wait()
            result.update(outcome="timeout", error=f"timed out after {step.timeout:g} s")
        output_file.seek(max(output_file.seek(0, os.SEEK_END) - OUTPUT_TAIL, 0))
        output = output_file.read()
    result["seconds"] = round(time.monotonic() - started, 3)
    result["output"] = output.decode("utf-8", "replace")
    return result


def write_intervention(step: Any) -> dict[str, Any]:
    """Write the reason into Retrospect's intervention file (appending, so
    two aborts for one event both reach Retrospect's log)."""
    result: dict[str, Any] = {"kind": "abort", "rule": step.rule, "text": step.text}
    if not step.path:
        result.update(outcome="error", error="this event passed no intervention file")
        return result
    try:
        with open(step.path, "a", encoding="utf-8") as handle:
            handle.write(step.text.rstrip("\n") + "\n")
    except OSError as exc:
        result.update(outcome="error", error=f"cannot write {step.path}: {exc.strerror or exc}")
        return result
    result["outcome"] = "ok"
    return result


def append_log(step: Any, default_path: Path) -> dict[str, Any]:
    path = Path(step.path) if step.path else default_path
    result: dict[str, Any] = {"kind": "log", "rule": step.rule, "path": str(path)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One write of one line with O_APPEND: concurrent handlers never interleave.
        data = (step.text.replace("\n", " ") + "\n").encode("utf-8", "replace")
        fd = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        result.update(outcome="error", error=f"cannot write {path}: {exc.strerror or exc}")
        return result
    result["outcome"] = "ok"
    return result


def perform_steps(steps: list[Any], event_log: Path) -> tuple[list[dict[str, Any]], bool]:
    """Run the local steps in order. Returns their outcomes and whether
    Retrospect was told to abort."""
    outcomes: list[dict[str, Any]] = []
    aborted = False
    for step in steps:
        current: Optional[Any] = step
        while current is not None:
            if current.kind == "run":
                outcome = run_program(current)
            elif current.kind == "abort":
                outcome = write_intervention(current)
                aborted = aborted or outcome["outcome"] == "ok"
            else:
                outcome = append_log(current, event_log)
            outcomes.append(outcome)
            # `run ... or ACTION`: the fallback runs when the program failed.
            failed = current.kind == "run" and outcome["outcome"] != "ok"
            current = current.fallback if failed else None
    return outcomes, aborted


# ---------------------------------------------------------------------------
# The inline path
# ---------------------------------------------------------------------------


def handle(args: list[str], config_path: Optional[str] = None) -> int:
    from router.config import (
        PROJECT_ROOT,
        Config,
        ConfigError,
        default_state_dir,
        load_config,
        use_cache_dir,
    )
    from router.dispatch import process
    from router.events import event_from_argv
    from router.loader import load_ruleset
    from router.store import Store

    problems: list[str] = []
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        problems.append(f"configuration: {exc}; using the defaults")
        config = Config(rules_dir=PROJECT_ROOT / "rules", state_dir=default_state_dir())
    event = event_from_argv(args, date_order=config.date_order)
    store = Store(config.state_dir)
    use_cache_dir(config.state_dir)  # private (Store made it 0700): caches may live there
    try:
        loaded = load_ruleset(config.rules_dir, config.state_dir, config.date_order)
        if loaded.errors:
            problems.append(
                "the rules have errors; the last good ruleset stays in force: "
                + "; ".join(loaded.errors)
            )
        for problem in problems:
            sys.stderr.write(f"retroeventhandler: {problem}\n")
        outcome = process(event, loaded.ruleset, store, extra_errors=problems)
        try:
            return finish(outcome, store, config)
        except Exception as exc:  # the event is journaled: note the failure there
            message = f"internal error after journaling: {type(exc).__name__}: {exc}"
            sys.stderr.write(f"retroeventhandler: {message}\n")
            if outcome.event_id is not None:
                store.add_error(outcome.event_id, message)
            return 0
    finally:
        store.close()


def finish(outcome: Any, store: Any, config: Any) -> int:
    """Local steps, then delivery within the deadline. Returns the exit status."""
    from router.config import event_log_path
    from router.delivery import DeliveryPolicy, drain
    from router.store import apply_retention

    results, aborted = perform_steps(outcome.steps, event_log_path(config))
    if outcome.event_id is not None and results:
        store.record_steps(outcome.event_id, results)
    policy = DeliveryPolicy.from_config(config.raw)
    deadline = time.time() + policy.deadline
    drain(store, policy, deadline=deadline, ids=outcome.outbox_ids)
    if time.time() < deadline:
        drain(store, policy, deadline=deadline)  # older rows still waiting
    apply_retention(store, config.retention)
    return 1 if aborted else 0


def _save_unrecorded(args: list[str], error: str) -> None:
    """Last resort when the journal itself failed: keep the event in a
    plain file, so it can be replayed (``router replay``) once fixed."""
    from router.events import decode_arg

    line = json.dumps(
        {
            "received": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "args": [decode_arg(a) for a in args],
            "error": error,
        },
        ensure_ascii=False,
    )
    candidates = []
    try:  # the configured state directory (ROUTER_STATE_DIR applied), if it can be read
        from router.config import load_config

        candidates.append(load_config().state_dir)
    except Exception:
        pass
    state = os.environ.get("ROUTER_STATE_DIR")
    if state:
        candidates.append(Path(state))
    try:
        from router.config import default_state_dir

        candidates.append(default_state_dir())
    except Exception:
        pass
    candidates.append(Path(os.environ.get("TMPDIR", "/tmp")))
    for directory in candidates:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # 0600, and never through a symlink: the last candidate is the
            # shared temporary directory, and the handler may run as root.
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
            handle = os.open(str(directory / FALLBACK_NAME), flags, 0o600)
            try:
                os.write(handle, (line + "\n").encode("utf-8"))
            finally:
                os.close(handle)
            sys.stderr.write(f"retroeventhandler: event kept in {directory / FALLBACK_NAME}\n")
            return
        except OSError:
            continue


def main(argv: Optional[list[str]] = None, config_path: Optional[str] = None) -> int:
    # Started with no stdout or stderr at all (a service without a console),
    # Python has None for them: every write would raise, even the usage text.
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.stdout.write(USAGE)
        return 0
    try:
        return handle(args, config_path)
    except KeyboardInterrupt:
        _save_unrecorded(args, "interrupted")
        return 0
    except Exception as exc:  # the contract: never a traceback for Retrospect
        message = f"{type(exc).__name__}: {exc}"
        sys.stderr.write(f"retroeventhandler: internal error: {message}\n")
        _save_unrecorded(args, message)
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
