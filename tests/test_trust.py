"""Issue 7: the handler runs as root inside a backup product; it must fail
safe and resist abuse. One test (or more) per finding, through the real
executables, each failing on the code the finding was made against.

Other users' files are made by ``chown`` to nobody (root only); read-only and
full file systems are real ones, in a private mount namespace.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from helpers import (
    HANDLER,
    NEEDS_NAMESPACES,
    NEEDS_ROOT,
    ROUTER,
    Site,
    give_to_other_user,
    in_mount_namespace,
    run_process,
    wait_until,
    write_program,
)
from sinks import HANG, HttpSink

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX owners, modes and processes")


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


class Planted:
    """A pickle that, when loaded, creates ``marker``: code run by whoever
    unpickles it (the attack of item 1, without a shell)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def plant(path: Path, marker: Path, header: bytes = b"") -> None:
    path.write_bytes(header + pickle.dumps(Planted(marker)))
    give_to_other_user(path)


ABORT_RULES = 'on StartScript\n  abort "stopped by the rules"\n'


# ---------------------------------------------------------------------------
# 1. Nothing that can run code is read from a place another user can write
# ---------------------------------------------------------------------------


@NEEDS_ROOT
def test_a_state_directory_owned_by_another_user_is_refused(site: Site) -> None:
    site.write_rules(ABORT_RULES)
    site.state.mkdir(mode=0o700)
    marker = site.root / "pwned"
    plant(site.state / "ruleset.pickle", marker)
    give_to_other_user(site.state)
    file = site.intervention_file("StartScript")
    result = site.handler("StartScript", "Nightly", "2/10/2017 15:39", file)
    assert not marker.exists()
    assert "owned by uid 65534" in result.err and "Traceback" not in result.err
    # The event is still handled: its abort reached Retrospect.
    assert (result.code, file.read_text()) == (1, "stopped by the rules\n")
    assert not (site.state / "router.sqlite3").exists()  # nothing written into it


@NEEDS_ROOT
def test_a_world_writable_state_directory_is_tightened_and_its_planted_cache_refused(
    site: Site,
) -> None:
    site.write_rules(ABORT_RULES)
    site.state.mkdir()
    site.state.chmod(0o1777)  # pre-created open, as /tmp is
    marker = site.root / "pwned"
    plant(site.state / "ruleset.pickle", marker)
    file = site.intervention_file("StartScript")
    result = site.handler("StartScript", "Nightly", "2/10/2017 15:39", file)
    assert not marker.exists()
    assert (result.code, file.read_text()) == (1, "stopped by the rules\n")
    assert "the ruleset cache was not read" in result.err
    assert stat.S_IMODE(site.state.stat().st_mode) == 0o700
    assert [e["event"] for e in site.history()] == ["StartScript"]


@NEEDS_ROOT
def test_a_planted_grammar_cache_is_not_loaded(site: Site) -> None:
    site.write_rules(ABORT_RULES)
    site.state.mkdir(mode=0o700)
    assert site.router("check").code == 0  # Lark writes its cache into the state directory
    (cache,) = site.state.glob("grammar.lark-cache")
    header = cache.read_bytes().split(b"\n", 1)[0] + b"\n"  # the hash Lark checks first
    marker = site.root / "pwned"
    cache.unlink()
    plant(cache, marker, header)
    result = site.router("check")
    assert result.code == 0, result.err
    assert not marker.exists()


@NEEDS_ROOT
def test_the_handler_never_takes_steps_from_a_socket_another_user_could_plant(
    site: Site,
) -> None:
    site.write_rules(ABORT_RULES)
    site.state.mkdir(mode=0o700)
    marker = site.root / "pwned"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(site.state / "router.sock"))
    listener.listen(8)
    listener.settimeout(0.2)
    give_to_other_user(site.state / "router.sock", site.state)
    connections: list[socket.socket] = []
    stop = threading.Event()

    def evil_service() -> None:
        step = {"kind": "run", "rule": "x", "argv": ["/usr/bin/touch", str(marker)]}
        reply = {"ok": True, "event_id": 1, "steps": [step], "exit_hint": 0}
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except socket.timeout:
                continue
            connections.append(connection)
            connection.recv(65536)
            connection.sendall(json.dumps(reply).encode() + b"\n")

    thread = threading.Thread(target=evil_service, daemon=True)
    thread.start()
    try:
        file = site.intervention_file("StartScript")
        result = site.handler("StartScript", "Nightly", "2/10/2017 15:39", file)
    finally:
        stop.set()
        thread.join()
        listener.close()
    assert connections == [] and not marker.exists()
    assert (result.code, file.read_text()) == (1, "stopped by the rules\n")


