"""``retroeventhandler``: the program Retrospect runs for every event.

Retrospect waits for this process, unattended, so it keeps the
robustness contract of docs/events.md whatever happens: no traceback, no hang, no lost event.

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

from router import locations, trust
from router.commandline import command_line_args
from router.config import fast_settings
from router.steps import Step, perform

# Only the standard library's cheapest modules at import time: this module
# is the fast path's. (typing, pathlib, subprocess each cost milliseconds.)
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Optional

USAGE = """\
usage: retroeventhandler EVENT [ARG ...]

Retrospect runs this program once per event (StartScript, EndSource, ...),
with the event's arguments in order (`router events NAME` lists them).
`router test EVENT ARG...` shows what the rules would do with one event.

  -h, --help   this text
  --version    the version

Exit status: 1 when a rule aborted the event (Retrospect skips or cancels),
else 0.
"""

# ---------------------------------------------------------------------------
# The fast path: the service does the work, this process the local steps
# ---------------------------------------------------------------------------

#: How long to wait for the service to accept: it answers at once or not at all.
CONNECT_TIMEOUT = 0.2
#: How long to wait for its answer to an event before deciding inline (with
#: the same uid, so an event it did journal is not journaled twice): it
#: answers in milliseconds, so this much silence means it is stopped or hung.
REPLY_TIMEOUT = 1.0
#: How long to wait for it to acknowledge the steps' outcomes (they are
#: written to the journal directly when it does not).
REPORT_TIMEOUT = 2.0
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
    or (None, None) when none answers at once, or when the state directory,
    its socket or its endpoint file is not private to this user: whoever
    answers there hands back programs to run, as root."""
    import _socket

    if trust.private_problem(state_dir):
        return None, None  # the inline path refuses the directory, saying why
    token = None
    unix_path = os.path.join(state_dir, locations.SOCKET_NAME)
    if hasattr(_socket, "AF_UNIX") and os.path.exists(unix_path):
        if trust.private_problem(unix_path):
            return None, None
        family, address = _socket.AF_UNIX, unix_path
    else:
        endpoint_path = os.path.join(state_dir, locations.ENDPOINT_NAME)
        try:  # a service without Unix sockets: loopback port and token in a private file
            if trust.private_problem(endpoint_path):
                return None, None
            with open(endpoint_path, encoding="utf-8") as handle:
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
        except (OSError, ValueError) as exc:
            if isinstance(exc, OSError) and "timed out" in str(exc):
                sys.stderr.write(
                    f"retroeventhandler: the service did not answer within {REPLY_TIMEOUT:g} s"
                    " (stopped or hung?); the event is handled here\n"
                )
            return None
        if reply is None or reply.get("ok") is not True:
            if reply is not None:
                sys.stderr.write(f"retroeventhandler: the service refused: {reply.get('error')}\n")
            return None
        # The event is journaled: from here on, never fall back (the steps
        # would run twice). Whatever goes wrong is reported, not retried.
        event_id = reply.get("event_id")
        try:
            steps = [Step.from_json(step) for step in reply.get("steps") or []]
            results, aborted = perform(steps, config.event_log)
        except Exception as exc:
            results = [
                {"kind": "error", "outcome": "error", "error": f"{type(exc).__name__}: {exc}"}
            ]
            aborted = False
        if results:
            connection.settimeout(REPORT_TIMEOUT)
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
        from router.dispatch import mask_results
        from router.steps import check_results
        from router.store import open_store

        with open_store(config) as store:
            store.journal.record_steps(int(event_id), mask_results(check_results(results)))
    except Exception as exc:
        sys.stderr.write(f"retroeventhandler: the steps' outcomes were not recorded: {exc}\n")


# ---------------------------------------------------------------------------
# The inline path
# ---------------------------------------------------------------------------


def _say(message: str) -> None:
    sys.stderr.write(f"retroeventhandler: {message}\n")


