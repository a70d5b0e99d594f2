"""``retroeventhandler``: the program Retrospect runs for every event.

Retrospect waits for this process, unattended, so it keeps EVENTS.md's
robustness contract whatever happens: no traceback, no hang, no lost event.

The fast path (``via_service``): when ``router serve`` answers on its local
socket, send it the event, perform the local steps it sends back (run,
abort, log: they must happen on this machine), report their outcomes, exit.
That path imports only the standard library: no engine, no SQLite, no
Lark, Jinja or Apprise, so it costs little more than the interpreter.

The inline path (no service, or it did not answer in time): argv -> Event
-> ruleset (cached) -> journal + outbox -> local steps (run, abort, log) ->
deliver within a deadline. What is not delivered by then stays queued for
the next handler, the service or ``router outbox retry``. Both paths
journal the event under the same uid, so an event the service took but
could not answer for is still journaled once.

Exit status: 1 when an ``abort`` wrote the intervention file (as
Retrospect's example handlers do), else 0.
"""

from __future__ import annotations

import os
import sys
import time

from router import locations

# Only the standard library's cheapest modules at import time: this module
# is the fast path's. (typing, pathlib, subprocess each cost milliseconds.)
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    import subprocess
    from pathlib import Path
    from typing import Any, Optional, Union

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


def run_program(step: Any) -> dict[str, Any]:
    """Run ``step.argv`` without a shell; kill its whole group on timeout."""
    import subprocess
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


def append_log(step: Any, default_path: Union[str, Path]) -> dict[str, Any]:
    # os.path, not pathlib: this runs on the fast path, for every event the
    # default rules log, and pathlib's import costs more than the write.
    path = os.fspath(step.path or default_path)
    result: dict[str, Any] = {"kind": "log", "rule": step.rule, "path": path}
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        # One write of one line with O_APPEND: concurrent handlers never interleave.
        data = (step.text.replace("\n", " ") + "\n").encode("utf-8", "replace")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        result.update(outcome="error", error=f"cannot write {path}: {exc.strerror or exc}")
        return result
    result["outcome"] = "ok"
    return result


def perform_steps(
    steps: list[Any], event_log: Union[str, Path]
) -> tuple[list[dict[str, Any]], bool]:
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
# The fast path: the service does the work, this process the local steps
# ---------------------------------------------------------------------------

#: The service's local socket in the state directory (POSIX).
SOCKET_NAME = "router.sock"
#: Where a service without Unix sockets (Windows) writes its loopback port and token.
ENDPOINT_NAME = "router.endpoint"
#: How long to wait for the service to accept: it answers at once or not at all.
CONNECT_TIMEOUT = 0.2
#: How long to wait for each of its replies before falling back to the inline path.
REPLY_TIMEOUT = 5.0
#: The longest reply line read from the service.
MAX_REPLY = 16 * 1024 * 1024


# JSON without the json package: its import pulls in re and enum, which cost
# more than everything else the fast path does. The C accelerator json itself
# uses (_json) reads and writes the same JSON; without it (another Python
# implementation), the json package does.
try:
    import _json

    class _ScanContext:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = float  # NaN, Infinity, -Infinity, as json reads them

    _scan = _json.make_scanner(_ScanContext())
    _quote = _json.encode_basestring_ascii
except (ImportError, AttributeError):  # pragma: no cover - not CPython
    _scan = _quote = None

_WHITESPACE = " \t\n\r"


