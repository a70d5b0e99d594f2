"""The local steps' outcomes, written to the journal by the handler itself.

On the fast path the service records them: it journaled the event and
holds the journal. When it does not acknowledge them (it stopped or hung
while a program ran, which may take minutes), the handler writes them under
the event itself, with the slow imports the fast path otherwise avoids.
"""

from __future__ import annotations

from router.handler.stderr import say

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any


def record_in_journal(config: Any, event_id: Any, results: list[dict[str, Any]]) -> None:
    """The outcomes under event ``event_id``, checked and masked as the
    service would record them; if even that fails, say so."""
    try:
        from router.dispatch import mask_results
        from router.steps import check_results
        from router.store import open_store

        with open_store(config) as store:
            store.journal.record_steps(int(event_id), mask_results(check_results(results)))
    except Exception as exc:
        say(f"the steps' outcomes were not recorded: {exc}")
