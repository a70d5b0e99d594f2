"""``retroeventhandler``: the program Retrospect runs for every event.

Retrospect waits for this process, unattended, so it keeps the
robustness contract of docs/events.md whatever happens: no traceback, no hang, no lost event.

This module is the command line and the choice between two paths:

- the fast path (``via_service``): when ``router serve`` answers on its
  local socket (``client``), it decides; this process performs the local
  steps it sends back (run, abort, log: they must happen on this machine)
  and reports their outcomes (written to the journal here, by
  ``outcomes``, when the service does not take them). Standard library
  only: no engine, no SQLite, no Lark, Jinja or Apprise, so it costs little
  more than the interpreter;
- the inline path (``inline``): no service, or it did not answer in time:
  the whole event in this process. Imported only when taken.

Both paths journal the event under the same uid, so an event the service
took but could not answer for is still journaled once.

Exit status: 1 when an ``abort`` wrote the intervention file (as
Retrospect's example handlers do), else 0.
"""

from __future__ import annotations

import os
import sys
import time

from router.commandline import command_line_args
from router.config import fast_settings
from router.handler.client import REPLY_TIMEOUT, connect

# Only the standard library's cheapest modules at import time: this module
# is the fast path's. (typing, pathlib, subprocess each cost milliseconds.)
# The inline path is imported where it is taken.
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

#: The handler's own options (anything else is an event name, as Retrospect sends).
OPTIONS = ("-h", "--help", "--version")
#: Hands the event's uid from a site-less fast path to the full Python it
#: re-runs for the inline path (see ``main_without_site``); private to us.
UID_VARIABLE = "ROUTER_HANDLER_UID"
#: The same for when the event arrived (the deadline counts from then).
STARTED_VARIABLE = "ROUTER_HANDLER_STARTED"


def run() -> None:
    """The console script ``retroeventhandler``."""
    exit_now(main())


def main(argv: Optional[list[str]] = None, config_path: Optional[str] = None) -> int:
    """Handle one event (``argv``: the event's name and arguments); the exit status."""
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
        from router.handler.inline import handle

        return handle(args, config_path, uid=uid, started=started)
    except KeyboardInterrupt:
        _keep_raw(args, uid, "interrupted", config_path)
        return 0
    except Exception as exc:  # the contract: never a traceback for Retrospect
        message = f"{type(exc).__name__}: {exc}"
        _say(f"internal error: {message}")
        _keep_raw(args, uid, message, config_path)
        return 0


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


def fast_path(args: list[str], config_path: Optional[str], uid: str) -> Optional[int]:
    """The service path alone (standard library only): the exit status, or
    None when the service did not take the event."""
    settings = fast_settings(config_path)
    return via_service(settings, args, uid) if settings is not None else None


def via_service(config: Any, args: list[str], uid: str) -> Optional[int]:
    """Hand the event to ``router serve`` and perform the local steps it
    sends back. Returns the exit status, or None when the service did not
    take the event (not running, not answering in time, or refusing): the
    caller then takes the inline path with the same ``uid``, so an event
    the service did journal is not journaled twice.

    ``config`` needs ``state_dir`` and ``event_log`` (``fast_settings``
    gives both without reading the whole configuration).
    """
    client = connect(str(config.state_dir))
    if client is None:
        return None
    with client:
        try:
            reply = client.send_event(args, uid)
        except (OSError, ValueError) as exc:
            if isinstance(exc, OSError) and "timed out" in str(exc):
                _say(
                    f"the service did not answer within {REPLY_TIMEOUT:g} s"
                    " (stopped or hung?); the event is handled here"
                )
            return None
        if reply is None or reply.get("ok") is not True:
            if reply is not None:
                _say(f"the service refused: {reply.get('error')}")
            return None
        # The event is journaled: from here on, never fall back (the steps
        # would run twice). Whatever goes wrong is reported, not retried.
        event_id = reply.get("event_id")
        wanted = reply.get("steps")
        if not wanted:
            return 0  # most events: nothing to do here (router.steps not even imported)
        from router.steps import perform_sent

        results, aborted = perform_sent(wanted, config.event_log)
        if results and not client.report_steps(event_id, results):
            from router.handler.outcomes import record_in_journal

            record_in_journal(config, event_id, results)
        return 1 if aborted else 0


def new_uid() -> str:
    """A random (version 4) UUID as 32 hex digits, without importing uuid."""
    data = bytearray(os.urandom(16))
    data[6] = (data[6] & 0x0F) | 0x40
    data[8] = (data[8] & 0x3F) | 0x80
    return data.hex()


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


def _keep_raw(args: list[str], uid: Optional[str], error: str, config_path: Optional[str]) -> None:
    """The inline path's last resort: its module imports only light ones,
    so this works even when what ``handle`` needs is broken."""
    from router.handler.inline import keep_raw

    keep_raw(args, uid, error, config_path)


def _say(message: str) -> None:
    """``stderr.say``, imported only when there is something to say: the
    fast path's usual run says nothing, and every module it imports costs."""
    from router.handler.stderr import say

    say(message)


def _float(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text else None
    except ValueError:
        return None
