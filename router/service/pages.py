"""The status page (``GET /``) and a backup's recent runs (``GET /runs``):
server-rendered HTML from ``templates/``, with its style inline and no
external asset (a backup server is often air-gapped), readable on a phone.

The figures are ``router.status.as_json``'s, the same ``/api/status`` and
``router status --format json`` give. Every value is escaped (client and
source names come from the machines backed up); the inline style and script
carry a per-response nonce that the Content-Security-Policy names, so no
other script could run on the page.
"""

from __future__ import annotations

import functools
import secrets
from pathlib import Path
from typing import Any, Optional

#: The page body is fetched again this often (seconds; ``?refresh=N`` within bounds).
REFRESH, FASTEST, SLOWEST = 15, 1, 3600
#: A state as a person reads it: words, not colour alone.
WORDS = {
    "failure": "FAILED",
    "overdue": "OVERDUE",
    "incomplete": "INCOMPLETE",
    "warning": "errors",
    "running": "running",
    "never": "never ran",
    "ok": "ok",
    "success": "ok",
}


def content_security_policy(nonce: str) -> str:
    return (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}';"
        " connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none';"
        " frame-ancestors 'none'"
    )


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    from router.status import span
    from router.templates import filesize_filter

    env = Environment(
        loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["span"] = lambda seconds: "" if seconds is None else span(float(seconds))
    env.filters["filesize"] = filesize_filter
    return env


def status_page(
    status: dict[str, Any],
    nonce: str,
    host: str,
    fragment: bool = False,
    refresh: Optional[int] = None,
) -> str:
    """The whole page, or (``fragment``) only its body, for the in-place
    refresh every ``refresh`` seconds."""
    every = min(max(refresh or REFRESH, FASTEST), SLOWEST)
    env = _environment()
    values = {"status": status, "words": WORDS, "nonce": nonce}
    if fragment:
        return env.get_template("status_body.html").render(values)
    return env.get_template("status.html").render(
        values,
        title=f"Backups seen by {host}",
        fragment_url="?fragment=1",
        refresh_ms=every * 1000,
    )


def runs_page(runs: list[Any], host: Optional[str], script: Optional[str], nonce: str) -> str:
    """A backup's recent runs, newest first, with their failed sources."""
    shown = [
        {
            **{k: v for k, v in run.view().items() if k != "started"},
            "started": run.view()["started"].strftime("%Y-%m-%d %H:%M"),
        }
        for run in runs
    ]
    what = " / ".join(part for part in (host, script) if part) or "every backup"
    return (
        _environment()
        .get_template("runs.html")
        .render(runs=shown, words=WORDS, nonce=nonce, title=f"Recent runs of {what}")
    )
