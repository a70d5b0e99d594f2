"""Issue 8, item 1: ``router init`` writes a working installation and never
overwrites what an admin already has."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, ROUTER, run_process

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX modes")


def init(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ROUTER, "init", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_config_rules_and_a_private_state_directory(tmp_path: Path) -> None:
    prefix = tmp_path / "My Router"
    done = init("--prefix", str(prefix), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    config, rules, state = prefix / "router.toml", prefix / "rules", prefix / "state"
    assert done.stdout.splitlines() == [
        f"wrote   {config}",
        f"wrote   {rules / 'default.rules'}",
        f"wrote   {rules / 'README.txt'}",
        f"created {state} (private to this user: 0700)",
        "",
        "Next:",
        f"  router check --config '{config}'",
        f"  router test --config '{config}' EndScript \"Daily Backup\" 0 -530"
        ' "backup client not found"',
    ]
    assert (mode(config), mode(rules), mode(state)) == (0o600, 0o755, 0o700)
    shipped = (REPO / "rules" / "default.rules").read_text(encoding="utf-8")
    assert (rules / "default.rules").read_text(encoding="utf-8") == shipped
    assert (
        'rules_dir = "rules"' in config.read_text() and 'state_dir = "state"' in config.read_text()
    )

    # The two next commands work as printed.
    check = run_process([*ROUTER, "check", "--config", str(config)], cwd=tmp_path, env={})
    assert check.code == 0, check.err
    test = run_process(
        [*ROUTER, "test", "--config", str(config), "EndScript", "Daily Backup", "0", "-530", "x"],
        cwd=tmp_path,
        env={},
    )
    assert test.code == 0 and "default: run failed: matched" in test.out, test.out


def test_a_second_init_keeps_every_file_the_admin_has(tmp_path: Path) -> None:
    assert init("--prefix", str(tmp_path), cwd=tmp_path).returncode == 0
    edited = {
        tmp_path / "router.toml": 'rules_dir = "rules"\nstate_dir = "state"\n# mine\n',
        tmp_path / "rules" / "default.rules": "# emptied on purpose\n",
    }
    for path, text in edited.items():
        path.write_text(text, encoding="utf-8")
    done = init("--prefix", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.count("kept") == 4 and "wrote" not in done.stdout
    for path, text in edited.items():
        assert path.read_text(encoding="utf-8") == text


def test_init_puts_each_part_where_it_is_told(tmp_path: Path) -> None:
    config, rules, state = tmp_path / "etc" / "r.toml", tmp_path / "rules", tmp_path / "var"
    done = init(
        "--config", str(config), "--rules-dir", str(rules), "--state-dir", str(state), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    text = config.read_text()
    assert f'rules_dir = "{rules}"' in text and f'state_dir = "{state}"' in text
    assert (rules / "default.rules").is_file() and mode(state) == 0o700


def test_init_where_it_cannot_write_says_so(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    done = init("--prefix", str(tmp_path / "file" / "below"), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("router init: ") and "Traceback" not in done.stderr


def test_a_router_toml_beside_the_checkout_is_ignored_by_git() -> None:
    """The README's install puts router.toml beside the checkout's handler:
    the admin's file, never the project's (it would show in git status)."""
    import shutil

    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    done = subprocess.run(
        ["git", "check-ignore", "-q", "router.toml"], cwd=REPO, capture_output=True, timeout=30
    )
    assert done.returncode == 0


def test_init_writes_a_handler_that_names_its_python_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from router.init import handler_text, layout

    where = layout(prefix=str(tmp_path / "p"))
    text = handler_text(where.config)
    assert text.startswith(f"#!{sys.executable} -IS\n")
    assert repr(str(where.config)) in text
    handler = tmp_path / "RetroEventHandler"
    done = init("--prefix", str(tmp_path / "p"), "--handler", str(handler), cwd=tmp_path)
    assert done.returncode == 0 and f"wrote   {handler}" in done.stdout
    handler.write_text(handler.read_text() + "# the admin's line\n")
    again = init("--prefix", str(tmp_path / "p"), "--handler", str(handler), cwd=tmp_path)
    assert f"kept    {handler}" in again.stdout and "the admin's line" in handler.read_text()
    # A #! line cannot hold a path with a space: a clear refusal, not a broken handler.
    monkeypatch.setattr(sys, "executable", "/opt/my python/bin/python")
    with pytest.raises(ValueError, match="has a space"):
        handler_text(where.config)
