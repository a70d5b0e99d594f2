"""Apprise URLs: recognising them and showing them without their secrets.

Target URLs carry credentials (passwords, tokens, webhook keys, header
values). Every place that prints, logs or stores a URL for display goes
through ``mask_url``; nothing else formats a URL for humans.

Apprise is imported lazily: it costs a few hundred milliseconds, which
``router check`` pays only when a rule file names a URL.
"""

from __future__ import annotations

import re
from typing import Optional
from urllib.parse import unquote, urlsplit

MASK = "****"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
#: Query keys whose values are plain settings, safe to show. Everything
#: else (tokens, headers ``+X-Key=``, payload ``:key=``) is masked.
_SAFE_QUERY_KEYS = frozenset(
    "method format overflow retry wait optional region image cto rto verify mode "
    "priority tags to cc bcc from name".split()
)


def scheme_of(url: str) -> Optional[str]:
    match = _SCHEME.match(url.strip())
    return match.group(1).lower() if match else None


def recognise(url: str) -> Optional[str]:
    """None when Apprise can use ``url``; otherwise why not, in words."""
    url = url.strip()
    if not url:
        return "empty URL"
    scheme = scheme_of(url)
    if scheme is None:
        return "not a URL (expected scheme://...)"
    import apprise

    if apprise.Apprise.instantiate(url) is None:
        supported = apprise.Apprise().details()["schemas"]
        schemas = {s for entry in supported for s in entry.get("protocols") or ()}
        schemas |= {s for entry in supported for s in entry.get("secure_protocols") or ()}
        if scheme not in schemas:
            return f"Apprise has no service for '{scheme}://'"
        return f"Apprise cannot use this {scheme}:// URL (a required part is missing or invalid)"
    return None


def _mask_query(query: str) -> str:
    # Split by hand: parse_qsl would turn the "+" of a header key into a space.
    parts = []
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        shown = value if unquote(key).lower() in _SAFE_QUERY_KEYS else MASK
        parts.append(f"{key}={shown}")
    return "&".join(parts)


def mask_url(url: str) -> str:
    """``url`` with every secret replaced by ``****``.

    Apprise's privacy form masks what each service knows to be secret; it
    misses header and payload values in the query, so the query is masked
    here from the original URL, keeping only settings known to be harmless.
    """
    url = url.strip()
    scheme = scheme_of(url)
    if scheme is None:
        return MASK
    split = urlsplit(url)
    masked: Optional[str] = None
    try:
        import apprise

        plugin = apprise.Apprise.instantiate(url)
        if plugin is not None:
            masked = plugin.url(privacy=True).split("?", 1)[0]
    except Exception:  # a URL that breaks a plugin still gets masked below
        masked = None
    if masked is None:
        # No plugin to say which parts are secret: any of them may be a key.
        masked = f"{scheme}://{MASK}"
    query = _mask_query(split.query)
    return f"{masked}?{query}" if query else masked