def dumps(value: Any) -> str:
    """JSON text for plain data, as ``json.dumps`` writes it (ASCII-only,
    so undecodable argv bytes travel as escaped surrogates)."""
    if _quote is None:  # pragma: no cover
        import json

        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str):
        return _quote(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not JSON")
        return float.__repr__(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(_quote(str(k)) + ":" + dumps(v) for k, v in value.items()) + "}"
    raise TypeError(f"{type(value).__name__} is not JSON")


def loads(text: str) -> Any:
    """The value of a JSON text, as ``json.loads`` reads it (ValueError if malformed)."""
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration:
        raise ValueError("not JSON") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError("extra data after the JSON value")
    return value


_STEP_DEFAULTS = {
    "kind": "log",
    "rule": "",
    "argv": [],
    "env": {},
    "timeout": 300.0,
    "fallback": None,
    "text": "",
    "path": None,
}


class _Step:
    """A local step as the service sends it (LocalStep's JSON), with the
    attributes ``perform_steps`` reads. router.dispatch is not imported here:
    it would pull in the engine, the language and SQLite."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(_STEP_DEFAULTS)
        self.__dict__.update(data)
        if isinstance(self.fallback, dict):
            self.fallback = _Step(self.fallback)
        self.env = {str(k): str(v) for k, v in (self.env or {}).items()}


class _Settings:
    """What the fast path needs from router.toml: where the state directory
    and the event log are. Same resolution as ``router.config.load_config``
    (a test holds the two together), without its imports."""

    def __init__(self, state_dir: str, event_log: str) -> None:
        self.state_dir = state_dir
        self.event_log = event_log


_PATH_KEYS = ("state_dir", "event_log")


def simple_toml_paths(text: str) -> Optional[dict[str, str]]:
    """``state_dir`` and ``event_log`` from router.toml, read without a TOML
    parser (tomllib's import costs more than the rest of the fast path), or
    None when the file is anything but simple: then tomllib reads it.

    Understood: before the first ``[table]``, blank and comment lines and
    ``bare_key = value`` on one line; the two keys' values must be plain
    strings without escapes. Anything else before the first table
    (multi-line strings or arrays, quoted or dotted keys, a key given twice)
    means None. What follows the first table cannot set a top-level key.
    """
    if '"""' in text or "'''" in text:
        return None  # a multi-line string could hide anything
    found: dict[str, str] = {}
    seen: set[str] = set()
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            break
        key, equals, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key or not all(c.isalnum() or c in "_-" for c in key):
            return None
        if not key.isascii() or key in seen:
            return None
        seen.add(key)
        if value[:1] in ("[", "{") and not _balanced(value):
            return None  # a multi-line array
        if key not in _PATH_KEYS:
            continue
        quote = value[:1]
        end = value.find(quote, 1) if quote in ('"', "'") else -1
        rest = value[end + 1 :].strip() if end > 0 else "x"
        if rest and not rest.startswith("#"):
            return None
        content = value[1:end]
        if (quote == '"' and "\\" in content) or any(ord(c) < 32 for c in content):
            return None
        found[key] = content
    return found


def _balanced(value: str) -> bool:
    """Whether the brackets of a one-line array or inline table close on it."""
    depth, quote, escaped = 0, "", False
    for char in value:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            break
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
    return depth == 0 and not quote


def fast_settings(config_path: Optional[str] = None) -> Optional[_Settings]:
    """The state directory and event log as router.toml sets them, or None
    when the file cannot be read (the inline path then says why)."""
    path = locations.config_file(config_path)
    raw: Optional[dict[str, Any]] = {}
    base = ""
    if path is not None:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            raw = simple_toml_paths(text)
            if raw is None:
                if sys.version_info >= (3, 11):
                    import tomllib
                else:  # pragma: no cover - 3.9/3.10
                    import tomli as tomllib
                raw = tomllib.loads(text)
        except Exception:
            return None
        base = os.path.dirname(path)
    assert raw is not None
    state_dir = locations.state_dir_of(raw, base)
    return _Settings(state_dir, locations.event_log_of(raw, base, state_dir))


def new_uid() -> str:
    """A random (version 4) UUID as 32 hex digits, without importing uuid."""
    data = bytearray(os.urandom(16))
    data[6] = (data[6] & 0x0F) | 0x40
    data[8] = (data[8] & 0x3F) | 0x80
    return data.hex()


def _received_now() -> str:
    """Now, local time, ISO 8601 with microseconds (datetime.fromisoformat reads it)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1e6):06d}"


def _connect(state_dir: str) -> Any:
    """A connection to the service and the token to send (loopback TCP only),
    or (None, None) when none answers at once."""
    import _socket

    token = None
    unix_path = os.path.join(state_dir, SOCKET_NAME)
    if hasattr(_socket, "AF_UNIX") and os.path.exists(unix_path):
        family, address = _socket.AF_UNIX, unix_path
    else:
        try:  # a service without Unix sockets: loopback port and token in a private file
            with open(os.path.join(state_dir, ENDPOINT_NAME), encoding="utf-8") as handle:
                endpoint = loads(handle.read())
            family, address = _socket.AF_INET, ("127.0.0.1", int(endpoint["port"]))
            token = str(endpoint["token"])
        except (OSError, ValueError, KeyError, TypeError):
            return None, None
    connection = _socket.socket(family, _socket.SOCK_STREAM)
    try:
        connection.settimeout(CONNECT_TIMEOUT)
        connection.connect(address)
    except OSError:
        connection.close()
        return None, None
    connection.settimeout(REPLY_TIMEOUT)
    return connection, token


def _read_line(connection: Any, pending: bytearray) -> Optional[bytes]:
    """One newline-terminated line; None at EOF before a whole line."""
    while b"\n" not in pending:
        if len(pending) > MAX_REPLY:
            return None
        chunk = connection.recv(65536)
        if not chunk:
            return None
        pending += chunk
    line, _, rest = bytes(pending).partition(b"\n")
    pending[:] = rest
    return line


def _exchange(connection: Any, message: dict[str, Any], pending: bytearray) -> Optional[dict]:
    connection.sendall(dumps(message).encode("ascii") + b"\n")
    line = _read_line(connection, pending)
    if line is None:
        return None
    reply = loads(line.decode("utf-8"))
    return reply if isinstance(reply, dict) else None


def via_service(config: Any, args: list[str], uid: str) -> Optional[int]:
    """Hand the event to ``router serve`` and perform the local steps it
    sends back. Returns the exit status, or None when the service did not
    take the event (not running, not answering in time, or refusing): the
    caller then takes the inline path with the same ``uid``, so an event
    the service did journal is not journaled twice.

    ``config`` needs ``state_dir`` and ``event_log`` (``fast_settings``
    gives both without importing router.config).
    """
    connection, token = _connect(str(config.state_dir))
    if connection is None:
        return None
    pending = bytearray()
    try:
        message: dict[str, Any] = {
            "op": "event",
            "uid": uid,
            # ensure_ascii (json's default) carries undecodable argv bytes
            # (surrogate escapes) to the service, which decodes them as the
            # inline path does.
            "argv": list(args),
            "host": __import__("_socket").gethostname(),
            "received": _received_now(),
        }
        if token is not None:
            message["token"] = token
        try:
            reply = _exchange(connection, message, pending)
        except (OSError, ValueError):
            return None
        if reply is None or reply.get("ok") is not True:
            if reply is not None:
                sys.stderr.write(f"retroeventhandler: the service refused: {reply.get('error')}\n")
            return None
        # The event is journaled: from here on, never fall back (the steps
        # would run twice). Whatever goes wrong is reported, not retried.
        event_id = reply.get("event_id")
        try:
            steps = [_Step(step) for step in reply.get("steps") or []]
            results, aborted = perform_steps(steps, config.event_log)
        except Exception as exc:
            results = [
                {"kind": "error", "outcome": "error", "error": f"{type(exc).__name__}: {exc}"}
            ]
            aborted = False
        if results:
            _report_steps(connection, pending, config, event_id, results)
        return 1 if aborted else 0
    finally:
        connection.close()


def _report_steps(
    connection: Any, pending: bytearray, config: Any, event_id: Any, results: list[dict[str, Any]]
) -> None:
    """Tell the service what the steps did; if it cannot take that, write it
    to the journal directly (the slow imports, but only in this rare case)."""
    try:
        reply = _exchange(
            connection, {"op": "steps", "event_id": event_id, "results": results}, pending
        )
        if reply is not None and reply.get("ok") is True:
            return
    except (OSError, ValueError):
        pass
    try:
        from router.store import Store

        with Store(config.state_dir) as store:
            store.record_steps(int(event_id), results)
    except Exception as exc:
        sys.stderr.write(f"retroeventhandler: the steps' outcomes were not recorded: {exc}\n")


# ---------------------------------------------------------------------------
# The inline path
# ---------------------------------------------------------------------------


def handle(args: list[str], config_path: Optional[str] = None, uid: Optional[str] = None) -> int:
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
        outcome = process(event, loaded.ruleset, store, extra_errors=problems, uid=uid)
        try:
            return finish(outcome, store, config, loaded.ruleset)
        except Exception as exc:  # the event is journaled: note the failure there
            message = f"internal error after journaling: {type(exc).__name__}: {exc}"
            sys.stderr.write(f"retroeventhandler: {message}\n")
            if outcome.event_id is not None:
                store.add_error(outcome.event_id, message)
            return 0
    finally:
        store.close()


def finish(outcome: Any, store: Any, config: Any, ruleset: Any = None) -> int:
    """Local steps, the timers (when ``ruleset`` is given), then delivery
    within the deadline. Returns the exit status."""
    from router.config import event_log_path
    from router.delivery import DeliveryPolicy, drain
    from router.store import apply_retention

    results, aborted = perform_steps(outcome.steps, event_log_path(config))
    if outcome.event_id is not None and results:
        store.record_steps(outcome.event_id, results)
    if ruleset is not None:
        _tick_timers(ruleset, store, config)
    policy = DeliveryPolicy.from_config(config.raw)
    deadline = time.time() + policy.deadline
    drain(store, policy, deadline=deadline, ids=outcome.outbox_ids)
    if time.time() < deadline:
        drain(store, policy, deadline=deadline)  # older rows still waiting
    apply_retention(store, config.retention)
    return 1 if aborted else 0


def _tick_timers(ruleset: Any, store: Any, config: Any) -> None:
    """Without a service, handlers run the timers (expect windows, digests)
    that have come due; their rows are delivered with the event's."""
    from router.config import event_log_path

    try:
        from router.timers import tick
    except ImportError:
        return
    report = tick(ruleset, store, event_log=event_log_path(config))
    for error in report.errors:
        sys.stderr.write(f"retroeventhandler: timers: {error}\n")


def _save_unrecorded(args: list[str], error: str) -> None:
    """Last resort when the journal itself failed: keep the event in a
    plain file, so it can be replayed (``router replay``) once fixed."""
    import json
    from pathlib import Path

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
    candidates.append(Path(locations.default_state_dir()))
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


#: Hands the event's uid from a site-less fast path to the full Python it
#: re-runs for the inline path (see ``main_without_site``); private to us.
UID_VARIABLE = "ROUTER_HANDLER_UID"


def fast_path(args: list[str], config_path: Optional[str], uid: str) -> Optional[int]:
    """The service path alone (standard library only): the exit status, or
    None when the service did not take the event."""
    settings = fast_settings(config_path)
    return via_service(settings, args, uid) if settings is not None else None


def main_without_site(reexec: Any) -> None:
    """Entry for the checkout's script when Python started without site
    (``-I -S``: a third of a bare start-up's time). The service path needs
    only the standard library; if the service does not take the event,
    ``reexec()`` replaces this process with a full Python for the inline
    path, handing it the event's uid so the journal never has it twice."""
    args = sys.argv[1:]
    if args:
        uid = new_uid()
        try:
            status = fast_path(args, None, uid)
        except Exception:
            status = None  # the inline path will journal it, or keep it
        if status is not None:
            sys.exit(status)
        os.environ[UID_VARIABLE] = uid
        try:  # noqa: SIM105 - contextlib costs milliseconds on this path
            reexec()
        except OSError:
            pass  # carry on here; the inline path says what is missing
    sys.exit(main(args))


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
    uid = os.environ.pop(UID_VARIABLE, None)
    if uid is None:  # not already tried by main_without_site
        uid = new_uid()
        try:
            status = fast_path(args, config_path, uid)
            if status is not None:
                return status
        except KeyboardInterrupt:
            _save_unrecorded(args, "interrupted")
            return 0
        except Exception:  # the fast path failed before the service took the event
            pass
    try:
        return handle(args, config_path, uid=uid)
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