def handle(
    args: list[str],
    config_path: Optional[str] = None,
    uid: Optional[str] = None,
    started: Optional[float] = None,
) -> int:
    """The whole event in this process. The local steps are performed
    whatever happens to the journal: an event that cannot be recorded (full
    disk, read-only or refused state directory, damaged database) is decided
    without history, its steps performed, its notifications sent directly,
    and kept in the spool until a later handler or the service records it."""
    from router import config as settings
    from router.dispatch import process, record_outcome
    from router.events import event_from_argv
    from router.loader import load_ruleset, use_caches
    from router.store import open_store

    started = time.time() if started is None else started
    problems: list[str] = []
    try:
        config = settings.load(config_path)
        problems.extend(config.warnings)
    except settings.ConfigError as exc:
        problems.append(f"configuration: {exc}; using the defaults")
        config = settings.defaults()
    event = event_from_argv(args, date_order=config.date_order)
    store: Optional[Any] = None
    try:
        store = open_store(config)
        use_caches(config.state_dir)  # private (Store checked it): caches may live there
    except Exception as exc:  # Untrusted, OSError, sqlite3.Error
        problems.append(f"the journal in {config.state_dir} cannot be used: {_reason(exc)}")
    try:
        loaded = load_ruleset(config.rules_dir, config.state_dir, config.date_order)
        if loaded.errors:
            problems.append(
                "the rules have errors; the last good ruleset stays in force: "
                + "; ".join(loaded.errors)
            )
        problems.extend(loaded.warnings)
        for problem in problems:
            _say(problem)
        if store is not None:
            _flush_spool(store, config, loaded.ruleset)
            if loaded.errors:
                _report_broken_rules(store, config, loaded)
        outcome = process(
            event,
            loaded.ruleset,
            store,
            record=False,
            extra_errors=problems,
            uid=uid,
            run_env=config.run_env,
        )
        recorded = False
        if store is not None:
            try:
                record_outcome(store, outcome, "handler", uid)
                recorded = True
            except Exception as exc:
                _say(f"the event could not be journaled: {_reason(exc)}")
        if recorded:
            return finish(outcome, store, config, loaded.ruleset, started)
        return _finish_unrecorded(outcome, config, loaded.ruleset, uid, started)
    finally:
        if store is not None:
            store.close()


