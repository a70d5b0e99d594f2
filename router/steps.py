"""Local steps: what must happen on the engine's machine, in the handler.

``run`` (a program, no shell), ``abort`` (the intervention file) and ``log``
(one line appended to a file) happen in the process Retrospect waits for,
whoever decided them: the inline handler, the service (which sends them to
the handler over its socket or to a remote engine over HTTP) or a timer.
They never depend on the journal: a full disk or a broken database must not
skip an ``abort`` or a quiesce script.

Standard library only, and only its cheap modules at import time: the
handler's fast path imports this for every event.
"""

from __future__ import annotations

import os
import time

from router import trust

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    import subprocess
    from typing import Any, Optional

#: A ``run`` without ``timeout``: 5 minutes (docs/rules.md).
DEFAULT_RUN_TIMEOUT = 300.0
#: How much of a program's output the journal keeps.
OUTPUT_TAIL = 2000
#: Where a program looks for others when the handler's environment has no PATH
#: (Retrospect may start it with a bare environment).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Variables a program inherits from the handler: what programs need to run
#: (locale, time zone, temporary directory, Windows' system paths), nothing
#: that could be a secret. More are passed with ``run_env`` in router.toml.
BASE_ENVIRONMENT = (
    "PATH HOME USER LOGNAME SHELL LANG LANGUAGE TZ TMPDIR TEMP TMP "
    "SYSTEMROOT SYSTEMDRIVE WINDIR COMSPEC PATHEXT PROGRAMDATA PROGRAMFILES "
    "PROGRAMFILES(X86) APPDATA LOCALAPPDATA USERPROFILE COMPUTERNAME USERNAME"
).split()
KINDS = ("run", "abort", "log")


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
        that is not one (a fast path must not trip over a bad message)."""
        if not isinstance(data, dict) or data.get("kind") not in KINDS:
            raise ValueError(f"not a local step: {data!r:.200}")
        values = {k: v for k, v in data.items() if k in cls.__slots__ and v is not None}
        kind = values.pop("kind")
        fallback = values.pop("fallback", None)
        step = cls(kind, **values)
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


def time_allowed(steps: list[Step]) -> float:
    """The longest the steps may take: every program's timeout, fallbacks included."""
    total = 0.0
    for step in steps:
        current: Optional[Step] = step
        while current is not None:
            total += current.timeout if current.kind == "run" else 1.0
            current = current.fallback
    return total


# ---------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------


def program_environment(pass_env: list[str], fields: dict[str, str]) -> dict[str, str]:
    """What a program runs with: the few variables any program needs, the
    ones ``run_env`` names, and the event's ``RETRO_*`` fields. Never the
    whole environment: the handler's holds target URLs and tokens."""
    names = set(BASE_ENVIRONMENT) | set(pass_env)
    environ = {k: v for k, v in os.environ.items() if k.upper() in names or k in names}
    environ.update({k: v for k, v in os.environ.items() if k.startswith("LC_")})
    environ.setdefault("PATH", DEFAULT_PATH)
    environ.update(fields)
    return environ


def _kill_group(process: subprocess.Popen) -> None:
    """Kill the program and everything it started (its own process group)."""
    import signal
    import subprocess

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


def _resolve_program(program: str, environ: dict[str, str]) -> tuple[Optional[str], Optional[str]]:
    """(the file to run, None) or (None, why it is not run)."""
    import shutil

    if os.sep in program or (os.altsep and os.altsep in program):
        found: Optional[str] = program
    else:
        found = shutil.which(program, path=environ.get("PATH"))
        if found is None:
            return None, f"cannot start: {program!r} is not found on PATH"
    refused = trust.admin_problem(str(found))
    if refused:
        return None, f"refused: {refused}"
    return found, None


def run_program(step: Step) -> dict[str, Any]:
    """Run ``step.argv`` without a shell; kill its whole group on timeout."""
    import subprocess
    import tempfile

    started = time.monotonic()
    result: dict[str, Any] = {
        "kind": "run",
        "rule": step.rule,
        "program": step.argv[0] if step.argv else "",
    }
    if step.error is not None or not step.argv:
        result.update(outcome="error", error=step.error or "no program to run")
        return result
    environ = program_environment(step.pass_env, step.env)
    program, refused = _resolve_program(step.argv[0], environ)
    if program is None:
        result.update(outcome="error", error=refused)
        return result
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
        "env": environ,
    }
    if os.name == "posix":
        options["start_new_session"] = True
    else:  # pragma: no cover - Windows
        options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    with output_file:
        try:
            process = subprocess.Popen([program, *step.argv[1:]], **options)
        except (OSError, ValueError) as exc:
            result.update(outcome="error", error=f"cannot start: {exc}")
            return result
        try:
            process.wait(timeout=step.timeout)
            result["exit_code"] = process.returncode
            if process.returncode == 0:
                result["outcome"] = "ok"
            else:
                result.update(outcome="failed", error=f"exit status {process.returncode}")
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.wait()
            result.update(outcome="timeout", error=f"killed after {step.timeout:g} s")
        output_file.seek(max(output_file.seek(0, os.SEEK_END) - OUTPUT_TAIL, 0))
        output = output_file.read()
    result["seconds"] = round(time.monotonic() - started, 3)
    result["output"] = output.decode("utf-8", "replace")
    return result


# ---------------------------------------------------------------------------
# abort and log
# ---------------------------------------------------------------------------


def write_intervention(step: Step) -> dict[str, Any]:
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