# ---------------------------------------------------------------------------
# 2. Rules, templates, Apprise configs and programs: root's or the router's
# ---------------------------------------------------------------------------


@NEEDS_ROOT
def test_rule_template_and_config_files_of_another_user_are_refused(site: Site) -> None:
    templates = site.rules / "templates"
    templates.mkdir(mode=0o700)
    (templates / "body.j2").write_text("{{ script }}\n")
    (site.rules / "apprise.yml").write_text("urls:\n  - json://127.0.0.1:9/x\n")
    rules = site.write_rules(
        'target team = config("apprise.yml")\n'
        'on EndScript\n  notify team title "t" body file "templates/body.j2"\n'
    )
    assert site.router("check").code == 0
    for path in (templates / "body.j2", site.rules / "apprise.yml", rules):
        give_to_other_user(path)
        result = site.router("check", "--format", "json")
        assert result.code == 1
        (problem,) = [p for p in json.loads(result.out) if p["code"] == "insecure-permissions"]
        assert "owned by uid 65534" in problem["message"], problem
        os.chown(path, 0, 0)
    assert site.router("check").code == 0


@NEEDS_ROOT
def test_a_program_another_user_owns_is_not_run_and_the_fallback_is(site: Site) -> None:
    ran = site.root / "ran"
    program = write_program(site.root / "freeze", f"open({str(ran)!r}, 'a').write('x')\n")
    site.write_rules(f'on StartScript\n  run "{program}" timeout 10s or abort "could not freeze"\n')
    first = site.intervention_file("StartScript")
    assert site.handler("StartScript", "Nightly", "2/10/2017", first).code == 0
    assert ran.read_text() == "x"
    give_to_other_user(program)  # replaced by another user after the rules were checked
    second = site.intervention_file("StartScript")
    result = site.handler("StartScript", "Nightly", "2/10/2017", second)
    assert (result.code, second.read_text()) == (1, "could not freeze\n")
    assert ran.read_text() == "x"
    step = site.history()[-1]["steps"][0]
    assert step["outcome"] == "error" and "owned by uid 65534" in step["error"]


# ---------------------------------------------------------------------------
# 3. A log path is not a way out of its directory
# ---------------------------------------------------------------------------


def test_a_log_path_stays_in_its_directory(site: Site) -> None:
    logs = site.root / "logs"
    logs.mkdir(mode=0o700)
    outside = site.root / "outside"
    site.write_rules(
        f'on StartSource\n  log "{{{{ source }}}}" to "{logs}/{{{{ client }}}}.log"\n'
        '  abort "still aborted"\n'
    )
    cases = {
        "escape": f"../../../../../../../../{outside}",
        "missing": None,
    }
    for name, client in cases.items():
        args = ["StartSource", "Nightly", "My Computer/x", "/x"]
        file = site.intervention_file("StartSource")
        args += [client, str(file)] if client is not None else []
        result = site.handler(*args)
        assert result.code == (1 if client is not None else 0), (name, result.err)
    assert not outside.with_suffix(".log").exists()
    assert list(logs.iterdir()) == []  # no "/logs/.log" for the missing client
    steps = [entry["steps"][0] for entry in site.history()]
    assert [s["outcome"] for s in steps] == ["error", "error"]
    assert "leaves" in steps[0]["error"] and "undefined" in steps[1]["error"]


def test_a_log_file_that_is_a_link_is_not_written_through(site: Site) -> None:
    logs = site.root / "logs"
    logs.mkdir(mode=0o700)
    victim = site.root / "victim"
    victim.write_text("precious\n")
    (logs / "sym.log").symlink_to(victim)
    os.link(victim, logs / "hard.log")
    site.write_rules(f'on StartSource\n  log "{{{{ source }}}}" to "{logs}/{{{{ client }}}}.log"\n')
    for client in ("sym", "hard"):
        assert site.handler("StartSource", "Nightly", "x", "/x", client).code == 0
    assert victim.read_text() == "precious\n"
    errors = [entry["steps"][0]["error"] for entry in site.history()]
    assert "cannot write" in errors[0] and "hard links" in errors[1]


# ---------------------------------------------------------------------------
# 4. A run argument that does not render exactly never starts the program
# ---------------------------------------------------------------------------


