"""Engines forward (docs/operating.md, "Many engines"): an engine's real
handler posts each event over HTTPS to a real central `router serve`,
performs the local steps it sends back, and, when no router answers (down,
or a certificate it cannot verify), decides the local steps from its own
rules, spools the event, and forwards the spool later, in order, each
event counted once at the centre.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import Site, wait_until, write_program
from sinks import HttpSink, free_port

from router import forwarding

TOKEN = "fleet-s3cret"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the engine's CA file is itself)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def centre(router_at: Any, certificate: tuple[Path, Path], rules: str) -> tuple[Any, int]:
    port = free_port()
    cert, key = certificate
    settings = (
        f'listen = "127.0.0.1:{port}"\nrequire_token = true\ntls_cert = "{cert}"\ntls_key = "{key}"'
    )
    return router_at(rules, settings, env={"ROUTER_TOKEN": TOKEN}, name="centre"), port


def engine(tmp_path: Path, port: int, local_rules: str, ca: Any = None) -> Site:
    (tmp_path / "engine").mkdir()
    site = Site(tmp_path / "engine")
    site.write_rules(local_rules)
    ca_line = f'forward_ca = "{ca}"\n' if ca else ""
    site.config.write_text(
        f'forward = ["https://127.0.0.1:{port}"]\nforward_token = "{TOKEN}"\n'
        f'forward_timeout = "5s"\n{ca_line}' + site.config.read_text(),
        encoding="utf-8",
    )
    return site


def journal(router: Any) -> list[tuple]:
    with sqlite3.connect(str(router.state / "router.sqlite3")) as db:
        return db.execute(
            "SELECT id, name, origin, uid, host, steps, args FROM events ORDER BY id"
        ).fetchall()


FREEZE = 'rule "freeze" on StartSource where client == "SQL01" run "{program}" "{{{{ source }}}}"\n'


def test_an_engine_forwards_over_https_and_performs_the_centre_s_steps(
    tmp_path: Path, router_at: Any, certificate: tuple[Path, Path], http_sink: HttpSink
) -> None:
    froze = tmp_path / "froze.txt"
    program = write_program(
        tmp_path / "freeze.py", f"import sys\nopen({str(froze)!r}, 'a').write(sys.argv[1])\n"
    )
    rules = FREEZE.format(program=program) + (
        f'target ops = "json://{http_sink.address}/"\n'
        'rule "failed" on EndScript where errors > 0 notify ops title "{{ host }}: {{ script }}"\n'
    )
    router, port = centre(router_at, certificate, rules)
    router.start()
    site = engine(tmp_path, port, 'rule "log" on any log "{{ event }}"\n', ca=certificate[0])

    done = site.handler("StartSource", "Nightly", "SQL01/Data", "D:\\SQL", "SQL01", "")
    assert (done.code, done.err) == (0, ""), done
    assert froze.read_text() == "SQL01/Data"  # the centre's step, performed on the engine
    assert site.handler("EndScript", "Nightly", "2", "-519", "lost").code == 0
    (sent,) = http_sink.wait_for(1)
    assert sent.json["title"].endswith(": Nightly")  # the centre notifies, not the engine
    rows = journal(router)
    assert [(r[1], r[2]) for r in rows] == [("StartSource", "http"), ("EndScript", "http")]
    assert all(r[3] for r in rows) and rows[0][4] != "127.0.0.1"  # its uid, its engine's host
    wait_until(lambda: '"ok"' in journal(router)[0][5], "the step's outcome at the centre")
    assert not (site.state / "forward").exists() or forwarding.pending(site.state) == []
    assert not (site.state / "router.sqlite3").exists()  # the engine keeps no journal
    assert TOKEN not in router.log()


def test_no_router_answers_the_engine_decides_locally_and_forwards_later_in_order(
    tmp_path: Path, router_at: Any, certificate: tuple[Path, Path]
) -> None:
    froze = tmp_path / "froze.txt"
    program = write_program(
        tmp_path / "freeze.py", f"import sys\nopen({str(froze)!r}, 'a').write(sys.argv[1])\n"
    )
    router, port = centre(router_at, certificate, 'rule "log" on any log "{{ event }}"\n')
    # The centre is down, and the engine has no CA file yet: nothing goes out.
    site = engine(tmp_path, port, FREEZE.format(program=program))
    first = site.handler("StartSource", "Nightly", "SQL01/Data", "D:\\SQL", "SQL01", "")
    assert first.code == 0 and "decided here" in first.err and "Traceback" not in first.err
    assert froze.read_text() == "SQL01/Data"  # the engine's own rule: the quiesce never waits
    router.start()
    untrusted = site.handler("EndScript", "Nightly", "0", "0", "ok")
    assert untrusted.code == 0 and "CERTIFICATE_VERIFY_FAILED" in untrusted.err
    assert journal(router) == []  # an unverified router is never sent the token
    assert len(forwarding.pending(site.state)) == 2

    # With the CA: the next handler sends the spool first, in order, then its own.
    site.config.write_text(
        f'forward_ca = "{certificate[0]}"\n' + site.config.read_text(), encoding="utf-8"
    )
    assert site.handler("StartScript", "Weekly", "11/28/2026 2:00 AM", "").code == 0
    rows = journal(router)
    assert [r[1] for r in rows] == ["StartSource", "EndScript", "StartScript"]
    assert forwarding.pending(site.state) == []
    steps = json.loads(rows[0][5])  # what the engine did meanwhile, now at the centre
    assert steps and steps[0]["outcome"] == "ok"
    assert froze.read_text() == "SQL01/Data"  # reported, not performed a second time

    # Offered again (a flush that lost its answer): still counted once.
    body = forwarding.event_body(["EndScript", "Nightly", "0", "0", "ok"], rows[1][3])
    forwarding.spool(site.state, body, [])
    flushed = site.router("forward", "--flush", "--format", "json")
    assert json.loads(flushed.out) == {"forwarded": 1, "waiting": 0, "problems": []}
    assert len(journal(router)) == 3
    assert router.stop() == 0


def test_plain_http_off_loopback_is_refused_unless_the_admin_says_so(
    router_at: Any, tmp_path: Path
) -> None:
    assert forwarding.problem_with("http://10.0.0.5:8787", insecure=False)
    assert forwarding.problem_with("http://10.0.0.5:8787", insecure=True) is None
    assert forwarding.problem_with("http://127.0.0.1:8787", insecure=False) is None
    assert forwarding.problem_with("https://10.0.0.5:8787", insecure=False) is None
    port = free_port()
    refused = router_at(
        'rule "log" on any log "x"\n', f'listen = "0.0.0.0:{port}"', env={"ROUTER_TOKEN": TOKEN}
    )
    refused.start(wait=False)
    assert refused.process is not None and refused.process.wait(timeout=30) == 2
    assert "without TLS would carry the token in clear" in refused.log()
