"""Where the router's configuration, rules and state live.

Retrospect starts the handler with an unknown working directory and a bare
environment, so nothing here looks at the working directory, and the only
environment variables read are the documented ``ROUTER_*`` ones.

Order (docs/operating.md): ``--config`` / ``ROUTER_CONFIG``; ``router.toml`` beside
the resolved handler executable; the platform default directory. With no
file at all, a checkout uses its own ``rules/`` and a per-user state
directory.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 in CI
    import tomli as tomllib

from router import locations
from router.events import DATE_ORDERS
from router.trust import admin_problem, private_problem

CONFIG_NAME = locations.CONFIG_NAME
DEFAULT_RETENTION = 90 * 86400.0
#: The shipped default rules (in the wheel, or the checkout's rules/): the
#: rules directory when router.toml names none.
DEFAULT_RULES_DIR = Path(locations.default_rules_dir())


class ConfigError(Exception):
    """The configuration file exists but cannot be used."""


@dataclass(frozen=True)
class Config:
    """The settings every part of the router reads. Paths are absolute."""

    rules_dir: Path
    state_dir: Path
    date_order: str = "mdy"
    #: Where ``log`` without ``to`` appends (default: events.log in the state directory).
    event_log: Optional[Path] = None
    #: How long the journal keeps events, in seconds (``retention = "90d"``).
    retention: float = DEFAULT_RETENTION
    #: Variables a ``run`` program gets from the handler's environment besides
    #: the few every program needs (``run_env = ["ORACLE_HOME"]``).
    run_env: tuple[str, ...] = ()
    #: Where the router reports its own trouble (``admin``: a URL or a list).
    admin: tuple[str, ...] = ()
    #: Where the settings came from, for messages ("built-in defaults" or a path).
    source: str = "built-in defaults"
    #: The whole parsed file, for sections later stages read (delivery, service).
    raw: dict[str, Any] = field(default_factory=dict)


_CACHE_DIR: Optional[Path] = None


def use_cache_dir(directory: Optional[Path]) -> None:
    """Let derived data (Lark's grammar analysis, Apprise's scheme index) be
    cached in ``directory``, the state directory, if it is private.

    These caches are pickles or name modules to import, and the router may
    run as root: a directory other users can write would let them choose
    what it loads. A directory that is missing, shared or not ours is
    simply not used; caching only ever saves time.
    """
    global _CACHE_DIR
    _CACHE_DIR = directory if directory is not None and _is_private(directory) else None


def cache_dir() -> Optional[Path]:
    return _CACHE_DIR


def cache_file(name: str) -> Optional[Path]:
    """``name`` in the cache directory, if there is one and the file is not
    another user's (a pickle planted while the directory was open would run
    code on load): None means "do without the cache"."""
    directory = cache_dir()
    if directory is None:
        return None
    path = directory / name
    return None if private_problem(path) else path


def _is_private(directory: Path) -> bool:
    if not directory.is_dir():
        return False
    if os.name != "posix":
        return True
    # Ours, and no one else may even read it (the caches hold rule text).
    return private_problem(directory) is None and not directory.stat().st_mode & 0o077


def duration_setting(name: str, value: Any) -> float:
    """A duration setting as seconds above zero: a number of seconds, or a
    string like ``"10s"``, ``"5m"``, ``"1h30m"``, ``"90d"`` as rules write them."""
    from router.language.literals import DURATION, parse_duration

    seconds = -1.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and DURATION.fullmatch(value.strip()):
        seconds = parse_duration(value.strip()).total_seconds()
    if not seconds > 0:
        raise ConfigError(
            f"{name} must be a duration above zero (seconds, or like"
            f' "10s", "5m", "1h"), not {value!r}'
        )
    return seconds


def find_config_file(explicit: Optional[str] = None) -> Optional[Path]:
    """The configuration file to use, or None when there is none."""
    found = locations.config_file(explicit)
    return Path(found) if found is not None else None


def load_config(explicit: Optional[str] = None) -> Config:
    """Read the configuration in the documented order, then apply environment overrides."""
    path = find_config_file(explicit)
    raw: dict[str, Any] = {}
    base = Path(locations.package_dir())  # (no file: no relative paths to resolve)
    if path is not None:
        refused = admin_problem(path)
        if refused:
            # router.toml says which rules run, as root: another user's file must not.
            raise ConfigError(f"{path}: refused: {refused}; chmod go-w it, owned by root")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: configuration file not found") from exc
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        base = path.parent

    def resolve(value: Any, fallback: Path) -> Path:
        if value is None:
            return fallback
        return (base / Path(str(value)).expanduser()).resolve()

    state_dir = locations.state_dir_of(raw, str(base))
    config = Config(
        rules_dir=resolve(raw.get("rules_dir"), DEFAULT_RULES_DIR),
        state_dir=Path(state_dir),
        date_order=str(raw.get("date_order", "mdy")),
        event_log=Path(locations.event_log_of(raw, str(base), state_dir)),
        retention=duration_setting(f"{path}: retention", raw["retention"])
        if "retention" in raw
        else DEFAULT_RETENTION,
        run_env=_names(raw.get("run_env", []), f"{path}: run_env"),
        admin=_urls(raw.get("admin"), f"{path}: admin"),
        source=str(path) if path else "built-in defaults",
        raw=raw,
    )
    if config.date_order not in DATE_ORDERS:
        raise ConfigError(
            f"{config.source}: date_order must be one of {', '.join(DATE_ORDERS)},"
            f" not {config.date_order!r}"
        )
    overrides: dict[str, Any] = {}
    if os.environ.get("ROUTER_RULES_DIR"):
        overrides["rules_dir"] = Path(os.environ["ROUTER_RULES_DIR"]).expanduser().resolve()
    return replace(config, **overrides) if overrides else config


def _names(value: Any, what: str) -> tuple[str, ...]:
    """A list of environment variable names."""
    if not isinstance(value, list) or not all(
        isinstance(v, str) and v and "=" not in v and "\0" not in v for v in value
    ):
        raise ConfigError(f"{what} must be a list of environment variable names, not {value!r}")
    return tuple(value)


def _urls(value: Any, what: str) -> tuple[str, ...]:
    """One Apprise URL or a list of them (None: none)."""
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{what} must be an Apprise URL or a list of them")
    return tuple(dict.fromkeys(values))


def event_log_path(config: Config) -> Path:
    """The router's own event log: the setting, or events.log in the state directory."""
    return config.event_log or config.state_dir / locations.EVENT_LOG_NAME


def default_state_dir() -> Path:
    return Path(locations.default_state_dir())
