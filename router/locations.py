"""Where router.toml, the state directory and the event log are.

Standard library only, with plain string paths (no pathlib, no tomllib):
the handler's fast path imports this module when the service is running,
and every millisecond of its start-up is paid once per Retrospect event.
``router.config`` builds the full configuration on top of it, so the two
paths can never disagree about where things are.
"""

from __future__ import annotations

import os
import sys

# typing costs milliseconds to import; the annotations here are only strings.
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Mapping
    from typing import Any, Optional

CONFIG_NAME = "router.toml"
EVENT_LOG_NAME = "events.log"
#: The service's local socket in the state directory (POSIX).
SOCKET_NAME = "router.sock"
#: Where a service without Unix sockets (Windows) writes its loopback port and token.
ENDPOINT_NAME = "router.endpoint"
#: The SQLite store (with its -wal and -shm files) in the state directory.
DATABASE_NAME = "router.sqlite3"
#: The checked ruleset, cached between handler runs.
RULESET_CACHE_NAME = "ruleset.pickle"
#: Events the journal could not take, kept as files until it can.
SPOOL_DIR = "spool"
#: Each rule file parsed, by its content: an edit re-parses that file only.
PARSED_DIR = "parsed"


def package_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def default_rules_dir() -> str:
    """The shipped default rules: inside the installed package (a wheel
    carries them as router/rules/), or the checkout's rules/ beside router/."""
    inside = os.path.join(package_dir(), "rules")
    if os.path.isdir(inside):
        return inside
    return os.path.join(os.path.dirname(package_dir()), "rules")


def platform_state_dir() -> str:
    """Where ``router init`` puts the state directory by default."""
    if sys.platform == "darwin":
        return os.path.join(platform_config_dir(), "state")
    if sys.platform.startswith("win"):
        return os.path.join(platform_config_dir(), "state")
    return "/var/lib/retro-router"


def platform_config_dir() -> str:
    if sys.platform == "darwin":
        return "/Library/Application Support/RetroRouter"
    if sys.platform.startswith("win"):
        return os.path.join(os.environ.get("PROGRAMDATA", r"C:\ProgramData"), "RetroRouter")
    return "/etc/retro-router"


def default_state_dir() -> str:
    """A per-user data directory, as each platform names it."""
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Application Support", "RetroRouter")
    if sys.platform.startswith("win"):
        base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
        return os.path.join(base, "RetroRouter")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    return os.path.join(base, "retro-router")


def resolve(base: str, value: Any) -> str:
    """``value`` as an absolute path, relative to ``base`` (the config file's directory)."""
    return os.path.realpath(os.path.join(base, os.path.expanduser(str(value))))


def config_file(explicit: Optional[str] = None) -> Optional[str]:
    """router.toml in the documented order (docs/operating.md): ``--config`` / ``ROUTER_CONFIG``;
    beside the resolved handler executable; the platform default. None
    when there is none (an explicit path is returned even if missing, so
    the caller can say so)."""
    chosen = explicit or os.environ.get("ROUTER_CONFIG")
    if chosen:
        return os.path.realpath(os.path.expanduser(chosen))
    candidates = []
    if sys.argv and sys.argv[0]:
        candidates.append(os.path.join(os.path.dirname(os.path.realpath(sys.argv[0])), CONFIG_NAME))
    candidates.append(os.path.join(platform_config_dir(), CONFIG_NAME))
    return next((c for c in candidates if os.path.isfile(c)), None)


def state_dir_of(raw: Mapping[str, Any], base: str) -> str:
    """The state directory: ``ROUTER_STATE_DIR``, else the setting, else the default."""
    if os.environ.get("ROUTER_STATE_DIR"):
        return os.path.realpath(os.path.expanduser(os.environ["ROUTER_STATE_DIR"]))
    if raw.get("state_dir") is not None:
        return resolve(base, raw["state_dir"])
    return default_state_dir()


def event_log_of(raw: Mapping[str, Any], base: str, state_dir: str) -> str:
    """The router's own event log: the setting, else events.log in the state directory."""
    if raw.get("event_log"):
        return resolve(base, raw["event_log"])
    return os.path.join(state_dir, EVENT_LOG_NAME)
