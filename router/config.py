"""router.toml: every setting, typed and checked when the file is read.

One table (``KEYS``) holds every key: its name, its section, what it
holds, its default and what it means. ``load`` reads the file in the
documented order (``--config`` / ``ROUTER_CONFIG``; beside the resolved
handler executable; the platform directory), checks every value against
the table, and returns a read-only ``Config``: an unknown key is a warning
naming it; a value of the wrong type is an error naming the key and the
file. Nothing later parses the file again.

Light to import (os and sys only): the handler's fast path reads the few
settings it needs through ``fast_settings`` in this module, without a TOML
parser, pathlib or dataclasses; the rest is imported when ``load`` runs.

Retrospect starts the handler with an unknown working directory and a bare
environment, so nothing here looks at the working directory, and the only
environment variables read are the documented ``ROUTER_*`` ones.
"""

from __future__ import annotations

import os
import sys

from router import locations, trust

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path
    from typing import Any, Callable, Optional

CONFIG_NAME = locations.CONFIG_NAME
DATE_ORDERS = ("mdy", "dmy", "ymd")
#: The service's local socket kinds.
SOCKET_KINDS = ("auto", "unix", "tcp")


class ConfigError(Exception):
    """The configuration file exists but cannot be used."""


# ---------------------------------------------------------------------------
# Value kinds: each turns what TOML gave into the setting, or says why not
# ---------------------------------------------------------------------------


def _path(value: Any, base: str) -> Any:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a path (a string)")
    from pathlib import Path

    return Path(locations.resolve(base, value))


#: The URL schemes of a state that is a PostgreSQL database (router/store/postgres.py).
DATABASE_SCHEMES = ("postgresql://", "postgres://")


def _state(value: Any, base: str) -> Any:
    """``state``: a PostgreSQL URL (kept as text), or SQLite's directory."""
    if isinstance(value, str) and value.startswith(DATABASE_SCHEMES):
        return value
    return _path(value, base)


def _days(value: Any, base: str) -> float:
    """A number of days (``30``), or a duration (``"30d"``, ``"12h"``): seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value) * 86400.0
    if isinstance(value, str):
        return _duration(value, base)
    raise ValueError('must be a number of days, or a duration like "30d"')


def _duration(value: Any, base: str) -> float:
    from router.units import seconds

    try:
        return seconds(value)
    except ValueError:
        raise ValueError(
            'must be a duration above zero: seconds, or like "10s", "5m", "1h"'
        ) from None


def _count(value: Any, base: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a whole number, at least 1")
    return value


def _rate(value: Any, base: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e9:
        raise ValueError("must be a number of requests per second (0: no limit)")
    return float(value)


def _flag(value: Any, base: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _text(value: Any, base: str) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _one_of(*choices: str) -> Callable[[Any, str], str]:
    def check(value: Any, base: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return str(value)

    return check


def _names(value: Any, base: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and v and "=" not in v and "\0" not in v for v in value
    ):
        raise ValueError("must be a list of environment variable names")
    return tuple(value)


def _urls(value: Any, base: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise ValueError("must be an Apprise URL or a list of them")
    return tuple(dict.fromkeys(values))


def _routers(value: Any, base: str) -> tuple[str, ...]:
    """``forward``: central routers' base URLs, in the order to try them."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(
        isinstance(v, str) and v.startswith(("https://", "http://")) for v in values
    ):
        raise ValueError('must be a list of router URLs, as in ["https://router1:8787"]')
    return tuple(v.rstrip("/") for v in dict.fromkeys(values))


class Key:
    """One setting: where it is, what it holds, its default, what it means."""

    __slots__ = ("name", "section", "kind", "default", "doc")

    def __init__(
        self, name: str, kind: Callable[[Any, str], Any], default: Any, doc: str, section: str = ""
    ) -> None:
        self.name, self.kind, self.default, self.doc, self.section = (
            name,
            kind,
            default,
            doc,
            section,
        )


#: ``run_timeout``'s default: a backup run silent for a day is given up.
RUN_TIMEOUT = 86400.0