def _report_broken_rules(store: Any, config: Any, loaded: Any) -> None:
    """No service to tell the admin target about a broken rule edit: the
    first handler to see this broken version does (it goes out with the
    event's own deliveries)."""
    from router.dispatch import report_broken_rules

    try:
        report_broken_rules(store, config.admin, loaded.fingerprint, loaded.errors, "handler")
    except Exception as exc:
        _say(f"the report to the admin target was not queued: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """An exception in words: its own message when that says it all."""
    text = str(exc) or type(exc).__name__
    plain = type(exc).__name__ in ("Untrusted", "OSError")
    return text if plain else f"{type(exc).__name__}: {text}"


def finish(
    outcome: Any, store: Any, config: Any, ruleset: Any = None, started: Optional[float] = None
) -> int:
    """Local steps, the timers (when ``ruleset`` is given), then delivery
    until the deadline (counted from ``started``). Returns the exit status."""
    import contextlib

    from router.delivery import drain
    from router.dispatch import mask_results

    results, aborted = perform(outcome.steps, config.event_log)
    try:
        if outcome.event_id is not None and results:
            store.journal.record_steps(
                outcome.event_id, mask_results(results, outcome.outbox, ruleset)
            )
        if ruleset is not None:
            _tick_timers(ruleset, store, config)
        policy = config.delivery
        deadline = (time.time() if started is None else started) + policy.deadline
        drain(store, policy, deadline=deadline, ids=outcome.outbox_ids)
        if time.time() < deadline:
            drain(store, policy, deadline=deadline)  # older rows still waiting
        store.apply_retention(config.retention)
    except Exception as exc:  # the event and its steps are done; say what was not
        _say(f"after the event was journaled: {_reason(exc)}")
        if outcome.event_id is not None:
            with contextlib.suppress(Exception):
                store.journal.add_error(outcome.event_id, f"after journaling: {_reason(exc)}")
    return 1 if aborted else 0


def _finish_unrecorded(
    outcome: Any, config: Any, ruleset: Any, uid: Optional[str], started: float
) -> int:
    """The event could not be journaled: spool it, perform its steps, send
    its notifications directly within the deadline, note what was sent."""
    from router import spool
    from router.delivery import send_now
    from router.dispatch import mask_results, spooled

    data = spooled(outcome, "handler", uid)
    path = _spool(spool, data, config)
    results, aborted = perform(outcome.steps, config.event_log)
    data["steps"] = mask_results(results, outcome.outbox, ruleset)
    policy = config.delivery
    sent = send_now(outcome.outbox, policy, deadline=started + policy.deadline)
    data["sent"] = sent
    if path is not None:
        path = _spool(spool, data, config) or path
    unsent = len(outcome.outbox) - len(sent)
    if outcome.outbox:
        _say(f"sent {len(sent)} of {len(outcome.outbox)} notification(s) directly")
    if path is None and unsent:
        _say(f"{unsent} notification(s) were not sent and could not be kept")
    return 1 if aborted else 0


def _spool(spool: Any, data: dict[str, Any], config: Any) -> Optional[Any]:
    try:
        path = spool.save(data, config.state_dir)
    except Exception as exc:
        _say(f"the event could not be kept for later either: {_reason(exc)}")
        return None
    _say(f"event kept in {path}; it is journaled when the state directory takes it again")
    return path


def _flush_spool(store: Any, config: Any, ruleset: Any) -> None:
    """Record the events earlier handlers had to spool, before this one."""
    from datetime import datetime

    from router import spool
    from router.dispatch import process
    from router.events import event_from_argv

    def decide(data: dict[str, Any]) -> None:
        received = datetime.fromisoformat(data["received"])
        event = event_from_argv(data["argv"], date_order=config.date_order, received=received)
        error = f"recorded late from the spool: {data.get('error')}"
        process(event, ruleset, store, extra_errors=[error], origin="spool", uid=data.get("uid"))

    try:
        problems = spool.flush(store, config.state_dir, decide)[1]
    except Exception as exc:
        problems = [_reason(exc)]
    for problem in problems:
        _say(f"spool: {problem}")


def _tick_timers(ruleset: Any, store: Any, config: Any) -> None:
    """Without a service, handlers run the timers (expect windows, digests)
    that have come due; their rows are delivered with the event's."""
    from router.timers import tick

    report = tick(ruleset, store, event_log=config.event_log)
    for error in report.errors:
        _say(f"timers: {error}")


def _keep_raw(args: list[str], uid: Optional[str], error: str, config_path: Optional[str]) -> None:
    """Last resort when the handler failed before deciding: keep the
    arguments in the spool, so the event is decided once things work."""
    try:
        from router import spool
        from router.events import decode_arg

        found = fast_settings(config_path)
        state_dir = found.state_dir if found is not None else locations.default_state_dir()
        data = spool.raw([decode_arg(a) for a in args], uid, error)
        _say(f"event kept in {spool.save(data, state_dir)}")
    except Exception as exc:
        _say(f"the event could not be kept: {type(exc).__name__}: {exc}")


#: Hands the event's uid from a site-less fast path to the full Python it
#: re-runs for the inline path (see ``main_without_site``); private to us.
UID_VARIABLE = "ROUTER_HANDLER_UID"
#: The same for when the event arrived (the deadline counts from then).
STARTED_VARIABLE = "ROUTER_HANDLER_STARTED"


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
    started = time.time()
    args = command_line_args(sys.argv)
    if args and args[0] not in OPTIONS:
        uid = new_uid()
        try:
            status = fast_path(args, None, uid)
        except Exception:
            status = None  # the inline path will journal it, or keep it
        if status is not None:
            exit_now(status)
        os.environ[UID_VARIABLE] = uid
        os.environ[STARTED_VARIABLE] = repr(started)
        try:  # noqa: SIM105 - contextlib costs milliseconds on this path
            reexec()
        except OSError:
            pass  # carry on here; the inline path says what is missing
    exit_now(main(args))


#: The handler's own options (anything else is an event name, as Retrospect sends).
OPTIONS = ("-h", "--help", "--version")


def main(argv: Optional[list[str]] = None, config_path: Optional[str] = None) -> int:
    # Started with no stdout or stderr at all (a service without a console),
    # Python has None for them: every write would raise, even the usage text.
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
    args = command_line_args(sys.argv) if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    if args[0] == "--version":
        from router import __version__

        sys.stdout.write(f"retroeventhandler (retro-router) {__version__}\n")
        return 0
    uid = os.environ.pop(UID_VARIABLE, None)
    started = _float(os.environ.pop(STARTED_VARIABLE, None)) or time.time()
    if uid is None:  # not already tried by main_without_site
        uid = new_uid()
        try:
            status = fast_path(args, config_path, uid)
            if status is not None:
                return status
        except KeyboardInterrupt:
            _keep_raw(args, uid, "interrupted", config_path)
            return 0
        except Exception:  # the fast path failed before the service took the event
            pass
    try:
        return handle(args, config_path, uid=uid, started=started)
    except KeyboardInterrupt:
        _keep_raw(args, uid, "interrupted", config_path)
        return 0
    except Exception as exc:  # the contract: never a traceback for Retrospect
        message = f"{type(exc).__name__}: {exc}"
        _say(f"internal error: {message}")
        _keep_raw(args, uid, message, config_path)
        return 0


def _float(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def exit_now(status: int) -> None:
    """End the process now with ``status``. Apprise's worker threads (a send
    to a server that never answers) are joined at a normal exit, which would
    hold Retrospect past the deadline: output is flushed, then nothing waits."""
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 - contextlib costs milliseconds on this path
            stream.flush()
        except Exception:  # a closed stream has nothing to flush
            pass
    os._exit(status)


def run() -> None:
    """The console script ``retroeventhandler``."""
    exit_now(main())


if __name__ == "__main__":  # pragma: no cover
    run()
