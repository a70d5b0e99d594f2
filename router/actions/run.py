"""``run PROGRAM ARG... [timeout D] [or ACTION]``: a program, without a shell.

Each argument is one template rendered to exactly one argument (event
values are data, never shell text). The program gets a minimal environment
plus the event as ``RETRO_*`` variables, runs in its own process group, and
is killed with everything it started when its time is up. When it fails,
the fallback action happens instead.
"""

from __future__ import annotations

import os
import time

from router import trust
from router.actions.base import DEFAULT_RUN_TIMEOUT, Action, Part, Step

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    import subprocess
    from collections.abc import Iterable
    from typing import Any, Optional

    from router.actions.contexts import BuildContext, CheckContext, RenderContext

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
_TEMPLATE_MARKS = ("{{", "{%")


class Run(Action):
    keyword = "run"
    checks_files = True
    parts = ("timeout", "fallback")
    local = True
    refused_in_expect = (
        "bad-action",
        "'run' in an expect rule: a timer has no event, and no Retrospect"
        " waiting on an engine's machine to run it on",
        "an expectation can notify and log",
    )
    __slots__ = ("program", "args", "timeout", "fallback", "span")

    @classmethod
    def build(cls, ctx: BuildContext, span: Any, children: list[Any]) -> Run:
        strings = [ctx.template_of(child) for child in children if not isinstance(child, Part)]
        extras = {part.name: part.children[0] for part in children if isinstance(part, Part)}
        timeout = ctx.duration_of(extras["timeout"]) if "timeout" in extras else None
        program, *args = strings
        return cls(program, tuple(args), timeout, extras.get("fallback"), span)

    def templates(self) -> Iterable[Any]:
        fallback = self.fallback.templates() if self.fallback is not None else ()
        return (self.program, *self.args, *fallback)

    def check(self, ctx: CheckContext) -> None:
        for template in (self.program, *self.args):
            ctx.check_template(template)
        ctx.check_window(self.timeout, self.span, "timeout")
        program = self.program.source
        if program and not any(mark in program for mark in _TEMPLATE_MARKS):
            self._check_program(ctx, program)
        if self.fallback is not None:
            ctx.check_action(self.fallback)

    def _check_program(self, ctx: CheckContext, program: str) -> None:
        import shutil

        problem = program_problem(program)
        if problem:
            ctx.warning(
                self.program.span,
                "program-not-found",
                problem,
                "the program runs without a shell; give its full path",
            )
            return
        refused = trust.admin_problem(shutil.which(program) or program)
        if refused:
            ctx.refuse(self.program.span, f"{refused}; the router will not run it")

    def render(self, ctx: RenderContext) -> list[Any]:
        argv: list[str] = []
        problem = None
        for template in (self.program, *self.args):
            text, problem = ctx.exact(template)
            if problem is not None:
                break
            argv.append(text)
        fallback = ctx.render(self.fallback) if self.fallback is not None else []
        step = Step(
            "run",
            ctx.rule,
            argv=[] if problem else argv,
            env=dict(ctx.retro_env),
            pass_env=list(ctx.run_env),
            timeout=self.timeout.total_seconds() if self.timeout else DEFAULT_RUN_TIMEOUT,
            fallback=next((s for s in fallback if isinstance(s, Step)), None),
            error=f"not started: {problem}" if problem else None,
        )
        return [step]

    @staticmethod
    def perform(step: Step, event_log: Optional[str]) -> dict[str, Any]:
        return run_program(step)

    @staticmethod
    def describe(step: Step) -> list[str]:
        if step.error is not None:
            return [f"run: {step.error} (from {step.rule})"]
        import shlex

        return [f"run {shlex.join(step.argv)} (timeout {step.timeout:g} s) from {step.rule}"]

    @staticmethod
    def time_allowed(step: Step) -> float:
        return step.timeout


def program_problem(program: str) -> Optional[str]:
    """Why ``run`` could not start ``program`` on this machine, or None."""
    import shutil

    if os.sep in program or (os.altsep and os.altsep in program):
        if not os.path.exists(program):
            return f"program '{program}' does not exist on this machine"
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            return f"program '{program}' is not executable"
        return None
    if shutil.which(program) is None:
        return f"program '{program}' is not found on PATH"
    return None


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


#: What ``router.actions.kind("run")`` returns.
KIND = Run