def test_a_run_argument_that_does_not_render_runs_the_fallback_instead(site: Site) -> None:
    calls = site.root / "calls"
    fallback_log = site.root / "fallback.log"
    program = write_program(
        site.root / "stage", f"import sys\nopen({str(calls)!r}, 'a').write(repr(sys.argv[1:]))\n"
    )
    site.write_rules(
        # A field this event can have but did not send (too few arguments).
        f'on StartSource\n  run "{program}" "/backup/staging/{{{{ client }}}}/"'
        f' or log "no client to stage" to "{fallback_log}"\n'
        # A template that fails when it runs.
        f'on StartScript\n  run "{program}" "{{{{ (script | length) / 0 }}}}"'
        ' or abort "bad argument"\n'
    )
    assert site.handler("StartSource", "Nightly", "My Computer/x", "/x").code == 0
    file = site.intervention_file("StartScript")
    assert site.handler("StartScript", "Nightly", "2/10/2017", file).code == 1
    assert not calls.exists()  # never started with a wrong argument
    assert fallback_log.read_text() == "no client to stage\n"
    assert file.read_text() == "bad argument\n"
    outcomes = [entry["steps"][0] for entry in site.history()]
    assert [o["outcome"] for o in outcomes] == ["error", "error"]
    assert "'client' is undefined" in outcomes[0]["error"]
    assert "division by zero" in outcomes[1]["error"]
    test = site.router("test", "StartSource", "Nightly", "My Computer/x", "/x")
    assert "run: not started" in test.out and "or log" in test.out


# ---------------------------------------------------------------------------
# 5. Programs get a minimal environment; their output is stored masked
# ---------------------------------------------------------------------------


def test_programs_get_a_minimal_environment_and_their_output_is_masked(site: Site) -> None:
    seen = site.root / "environment.json"
    secret_url = "json://backup:pw-9f2e7c1a@127.0.0.1:9/hook"
    program = write_program(
        site.root / "show-env",
        f"import json, os\njson.dump(dict(os.environ), open({str(seen)!r}, 'w'))\n"
        f"print('notify me at {secret_url} please')\n",
    )
    site.config.write_text('run_env = ["ORACLE_HOME"]\n' + site.config.read_text())
    site.write_rules(f'target admin = env("ROUTER_NOTIFY_URL")\non EndScript\n  run "{program}"\n')
    env = {"ROUTER_NOTIFY_URL": secret_url, "ORACLE_HOME": "/opt/oracle", "API_TOKEN": "t0k3n"}
    assert site.handler("EndScript", "Nightly", "0", "0", "successful", env=env).code == 0
    environment = json.loads(seen.read_text())
    assert environment["RETRO_SCRIPT"] == "Nightly" and environment["ORACLE_HOME"] == "/opt/oracle"
    assert environment["PATH"] and environment["HOME"] == str(site.home)
    assert "ROUTER_NOTIFY_URL" not in environment and "API_TOKEN" not in environment
    assert "ROUTER_CONFIG" not in environment
    (entry,) = site.history()
    output = entry["steps"][0]["output"]
    assert "notify me at json://" in output and "pw-9f2e7c1a" not in output


# ---------------------------------------------------------------------------
# 8. Local steps never depend on the journal
# ---------------------------------------------------------------------------


def _failing_state_rules(site: Site, sink: HttpSink, log: Path) -> None:
    site.write_rules(
        f'target ops = "json://{sink.address}/ops"\n'
        f'on StartScript\n  log "{{{{ script }}}} started" to "{log}"\n'
        '  abort "not tonight"\n  notify ops title "{{ script }} was stopped"\n'
    )


@NEEDS_NAMESPACES
@pytest.mark.parametrize("trouble", ["read-only", "disk full"])
def test_a_state_directory_that_cannot_be_written_still_gets_every_local_step(
    site: Site, http_sink: HttpSink, trouble: str
) -> None:
    log = site.root / "started.log"
    _failing_state_rules(site, http_sink, log)
    site.state.mkdir(mode=0o700)
    file = site.intervention_file("StartScript")
    where = {"read_only": site.state} if trouble == "read-only" else {"full": site.state}
    command = in_mount_namespace([*HANDLER, "StartScript", "Nightly", "2/10/2017", file], **where)
    result = run_process(command, cwd=site.cwd, env=site.env)
    assert "Traceback" not in result.err
    assert (result.code, file.read_text()) == (1, "not tonight\n"), result.err
    assert log.read_text() == "Nightly started\n"
    (request,) = http_sink.wait_for(1)  # sent directly, the outbox being out of reach
    assert request.json["title"] == "Nightly was stopped"
    assert "event kept in" in result.err
    # The state directory took nothing: the spool is in the user's data directory.
    spooled = list((site.home / ".local" / "share" / "retro-router" / "spool").iterdir())
    assert len(spooled) == 1

    # The file system is back: the next event records the spooled one first,
    # without sending its notification again.
    later = site.intervention_file("StartScript")
    assert site.handler("StartScript", "Weekly", "2/10/2017", later).code == 1
    history = site.history()
    assert [e["fields"]["script"] for e in history] == ["Nightly", "Weekly"]
    assert [s["outcome"] for s in history[0]["steps"]] == ["ok", "ok"]
    assert [r.json["title"] for r in http_sink.wait_for(2)] == [
        "Nightly was stopped",
        "Weekly was stopped",
    ]
    assert site.router("outbox", "--dead").out.strip() == "no dead letters"
    assert "[pending" not in site.router("outbox").out
    assert spooled[0].exists() is False