def append_log(step: Step, default_path: Any) -> dict[str, Any]:
    """Append ``step.text`` as one line to its file (or ``default_path``).

    The file is opened without following a symlink, must be a regular file
    with one link owned by root or the router's user, in a directory no other
    user may write into (unless sticky): as root, a log line must never be a
    way to write into another file.
    """
    # os.path, not pathlib: this runs on the fast path, for every event the
    # default rules log, and pathlib's import costs more than the write.
    path = os.fspath(step.path or default_path)
    result: dict[str, Any] = {"kind": "log", "rule": step.rule, "path": path}
    if step.error is not None:
        result.update(outcome="error", error=step.error)
        return result
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
            refused = trust.admin_problem(parent, check_directory=False)
            if refused:
                raise PermissionError(f"refused: {refused}")
        # One write of one line with O_APPEND: concurrent handlers never interleave.
        data = (step.text.replace("\n", " ") + "\n").encode("utf-8", "replace")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o600)
        try:
            _check_log_file(fd, path)
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, PermissionError) and str(exc).startswith("refused"):
            reason = str(exc)
        result.update(outcome="error", error=f"cannot write {path}: {reason}")
        return result
    result["outcome"] = "ok"
    return result


def _check_log_file(fd: int, path: str) -> None:
    if not trust.CHECKED:
        return
    import stat

    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise PermissionError(f"refused: {path} is not a regular file")
    if info.st_nlink > 1:
        raise PermissionError(f"refused: {path} has {info.st_nlink} hard links")
    if info.st_uid not in (0, os.geteuid()):
        raise PermissionError(f"refused: {path} is owned by uid {info.st_uid}")


def perform(steps: list[Step], event_log: Any) -> tuple[list[dict[str, Any]], bool]:
    """Perform the local steps in order. Returns their outcomes and whether
    Retrospect was told to abort. Never raises for a step's failure."""
    outcomes: list[dict[str, Any]] = []
    aborted = False
    for step in steps:
        current: Optional[Step] = step
        while current is not None:
            try:
                if current.kind == "run":
                    outcome = run_program(current)
                elif current.kind == "abort":
                    outcome = write_intervention(current)
                    aborted = aborted or outcome["outcome"] == "ok"
                else:
                    outcome = append_log(current, event_log)
            except Exception as exc:  # a step's surprise must not cost the next step
                outcome = {
                    "kind": current.kind,
                    "rule": current.rule,
                    "outcome": "error",
                    "error": f"{type(exc).__name__}: {exc}",
                }
            outcomes.append(outcome)
            # `run ... or ACTION`: the fallback runs when the program failed.
            failed = current.kind == "run" and outcome["outcome"] != "ok"
            current = current.fallback if failed else None
    return outcomes, aborted


#: Result kinds: the step kinds, and ``error`` for a handler that failed around them.
RESULT_KINDS = (*KINDS, "error")
MAX_RESULTS = 500
#: The text fields a result may have, and how long each may be.
RESULT_TEXTS = {
    "outcome": 32,
    "rule": 1024,
    "error": 8192,
    "program": 4096,
    "path": 4096,
    "text": 64 * 1024,
    "output": 16 * 1024,
}


def check_results(results: Any) -> list[dict[str, Any]]:
    """Steps' outcomes as they may be stored, checked one by one (whoever
    reports them: a handler over the socket, an engine over HTTP, a handler
    writing to the journal itself), so that what ``router history`` shows
    later is there and of the right type: ``kind`` and ``outcome`` required;
    the RESULT_TEXTS strings bounded; ``exit_code`` an int, ``seconds`` a
    number. Unknown keys are refused. ValueError says what is wrong."""
    if not isinstance(results, list):
        raise ValueError("results must be a list of objects")
    if len(results) > MAX_RESULTS:
        raise ValueError(f"results has more than {MAX_RESULTS} items")
    return [_checked(result, f"results[{index}]") for index, result in enumerate(results)]


def _checked(result: Any, where: str) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise ValueError(f"{where} must be an object")
    unknown = sorted(set(result) - {"kind", "exit_code", "seconds", *RESULT_TEXTS})
    if unknown:
        raise ValueError(f"{where}: unknown field(s): {', '.join(unknown)}")
    if result.get("kind") not in RESULT_KINDS:
        raise ValueError(f"{where}.kind must be one of {', '.join(RESULT_KINDS)}")
    if not result.get("outcome"):
        raise ValueError(f"{where}.outcome is required")
    for key, limit in RESULT_TEXTS.items():
        value = result.get(key, "")
        if not isinstance(value, str):
            raise ValueError(f"{where}.{key} must be a string, not {type(value).__name__}")
        if len(value) > limit:
            raise ValueError(f"{where}.{key} is longer than {limit} characters")
    code = result.get("exit_code", 0)
    if isinstance(code, bool) or not isinstance(code, int) or not -(2**63) <= code < 2**63:
        raise ValueError(f"{where}.exit_code must be a (64-bit) integer")
    seconds = result.get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"{where}.seconds must be a number")
    if not 0 <= seconds < 1e9:  # NaN and infinities too
        raise ValueError(f"{where}.seconds is out of range")
    return dict(result)


def describe(step: Step) -> list[str]:
    """A step in words, for ``router test`` (and its fallback, indented)."""
    if step.kind == "run":
        if step.error is not None:
            lines = [f"run: {step.error} (from {step.rule})"]
        else:
            import shlex

            lines = [f"run {shlex.join(step.argv)} (timeout {step.timeout:g} s) from {step.rule}"]
        if step.fallback is not None:
            lines.extend("  or " + line for line in describe(step.fallback))
        return lines
    if step.kind == "abort":
        where = step.path or "no intervention file"
        return [f"abort: {step.text!r} into {where} (exit status 1) from {step.rule}"]
    if step.error is not None:
        return [f"log: {step.error} (from {step.rule})"]
    return [f"log to {step.path or 'the event log'}: {step.text} from {step.rule}"]
