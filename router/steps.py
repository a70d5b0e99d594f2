"""Local steps: performing what must happen on the engine's machine.

``run`` (a program, no shell), ``abort`` (the intervention file) and ``log``
(one line appended to a file) happen in the process Retrospect waits for,
whoever decided them: the inline handler, the service (which sends them to
the handler over its socket or to a remote engine over HTTP) or a timer.
They never depend on the journal: a full disk or a broken database must not
skip an ``abort`` or a quiesce script. Each kind says how it is performed
(``router/actions/``); this module runs a list of them and checks the
outcomes reported back.

Standard library only, and only its cheap modules at import time: the
handler's fast path imports this for every event.
"""

from __future__ import annotations

from router.actions import KIND_NAMES, Step, kind, local_kinds

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Optional

__all__ = ["Step", "check_results", "describe", "perform", "time_allowed"]


def time_allowed(steps: list[Step]) -> float:
    """The longest the steps may take: every program's timeout, fallbacks included."""
    total = 0.0
    for step in steps:
        current: Optional[Step] = step
        while current is not None:
            total += kind(current.kind).time_allowed(current)
            current = current.fallback
    return total


def perform(steps: list[Step], event_log: Any) -> tuple[list[dict[str, Any]], bool]:
    """Perform the local steps in order. Returns their outcomes and whether
    Retrospect was told to abort. Never raises for a step's failure."""
    outcomes: list[dict[str, Any]] = []
    aborted = False
    for step in steps:
        current: Optional[Step] = step
        while current is not None:
            performer = kind(current.kind) if current.kind in KIND_NAMES else None
            try:
                if performer is None or not performer.local:
                    raise ValueError(f"{current.kind!r} is not a local step")
                outcome = performer.perform(current, event_log)
            except Exception as exc:  # a step's surprise must not cost the next step
                outcome = {
                    "kind": current.kind,
                    "rule": current.rule,
                    "outcome": "error",
                    "error": f"{type(exc).__name__}: {exc}",
                }
            ok = outcome["outcome"] == "ok"
            aborted = aborted or (ok and performer is not None and performer.tells_retrospect)
            outcomes.append(outcome)
            # `run ... or ACTION`: the fallback happens when the step failed.
            current = current.fallback if not ok else None
    return outcomes, aborted


def perform_sent(wanted: list[Any], event_log: Any) -> tuple[list[dict[str, Any]], bool]:
    """The local steps a router sent back (as JSON) performed here, as
    ``perform`` does; steps that cannot even be read become one error
    outcome, never an exception (the event is journaled already)."""
    try:
        return perform([Step.from_json(step) for step in wanted], event_log)
    except Exception as exc:
        return [
            {"kind": "error", "outcome": "error", "error": f"{type(exc).__name__}: {exc}"}
        ], False


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
    # The step kinds, and ``error`` for a handler that failed around them.
    result_kinds = (*local_kinds(), "error")
    if result.get("kind") not in result_kinds:
        raise ValueError(f"{where}.kind must be one of {', '.join(result_kinds)}")
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
    lines = kind(step.kind).describe(step)
    if step.fallback is not None:
        lines.extend("  or " + line for line in describe(step.fallback))
    return lines
