"""Issue 7, item 10: the tests never read the machine's router.toml nor touch
its state. The README says to put router.toml beside the checkout's
handler; with an ``on any notify`` rule there, running the tests must not
notify anyone, whatever the test's own environment says."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import ISOLATING, MACHINE_VARIABLES
from helpers import REPO, run_process, write_rules

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX processes")


def test_the_session_runs_with_its_own_configuration(machine_kept_out: Path) -> None:
    assert os.environ["ROUTER_CONFIG"] == str(machine_kept_out / "router.toml")
    for name in ISOLATING:
        assert Path(os.environ[name]).is_relative_to(machine_kept_out)
    assert not [name for name in MACHINE_VARIABLES if name in os.environ]


def decoy_checkout(root: Path, sink_address: str) -> Path:
    """A checkout's handler with a router.toml beside it (as the README says
    to install one) whose rules notify on every event, and its state."""
    checkout = root / "checkout"
    checkout.mkdir(mode=0o700)
    handler = checkout / "retroeventhandler"
    shutil.copy2(REPO / "retroeventhandler", handler)
    write_rules(
        checkout / "rules" / "machine.rules",
        f'target ops = "json://{sink_address}/machine"\non any\n  notify ops\n',
    )
    (checkout / "router.toml").write_text(
        'rules_dir = "rules"\nstate_dir = "machine-state"\n', encoding="utf-8"
    )
    return handler


def run_like_a_test(handler: Path, root: Path) -> int:
    """The handler as the tests start it: a bare environment of the test's own."""
    command = [sys.executable, str(handler), "EndScript", "Nightly", "1", "-530", "x"]
    return run_process(command, cwd=root, env={"PATH": "/usr/bin:/bin"}).code


def test_a_router_toml_beside_the_checkout_is_not_read(tmp_path: Path, http_sink) -> None:
    handler = decoy_checkout(tmp_path, http_sink.address)
    assert run_like_a_test(handler, tmp_path) == 0
    assert http_sink.requests == []  # the inline handler delivers before it exits
    assert not (handler.parent / "machine-state").exists()


@pytest.mark.config_discovery
def test_without_the_isolation_the_decoy_would_notify(tmp_path: Path, http_sink) -> None:
    """The decoy above is real: where a test finds router.toml itself, it is read."""
    handler = decoy_checkout(tmp_path, http_sink.address)
    assert run_like_a_test(handler, tmp_path) == 0
    assert len(http_sink.wait_for(1)) == 1
    assert (handler.parent / "machine-state" / "router.sqlite3").is_file()
