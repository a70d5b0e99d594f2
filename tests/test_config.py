"""router.toml read into typed settings (issue 9): every key checked when the
file is read; an unknown key is a warning naming it, a bad value an error
naming the key and the file; the fast path's reading agrees with the full one."""

from __future__ import annotations

from pathlib import Path

import pytest

from router import config
from router.config import KEYS, ConfigError, Delivery, fast_settings


def load(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "router.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return config.load(str(path))


def test_defaults(tmp_path: Path) -> None:
    loaded = load(tmp_path, "")
    assert loaded.date_order == "mdy" and loaded.retention == 90 * 86400
    assert loaded.delivery == Delivery.defaults()
    d = loaded.delivery
    assert (d.first_delay, d.max_delay, d.max_age, d.deadline) == (10.0, 3600.0, 86400.0, 5.0)
    assert (d.connect_timeout, d.read_timeout, d.concurrency) == (5.0, 15.0, 8)
    assert loaded.rate_limit == 100.0 and loaded.max_client_connections == 8
    assert loaded.event_log == loaded.state_dir / "events.log"
    assert loaded.warnings == [] and loaded.source == str(tmp_path / "router.toml")


def test_values_are_typed_and_paths_resolved(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        'rules_dir = "rules"\nstate_dir = "/var/x"\nretention = "30d"\nrun_env = ["A"]\n'
        'admin = "json://h/x"\nlisten = "127.0.0.1:8787"\nrequire_token = true\n'
        '[delivery]\nfirst_delay = "30s"\nmax_delay = "1h"\nconnect_timeout = 2\n'
        'read_timeout = 7.5\nconcurrency = 3\ndeadline = "1m30s"\n',
    )
    assert loaded.rules_dir == tmp_path / "rules" and loaded.state_dir == Path("/var/x")
    assert loaded.retention == 30 * 86400 and loaded.run_env == ("A",)
    assert loaded.admin == ("json://h/x",) and loaded.require_token is True
    assert loaded.delivery == Delivery.defaults(
        first_delay=30.0, connect_timeout=2.0, read_timeout=7.5, concurrency=3, deadline=90.0
    )
    with pytest.raises(AttributeError):
        loaded.retention = 1  # read-only


def test_an_unknown_key_is_a_warning_naming_it(tmp_path: Path) -> None:
    loaded = load(tmp_path, 'retension = "30d"\n[delivery]\nmax_ag = "1d"\n')
    assert loaded.warnings == [
        f"{tmp_path / 'router.toml'}: unknown key retension (did you mean 'retention'?): ignored",
        f"{tmp_path / 'router.toml'}: unknown key [delivery] max_ag (did you mean 'max_age'?):"
        " ignored",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('date_order = "ydm"', "date_order must be one of mdy, dmy, ymd, not 'ydm'"),
        ("retention = 0", "retention must be a duration above zero"),
        ("run_env = 'PATH'", "run_env must be a list of environment variable names"),
        ("admin = 5", "admin must be an Apprise URL or a list of them"),
        ("require_token = 'yes'", "require_token must be true or false"),
        ("rate_limit = -1", "rate_limit must be a number of requests per second"),
        ("max_client_connections = 0", "max_client_connections must be a whole number"),
        ('local_socket = "pipe"', "local_socket must be one of auto, unix, tcp"),
        ('[delivery]\nfirst_delay = "soon"', "[delivery] first_delay must be a duration"),
        ("[delivery]\nread_timeout = true", "[delivery] read_timeout must be a duration"),
        ("[delivery]\nconcurrency = 2.5", "[delivery] concurrency must be a whole number"),
        ('[delivery]\nfirst_delay = "2h"\nmax_delay = "1h"', "max_delay (3600 s) is shorter"),
        ("delivery = 5", "[delivery] must be a table"),
        ("rules_dir = [", "router.toml"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_key_and_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text + "\n")
    assert str(caught.value).startswith(str(tmp_path / "router.toml"))
    assert message in str(caught.value)


def test_environment_overrides(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ROUTER_RULES_DIR", str(tmp_path / "r"))
    monkeypatch.setenv("ROUTER_STATE_DIR", str(tmp_path / "s"))
    monkeypatch.setenv("ROUTER_TOKEN", "from-env")
    loaded = load(tmp_path, 'rules_dir = "x"\nstate_dir = "y"\ntoken = "from-file"\n')
    assert (loaded.rules_dir, loaded.state_dir) == (tmp_path / "r", tmp_path / "s")
    assert loaded.token == "from-env" and loaded.event_log == tmp_path / "s" / "events.log"


@pytest.mark.parametrize(
    "text",
    [
        "",
        'state_dir = "state"\nevent_log = "logs/e.log"  # comment\n',
        "state_dir = '/abs/state'\n[delivery]\nstate_dir = 'not top level'\n",
        'admin = ["json://a", "json://b"]\nstate_dir = "s"\n',
        'admin = [\n  "json://a",\n]\nstate_dir = "s"\n',
        'state_dir = "C:\\\\Router\\\\state"\n',
        'x = """\nstate_dir = "hidden"\n"""\n',
        '"state_dir" = "quoted"\n',
        'delivery.deadline = 5\nstate_dir = "d"\n',
        "listen = '[::1]:8080'\nevent_log = '~/e.log'\n",
    ],
)
def test_the_fast_paths_reading_agrees_with_load(tmp_path, monkeypatch, text) -> None:
    config_file = tmp_path / "etc" / "router.toml"
    config_file.parent.mkdir()
    config_file.write_text(text, encoding="utf-8")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ROUTER_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    for env_state in (None, str(tmp_path / "env-state")):
        if env_state:
            monkeypatch.setenv("ROUTER_STATE_DIR", env_state)
        try:
            loaded = config.load(str(config_file))
        except ConfigError:
            continue  # (the fast path then reads what it can; the inline path says why)
        fast = fast_settings(str(config_file))
        assert fast is not None
        assert Path(fast.state_dir) == loaded.state_dir
        assert Path(fast.event_log) == loaded.event_log


def test_the_module_stays_light() -> None:
    """The handler's fast path reads router.toml through this module: it
    must not bring a TOML parser, pathlib or dataclasses with it."""
    import subprocess
    import sys

    root = str(Path(config.__file__).parent.parent)
    code = (
        f"import sys; sys.path.insert(0, {root!r}); import router.config;"
        "print(sorted(m for m in ('tomllib', 'tomli', 'pathlib', 'dataclasses', 're')"
        " if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_every_key_has_a_kind_a_default_and_words() -> None:
    names = [(key.section, key.name) for key in KEYS]
    assert len(names) == len(set(names))
    assert all(key.doc and callable(key.kind) for key in KEYS)
