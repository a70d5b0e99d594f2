"""The engine's handler when ``forward`` names central routers: the event
goes to the first that answers (``router.forwarding``) and this process
performs the local steps it sends back. When none answers in time, the
engine's own rules decide the local steps (run, abort, log: a quiesce step
or a policy never waits for the network), the event waits in the forward
spool, and the centre, once reachable, gets it with their outcomes and sends
its notifications then. Notifications are never sent from here: the
centre's journal is where each event is counted, once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from router.handler.stderr import say


def handle(args: list[str], config: Any, uid: str, started: float) -> int:
    """Forward one event; the exit status (1 when an abort was written)."""
    from router import forwarding

    deadline = started + config.forward_timeout
    received = datetime.now()
    body = forwarding.event_body(args, uid, received)
    sent, problems = forwarding.flush(config, deadline)  # older events first, in order
    if sent:
        say(f"forwarded {sent} event(s) that waited in the spool")
    if not problems:
        try:
            taken = forwarding.send(body, config, deadline)
        except forwarding.NotForwarded as exc:
            problems = [str(exc)]
        else:
            from router.steps import perform_sent

            results, aborted = perform_sent(taken.steps, config.event_log)
            if results and not forwarding.report(taken, results, config, deadline + 5):
                say("the steps' outcomes could not be reported to the central router")
            return 1 if aborted else 0
    say("no central router took the event (" + "; ".join(problems) + "): decided here")
    return _decide_here(args, body, config, received)


def _decide_here(args: list[str], body: dict[str, Any], config: Any, received: datetime) -> int:
    """The engine's own rules decide the local steps; the event is spooled
    for the centre with their outcomes."""
    from router import forwarding
    from router.dispatch import process
    from router.events import event_from_argv
    from router.loader import load_ruleset, use_caches
    from router.store import ensure_private_dir

    results: list[dict[str, Any]] = []
    aborted = False
    try:
        ensure_private_dir(config.state_dir)
        use_caches(config.state_dir)
        loaded = load_ruleset(config.rules_dir, config.state_dir, config.date_order)
        event = event_from_argv(args, date_order=config.date_order, received=received)
        outcome = process(event, loaded.ruleset, None, record=False, run_env=config.run_env)
        if outcome.steps:
            from router.steps import perform

            results, aborted = perform(outcome.steps, config.event_log)
    except Exception as exc:  # noqa: BLE001 - the event is still kept
        say(f"the local rules could not decide: {type(exc).__name__}: {exc}")
    try:
        forwarding.spool(config.state_dir, body, results)
    except Exception as exc:  # noqa: BLE001 - said; Retrospect is never failed
        say(f"the event could not be kept for the central routers: {exc}")
    return 1 if aborted else 0