#: Every key router.toml may hold. A default of None means "derived" (see load).
KEYS: tuple[Key, ...] = (
    Key("rules_dir", _path, None, "the *.rules files (default: the rules the router ships)"),
    Key("state_dir", _path, None, "journal, outbox, caches, spool (default: the user's data dir)"),
    Key("state", _state, None, "the store: a postgresql:// URL, or SQLite's directory"),
    Key("date_order", _one_of(*DATE_ORDERS), "mdy", "how Retrospect's dates read"),
    Key("event_log", _path, None, "where `log` without `to` writes (default: state_dir)"),
    Key("retention", _duration, 90 * 86400.0, "how long the journal keeps events"),
    Key("run_timeout", _duration, RUN_TIMEOUT, "a run silent this long is closed as incomplete"),
    Key("status_forget", _days, 30 * 86400.0, "days unseen before leaving status and metrics"),
    Key("run_env", _names, (), "variables `run` programs get from the handler's environment"),
    Key("admin", _urls, (), "where the router reports its own trouble"),
    Key("listen", _text, None, "HOST:PORT for HTTP intake, /metrics, /healthz (default: none)"),
    Key("token", _text, None, "bearer token for HTTP (ROUTER_TOKEN wins)"),
    Key("tls_cert", _path, None, "HTTPS: the listener's certificate chain (PEM)"),
    Key("tls_key", _path, None, "HTTPS: the certificate's private key (PEM)"),
    Key("insecure_http", _flag, False, "allow plain HTTP (tokens in clear) off loopback"),
    Key("forward", _routers, (), "central routers this engine's handler sends events to"),
    Key("forward_token", _text, None, "their bearer token (ROUTER_FORWARD_TOKEN wins)"),
    Key("forward_ca", _path, None, "CA certificates (PEM) to verify them by (default: system's)"),
    Key("forward_timeout", _duration, 10.0, "how long the handler tries them, in all"),
    Key("require_token", _flag, False, "require the token on loopback too"),
    Key("local_socket", _one_of(*SOCKET_KINDS), "auto", "unix, or tcp (a loopback port)"),
    Key("rate_limit", _rate, 100.0, "HTTP requests per second per client address (0: none)"),
    Key("max_client_connections", _count, 8, "open HTTP connections per client address"),
    Key("first_delay", _duration, 10.0, "wait after a failed delivery", "delivery"),
    Key("max_delay", _duration, 3600.0, "the longest wait between attempts", "delivery"),
    Key("max_age", _duration, 86400.0, "then a failing notification is a dead letter", "delivery"),
    Key("connect_timeout", _duration, 5.0, "per request", "delivery"),
    Key("read_timeout", _duration, 15.0, "per request", "delivery"),
    Key("concurrency", _count, 8, "sends at once, all URLs together", "delivery"),
    Key("per_url", _count, 4, "sends at once to one URL", "delivery"),
    Key("deadline", _duration, 5.0, "how long the handler may spend delivering", "delivery"),
)
SECTIONS = ("delivery",)
#: Added to connect + read timeout for the wall-clock bound of one send.
SEND_MARGIN = 1.0