def test_a_malformed_target_costs_only_its_own_notifications(
    site: Site, http_sink: HttpSink
) -> None:
    site.write_rules(
        'target broken = env("BROKEN_URL")\n'
        f'target ops = "json://{http_sink.address}/ops"\n'
        'on StartScript\n  notify broken title "never"\n'
        'on StartScript\n  abort "aborted all the same"\n'
        'on StartScript\n  notify ops title "{{ script }}"\n'
    )
    file = site.intervention_file("StartScript")
    env = {"BROKEN_URL": "json://user:pw@[::1/"}
    result = site.handler("StartScript", "Nightly", "2/10/2017", file, env=env)
    assert (result.code, file.read_text()) == (1, "aborted all the same\n"), result.err
    assert [r.json["title"] for r in http_sink.wait_for(1)] == ["Nightly"]
    (entry,) = site.history()
    assert any("target 'broken'" in error for error in entry["errors"]), entry["errors"]


# ---------------------------------------------------------------------------
# 9. The deadline is a deadline
# ---------------------------------------------------------------------------

HUNG_DELIVERY = """
[delivery]
connect_timeout = 5
read_timeout = 120
deadline = 2
"""


def test_a_hung_target_does_not_hold_the_process_past_its_deadline(
    site: Site, http_sink: HttpSink
) -> None:
    http_sink.mode = HANG
    site.config.write_text(site.config.read_text().split("[delivery]")[0] + HUNG_DELIVERY)
    site.write_rules(f'target ops = "json://{http_sink.address}/ops"\non EndScript\n  notify ops\n')
    # Hang detection, not a speed figure: read_timeout is 120 s, and Apprise's
    # threads used to be joined at exit; the deadline is 2 s.
    result = run_process(
        [*HANDLER, "EndScript", "Nightly", "0", "0", "successful"],
        cwd=site.cwd,
        env=site.env,
        timeout=30,
    )
    assert result.code == 0
    http_sink.wait_for(1)
    (row,) = site.outbox_lines()
    assert "[pending" in row  # left for later, not lost


def test_a_stopped_service_costs_the_handler_its_deadline_and_the_event_is_journaled_once(
    site: Site, http_sink: HttpSink
) -> None:
    http_sink.mode = HANG
    site.config.write_text(site.config.read_text().split("[delivery]")[0] + HUNG_DELIVERY)
    site.write_rules(f'target ops = "json://{http_sink.address}/ops"\non EndScript\n  notify ops\n')
    service = subprocess.Popen(
        [*ROUTER, "serve"], cwd=site.cwd, env=site.env, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: (site.state / "router.sock").exists(), "the service's socket")
        service.send_signal(signal.SIGSTOP)
        result = run_process(
            [*HANDLER, "EndScript", "Nightly", "0", "0", "successful"],
            cwd=site.cwd,
            env=site.env,
            timeout=30,
        )
        assert result.code == 0, result.err
        assert "the service did not answer" in result.err
        service.send_signal(signal.SIGCONT)
        # The resumed service takes the queued connection first, then this one.
        after = run_process(
            [*HANDLER, "EndScript", "Weekly", "0", "0", "successful"],
            cwd=site.cwd,
            env=site.env,
            timeout=30,
        )
        assert (after.code, after.err) == (0, "")
    finally:
        service.send_signal(signal.SIGCONT)
        http_sink.stop()  # let the hung sends go, or SIGTERM waits out their timeout
        service.terminate()
        service.wait(timeout=30)
    assert [e["fields"]["script"] for e in site.history()] == ["Nightly", "Weekly"]


def test_the_handler_usage_and_version_journal_nothing(site: Site) -> None:
    for option in ("--help", "-h", "--version"):
        result = site.handler(option)
        assert result.code == 0 and result.out and not result.err
    assert not (site.state / "router.sqlite3").exists()
