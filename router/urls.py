"""Apprise URLs: recognising them and showing them without their secrets.

Target URLs carry credentials (passwords, tokens, webhook keys, header
values). Every place that prints, logs or stores a URL for display goes
through ``mask_url``; nothing else formats a URL for humans.

Apprise is imported lazily: it costs a few hundred milliseconds, which
``router check`` pays only when a rule file names a URL.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import re
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

from router import trust
from router.trust import Untrusted, write_private

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


# ---------------------------------------------------------------------------
# Instantiating plugins without loading all of Apprise's
# ---------------------------------------------------------------------------


class SchemeIndex:
    """Scheme -> ``module:Class`` of the Apprise plugin that serves it.

    Apprise imports all of its 130-odd plugin modules the first time it
    parses any URL (about 0.2 s, most of a handler run). The index lets the
    handler import only the plugin a URL needs. It is built once by letting
    Apprise load everything, and kept, given a private directory, in a file
    there per Apprise version (it names modules to import: a file there
    that another user owns is never read).
    """

    def __init__(self) -> None:
        self.cache_dir: Optional[Path] = None
        self._index: Optional[dict[str, str]] = None

    def use_cache_dir(self, directory: Optional[Path]) -> None:
        ok = directory is not None and trust.cache_dir_ok(directory)
        self.cache_dir = Path(directory) if ok and directory is not None else None

    def _file(self) -> Optional[Path]:
        if self.cache_dir is None:
            return None
        import apprise

        path = self.cache_dir / f"apprise-{apprise.__version__}-schemes.json"
        return None if trust.private_problem(path) else path

    def get(self, scheme: str) -> Optional[str]:
        return self.index().get(scheme)

    def index(self) -> dict[str, str]:
        if self._index is not None:
            return self._index
        path = self._file()
        if path is not None:
            try:
                self._index = json.loads(path.read_text(encoding="utf-8"))
                return self._index
            except (OSError, ValueError):
                pass
        from apprise.manager_plugins import NotificationManager

        manager = NotificationManager()
        index = {
            schema: f"{manager[schema].__module__}:{manager[schema].__qualname__}"
            for schema in manager.schemas()
        }
        self._index = index
        if path is not None:
            # 0600 like every file in the state directory (SECURITY.md).
            with contextlib.suppress(OSError, Untrusted):
                write_private(path, json.dumps(index).encode("utf-8"))
        return index


#: The process's scheme index (plugin_for and the functions on it use it).
SCHEMES = SchemeIndex()


def plugin_for(url: str) -> Any:
    """The Apprise plugin instance for ``url``, or None if Apprise cannot use it.

    Same result as ``apprise.Apprise.instantiate(url)``; through the scheme
    index when it knows the scheme, so only that plugin's module is imported.
    Its asset sends in the caller's thread: Apprise would otherwise start a
    thread pool for every notification (the delivery scheduler has its own
    threads; the pool cost more than a local send does).
    """
    import apprise

    asset = apprise.AppriseAsset(async_mode=False)
    scheme = scheme_of(url)
    entry = SCHEMES.get(scheme or "")
    if entry is not None:
        module_name, _, class_name = entry.partition(":")
        try:
            plugin_class = getattr(importlib.import_module(module_name), class_name)
            if not getattr(plugin_class, "enabled", True):
                return None  # its optional dependencies are missing, as Apprise would say
            results = plugin_class.parse_url(url.replace("/#", "/%23"))
            if not results:
                return None
            results["tag"] = set()
            results["asset"] = asset
            return plugin_class(**results)
        except Exception:  # a plugin that refuses the URL, or an index gone stale
            pass
    return apprise.Apprise.instantiate(url, asset=asset)


def recognise(url: str) -> Optional[str]:
    """None when Apprise can use ``url``; otherwise why not, in words."""
    url = url.strip()
    if not url:
        return "empty URL"
    scheme = scheme_of(url)
    if scheme is None:
        return "not a URL (expected scheme://...)"
    import apprise

    if plugin_for(url) is None:
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


@functools.lru_cache(maxsize=512)
def mask_url(url: str) -> str:
    """``url`` with every secret replaced by ``****``.

    Apprise's privacy form masks what each service knows to be secret; it
    misses header and payload values in the query, so the query is masked
    here from the original URL, keeping only settings known to be harmless.
    Remembered per URL: every notification's outbox row shows its URL
    masked, and building the plugin to ask costs more than the rest of it.
    """
    url = url.strip()
    scheme = scheme_of(url)
    if scheme is None:
        return MASK
    try:
        split = urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL" and the like: nothing can be shown of it
        return f"{scheme}://{MASK}"
    masked: Optional[str] = None
    try:
        plugin = plugin_for(url)
        if plugin is not None:
            masked = plugin.url(privacy=True).split("?", 1)[0]
    except Exception:  # a URL that breaks a plugin still gets masked below
        masked = None
    if masked is None:
        # No plugin to say which parts are secret: any of them may be a key.
        masked = f"{scheme}://{MASK}"
    query = _mask_query(split.query)
    return f"{masked}?{query}" if query else masked


def hides_secret(url: str) -> bool:
    """Whether masking ``url`` hides anything (a password, a token, a header
    value), as opposed to only normalising it (a trailing slash)."""
    masked = mask_url(url)
    return MASK in masked or "..." in masked