class Settings:
    """Read-only values of a group of keys, as attributes."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"settings are read-only ({name})")

    def replace(self, **changes: Any) -> Any:
        unknown = set(changes) - set(self._values)
        if unknown:
            raise TypeError(f"no such setting: {', '.join(sorted(unknown))}")
        return type(self)({**self._values, **changes})

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._values == self._values  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._values.items() if k != "token")
        return f"{type(self).__name__}({shown})"


class Delivery(Settings):
    """[delivery]: how hard and how long to try. Durations in seconds."""

    if TYPE_CHECKING:
        first_delay: float
        max_delay: float
        max_age: float
        connect_timeout: float
        read_timeout: float
        concurrency: int
        per_url: int
        deadline: float

    @property
    def send_bound(self) -> float:
        """The wall-clock limit of one send: the socket timeouts plus a margin."""
        return self.connect_timeout + self.read_timeout + SEND_MARGIN

    @classmethod
    def defaults(cls, **changes: Any) -> Delivery:
        values = {key.name: key.default for key in KEYS if key.section == "delivery"}
        return cls(values).replace(**changes) if changes else cls(values)


class Config(Settings):
    """Every setting, typed. Paths are absolute. Besides the KEYS: ``delivery``
    (the [delivery] table), ``source`` (where the settings came from) and
    ``warnings`` (unknown keys, in words)."""

    if TYPE_CHECKING:  # the attributes, as the table makes them
        rules_dir: Path
        state_dir: Path
        #: The PostgreSQL store's URL (None: SQLite in state_dir). Never shown.
        state_url: Optional[str]
        state: Any
        date_order: str
        event_log: Path
        retention: float
        run_timeout: float
        status_forget: float
        run_env: tuple[str, ...]
        admin: tuple[str, ...]
        listen: Optional[str]
        token: Optional[str]
        tls_cert: Optional[Path]
        tls_key: Optional[Path]
        insecure_http: bool
        forward: tuple[str, ...]
        forward_token: Optional[str]
        forward_ca: Optional[Path]
        forward_timeout: float
        require_token: bool
        local_socket: str
        rate_limit: float
        max_client_connections: int
        delivery: Delivery
        source: str
        warnings: list[str]


def _defaults(base: str) -> dict[str, Any]:
    from pathlib import Path

    values = {key.name: key.default for key in KEYS if not key.section}
    values["rules_dir"] = Path(locations.default_rules_dir())
    values["state_dir"] = Path(locations.state_dir_of({}, base))
    return values


def load(explicit: Optional[str] = None) -> Config:
    """The configuration in the documented order, then the ``ROUTER_*``
    environment overrides. ConfigError when the file cannot be used."""
    found = locations.config_file(explicit)
    raw: dict[str, Any] = {}
    base = locations.package_dir()  # (no file: no relative path to resolve)
    if found is not None:
        raw = _read(found)
        base = os.path.dirname(found)
    values = _defaults(base)
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    warnings: list[str] = []
    where = found or "built-in defaults"
    known = {(key.section, key.name): key for key in KEYS}
    for name, value in raw.items():
        if name in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{name}] must be a table")
            for inner, inner_value in value.items():
                _set(known, name, inner, inner_value, base, where, sections[name], warnings)
        else:
            _set(known, "", name, value, base, where, values, warnings)
    _environment_overrides(values)
    _choose_store(values)
    if "event_log" not in raw:
        from pathlib import Path

        values["event_log"] = Path(values["state_dir"]) / locations.EVENT_LOG_NAME
    delivery = Delivery.defaults(**sections["delivery"])
    if delivery.max_delay < delivery.first_delay:
        raise ConfigError(
            f"{where}: [delivery] max_delay ({delivery.max_delay:g} s) is shorter than"
            f" first_delay ({delivery.first_delay:g} s)"
        )
    return Config({**values, "delivery": delivery, "source": where, "warnings": warnings})


def _read(path: str) -> dict[str, Any]:
    refused = trust.admin_problem(path)
    if refused:
        # router.toml says which rules run, as root: another user's file must not.
        raise ConfigError(f"{path}: refused: {refused}; chmod go-w it, owned by root")
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - 3.9/3.10
        import tomli as tomllib
    try:
        with open(path, encoding="utf-8") as handle:
            return tomllib.loads(handle.read())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: configuration file not found") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _set(
    known: dict[tuple[str, str], Key],
    section: str,
    name: str,
    value: Any,
    base: str,
    where: str,
    into: dict[str, Any],
    warnings: list[str],
) -> None:
    shown = f"[{section}] {name}" if section else name
    key = known.get((section, name))
    if key is None:
        from router.suggest import did_you_mean

        names = [k.name for k in KEYS if k.section == section]
        warnings.append(f"{where}: unknown key {shown}{did_you_mean(name, names)}: ignored")
        return
    try:
        into[name] = key.kind(value, base)
    except ValueError as exc:
        raise ConfigError(f"{where}: {shown} {exc}, not {value!r}") from None


def _choose_store(values: dict[str, Any]) -> None:
    """``state``: a URL is the store (``state_url``), the state directory
    still holding the local caches and spool; a directory is ``state_dir``."""
    state = values.get("state")
    values["state_url"] = None
    if isinstance(state, str):
        values["state_url"] = state
    elif state is not None:
        values["state_dir"] = state


def _environment_overrides(values: dict[str, Any]) -> None:
    from pathlib import Path

    if os.environ.get("ROUTER_RULES_DIR"):
        values["rules_dir"] = Path(os.environ["ROUTER_RULES_DIR"]).expanduser().resolve()
    if os.environ.get("ROUTER_STATE_DIR"):
        values["state_dir"] = Path(locations.state_dir_of({}, ""))
    if os.environ.get("ROUTER_TOKEN"):
        values["token"] = os.environ["ROUTER_TOKEN"]
    if os.environ.get("ROUTER_FORWARD_TOKEN"):
        values["forward_token"] = os.environ["ROUTER_FORWARD_TOKEN"]
    url = os.environ.get("ROUTER_STATE_URL")
    if url:
        if not url.startswith(DATABASE_SCHEMES):
            raise ConfigError("ROUTER_STATE_URL must be a postgresql:// URL")
        values["state"] = url


def defaults() -> Config:
    """The settings without any file (when the file is broken, the handler
    still handles the event with these, and says why)."""
    values = _defaults(locations.package_dir())
    from pathlib import Path

    values["event_log"] = Path(values["state_dir"]) / locations.EVENT_LOG_NAME
    values["state_url"] = None
    return Config(
        {**values, "delivery": Delivery.defaults(), "source": "built-in defaults", "warnings": []}
    )


# ---------------------------------------------------------------------------
# The fast path's reading: two paths, no TOML parser when the file is simple
# ---------------------------------------------------------------------------


class FastSettings:
    """What the handler's fast path needs: where the state directory and the
    event log are (strings). Resolved exactly as ``load`` resolves them."""

    __slots__ = ("state_dir", "event_log")

    def __init__(self, state_dir: str, event_log: str) -> None:
        self.state_dir = state_dir
        self.event_log = event_log


_PATH_KEYS = ("state_dir", "event_log")


def simple_toml_paths(text: str) -> Optional[dict[str, str]]:
    """``state_dir`` and ``event_log`` from router.toml, read without a TOML
    parser (tomllib's import costs more than the rest of the fast path), or
    None when the file is anything but simple: then tomllib reads it.

    Understood: before the first ``[table]``, blank and comment lines and
    ``bare_key = value`` on one line; the two keys' values must be plain
    strings without escapes. Anything else before the first table
    (multi-line strings or arrays, quoted or dotted keys, a key given twice)
    means None. What follows the first table cannot set a top-level key.
    """
    if '"""' in text or "'''" in text:
        return None  # a multi-line string could hide anything
    found: dict[str, str] = {}
    seen: set[str] = set()
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            break
        key, equals, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key or not all(c.isalnum() or c in "_-" for c in key):
            return None
        if not key.isascii() or key in seen:
            return None
        seen.add(key)
        if value[:1] in ("[", "{") and not _balanced(value):
            return None  # a multi-line array
        if key not in _PATH_KEYS:
            continue
        quote = value[:1]
        end = value.find(quote, 1) if quote in ('"', "'") else -1
        rest = value[end + 1 :].strip() if end > 0 else "x"
        if rest and not rest.startswith("#"):
            return None
        content = value[1:end]
        if (quote == '"' and "\\" in content) or any(ord(c) < 32 for c in content):
            return None
        found[key] = content
    return found


def _balanced(value: str) -> bool:
    """Whether the brackets of a one-line array or inline table close on it."""
    depth, quote, escaped = 0, "", False
    for char in value:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            break
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
    return depth == 0 and not quote


def fast_settings(explicit: Optional[str] = None) -> Optional[FastSettings]:
    """The state directory and event log as router.toml sets them, or None
    when the file cannot be read or trusted (the inline path then says why)."""
    path = locations.config_file(explicit)
    raw: Optional[dict[str, Any]] = {}
    base = ""
    if path is not None:
        try:
            if trust.admin_problem(path):
                return None
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            raw = simple_toml_paths(text)
            if raw is None:
                raw = _read(path)
        except Exception:
            return None
        base = os.path.dirname(path)
    assert raw is not None
    state_dir = locations.state_dir_of(raw, base)
    return FastSettings(state_dir, locations.event_log_of(raw, base, state_dir))
