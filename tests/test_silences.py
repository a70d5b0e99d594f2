"""Silences (docs/rules.md, "Silences"): muting notifications for a while
without editing rules, through the real CLI, handler, service and replay.

A silence mutes notifications only (the local steps ``run``, ``abort`` and
``log`` always happen), its condition is checked like a rule's, with
positions inside the quoted argument, and expired silences are kept.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from helpers import Site, call, wait_until, write_program
from sinks import HttpSink, free_port

RULES = """
target ops = "json://{address}/ops"
target admin = "json://{address}/admin"

rule "errors"
on EndScript where errors > 0
  notify ops, admin title "{{{{ script }}}}: {{{{ errors }}}} error(s)"

rule "quiesce"
on StartScript where script == "Nightly"
  run "{program}" "{{{{ script }}}}"
  notify ops title "quiesced"

rule "policy"
on StartSource where client == "LAPTOP-7"
  abort "not in office hours"
  notify ops title "skipped {{{{ client }}}}"

rule "log" on any log "{{{{ event }}}} {{{{ script }}}}"
"""
ERRORS = ["EndScript", "Nightly", "2", "0", "successful"]


def _site(tmp_path: Path, sink: HttpSink) -> Site:
    site = Site(tmp_path)
    program = write_program(
        tmp_path / "quiesce.py",
        f"""
        import sys
        open({str(tmp_path / "quiesced.txt")!r}, "a").write(sys.argv[1] + "\\n")
        """,
    )
    site.write_rules(RULES.format(address=sink.address, program=program))
    return site


def _paths(sink: HttpSink) -> list[str]:
    return sorted(request.path for request in sink.requests)


def _add(site: Site, *args: str) -> int:
    result = site.router("silence", "add", *args)
    assert result.code == 0, result
    return int(result.out.strip())


def test_a_silence_mutes_one_target_and_is_journaled_until_it_expires(
    tmp_path: Path, http_sink: HttpSink
) -> None:
    site = _site(tmp_path, http_sink)
    silence = _add(
        site, 'script == "Nightly" and target == "ops"', "--for", "10d", "--comment", "on leave"
    )
    assert silence == 1

    assert site.handler(*ERRORS).code == 0
    (request,) = http_sink.wait_for(1)
    assert request.path == "/admin"  # ops is silenced, admin is not
    assert [line.split()[2] for line in site.outbox_lines()] == ["admin"]
    (entry,) = site.history()
    (decision,) = [d for d in entry["decisions"] if d.get("label") == "errors"]
    assert decision["silenced_by"] == silence
    assert decision["silenced"] == [{"target": "ops", "silence": silence}]
    shown = site.router("history")
    assert f"silenced by #{silence}: errors to ops (not sent)" in shown.out

    listed = json.loads(site.router("silence", "list", "--format", "json").out)
    assert [(s["id"], s["active"], s["comment"]) for s in listed] == [(1, True, "on leave")]
    assert {"id", "condition", "starts", "ends", "comment", "active"} <= set(listed[0])
    assert listed[0]["condition"] == 'script == "Nightly" and target == "ops"'

    expired = site.router("silence", "expire", str(silence))
    assert (expired.code, expired.out.strip()) == (0, f"silence #{silence} expired")
    assert site.handler(*ERRORS).code == 0
    http_sink.wait_for(3)
    assert _paths(http_sink) == ["/admin", "/admin", "/ops"]

    # Expired silences are kept, for history, and listed with --all.
    assert json.loads(site.router("silence", "list", "--format", "json").out) == []
    kept = json.loads(site.router("silence", "list", "--all", "--format", "json").out)
    assert [(s["id"], s["active"], s["state"]) for s in kept] == [(1, False, "expired")]
    assert "expired" in site.router("silence", "list", "--all").out
    again = site.router("silence", "expire", str(silence))
    assert again.code == 0 and "had ended already" in again.out
    unknown = site.router("silence", "expire", "99")
    assert unknown.code == 1 and "no silence #99" in unknown.err


def test_local_steps_are_never_silenced(tmp_path: Path, http_sink: HttpSink) -> None:
    """A silence over everything: the quiesce program still runs, the abort
    still reaches Retrospect, the log line is still written; only the
    notifications are muted."""
    site = _site(tmp_path, http_sink)
    _add(site, "event exists", "--for", "1h", "--comment", "maintenance")
    assert site.handler("StartScript", "Nightly", "11/28/2026 2:00", "").code == 0
    skip = site.intervention_file("StartSource")
    skipped = site.handler("StartSource", "Nightly", "LAPTOP-7/C", "C:\\", "LAPTOP-7", skip)
    assert skipped.code == 1  # it aborted
    assert (tmp_path / "quiesced.txt").read_text() == "Nightly\n"
    assert "not in office hours" in skip.read_text(encoding="utf-8")
    log = (site.state / "events.log").read_text(encoding="utf-8")
    assert "StartScript Nightly" in log and "StartSource Nightly" in log
    assert site.outbox_lines() == []
    silenced = [d for e in site.history() for d in e["decisions"] if "silenced_by" in d]
    assert [d["label"] for d in silenced] == ["quiesce", "policy"]


def test_a_pending_silence_mutes_nothing_yet(tmp_path: Path, http_sink: HttpSink) -> None:
    site = _site(tmp_path, http_sink)
    starts = (datetime.now() + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    _add(site, 'script == "Nightly"', "--starts", starts, "--for", "2h")
    (listed,) = json.loads(site.router("silence", "list", "--format", "json").out)
    assert (listed["state"], listed["active"]) == ("pending", False)
    assert site.handler(*ERRORS).code == 0
    http_sink.wait_for(2)
    assert _paths(http_sink) == ["/admin", "/ops"]


def test_a_bad_condition_or_time_is_refused_with_its_position(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.write_rules('rule "log" on any log "{{ event }}"\n')
    unknown = site.router("silence", "add", 'script == "N" and clinet == "x"', "--for", "1h")
    assert unknown.code == 2
    assert "condition:1:19: error: unknown field 'clinet' (did you mean 'client'?)" in unknown.err
    assert '    script == "N" and clinet == "x"\n' + " " * 22 + "^~~~~~" in unknown.err
    value = site.router("silence", "add", 'status == "failed"', "--for", "1h")
    assert "condition:1:11:" in value.err and "did you mean 'failure'?" in value.err
    syntax = site.router("silence", "add", 'client = "LAPTOP-7"', "--for", "1h")
    assert syntax.code == 2 and "condition:1:8: error: unexpected '='" in syntax.err
    quotes = site.router("silence", "add", "client == 'LAPTOP-7'", "--for", "1h")
    assert "strings are written in double quotes" in quotes.err
    for when, said in (
        (["--for", "0s"], "is not a duration"),
        (["--for", "soon"], "is not a duration"),
        (["--until", "2020-01-01 00:00"], "would have ended already"),
        (["--until", "tomorrow"], "is not a time"),
    ):
        refused = site.router("silence", "add", 'client == "A"', *when)
        assert refused.code == 2 and said in refused.err, (when, refused)
    both = site.router("silence", "add", 'client == "A"', "--for", "1h", "--until", "2030-01-01")
    assert both.code == 2
    for result in (unknown, value, syntax, quotes):
        assert "Traceback" not in result.err
    # Nothing was kept.
    assert json.loads(site.router("silence", "list", "--all", "--format", "json").out) == []


def test_rule_and_target_are_for_silences_only(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.write_rules(
        'target ops = "json://127.0.0.1:9/x"\non EndScript where rule == "x" notify ops\n'
    )
    checked = site.router("check")
    assert checked.code == 1
    assert "'rule' can be tested in a silence's condition only" in checked.out + checked.err


def test_router_test_and_replay_show_what_is_silenced(tmp_path: Path, http_sink: HttpSink) -> None:
    site = _site(tmp_path, http_sink)
    site.write_rules(
        """
        rule "nightly missed"
        expect EndScript where script == "Nightly" every 1d grace 1h
          notify ops

        rule "per run"
        on EndSource notify admin digest run
        """,
        name="timers.rules",
    )
    silence = _add(site, 'script == "Nightly"', "--for", "3d", "--comment", "moving racks")

    tested = site.router("test", *ERRORS)
    assert tested.code == 0, tested
    assert f"errors: matched, silenced by #{silence}" in tested.out
    assert f"to ops (silenced by #{silence}: not sent)" in tested.out
    report = json.loads(site.router("test", "--format", "json", *ERRORS).out)
    assert [n["silenced_by"] for n in report["notifications"]] == [silence, silence]
    other = json.loads(
        site.router("test", "--format", "json", "EndScript", "Weekly", "1", "0", "x").out
    )
    assert [n["silenced_by"] for n in other["notifications"]] == [None, None]

    # The replay honours the store's silences, at its lines' times: the
    # expectation missed and the run digest due while the silence lasts are
    # muted, and the replay says by which silence.
    now = datetime.now().replace(microsecond=0)
    at = [(now + timedelta(minutes=m)).isoformat() for m in (1, 2, 3, 4, 5)]
    late = (now + timedelta(days=1, hours=2)).isoformat()
    replay = tmp_path / "night.replay"
    replay.write_text(
        f"@{at[0]} StartScript Nightly '11/28/2026 2:00' ''\n"
        f"@{at[1]} StartSource Nightly ws1/C 'C:\\' ws1 ''\n"
        f"@{at[2]} EndSource Nightly ws1/C 'C:\\' ws1 '11/28/2026 2:00' '11/28/2026 2:01'"
        " 100 1024 0 60 0 successful\n"
        f"@{at[3]} EndScript Nightly 0 0 successful\n"
        f"@{at[4]}\n"
        f"@{late}\n",
        encoding="utf-8",
    )
    replayed = site.router("replay", str(replay), "--format", "json")
    assert replayed.code == 0, replayed
    lines = json.loads(replayed.out)
    clock = [line for line in lines if line["event"] == "clock"]
    assert clock[0]["fired"] == ["per run"]
    assert clock[0]["silenced"] == {"per run": silence}
    assert clock[1]["fired"] == ["nightly missed"]
    assert clock[1]["silenced"] == {"nightly missed": silence}
    text = site.router("replay", str(replay)).out
    assert f"(nightly missed: silenced by #{silence})" in text
    assert http_sink.requests == []  # router test and replay send nothing


def test_the_service_serves_silences_and_honours_them(
    tmp_path: Path, http_sink: HttpSink, router_at: Any
) -> None:
    """/silences with the token rule of /events; a silence added over HTTP
    mutes the next event's notification, and /metrics counts it."""
    port = free_port()
    program = write_program(tmp_path / "noop.py", "pass\n")
    rules = RULES.format(address=http_sink.address, program=program)
    router = router_at(
        rules,
        f'listen = "127.0.0.1:{port}"\nrequire_token = true',
        env={"ROUTER_TOKEN": "s3cret-token"},
    ).start()
    token = {"Authorization": "Bearer s3cret-token"}
    body = {"condition": 'target == "ops"', "for": "1h", "comment": "ops on holiday"}
    assert call(port, "POST", "/silences", body)[0] == 401
    assert call(port, "GET", "/silences")[0] == 401
    assert call(port, "DELETE", "/silences/1")[0] == 401

    status, added = call(port, "POST", "/silences", {**body, "created_by": "ann"}, token)
    assert status == 201, added
    silence = added["id"]
    assert added["silence"]["created_by"] == "ann (http 127.0.0.1)"
    status, listed = call(port, "GET", "/silences", headers=token)
    assert status == 200 and [s["id"] for s in listed["silences"]] == [silence]

    event = {"event": "EndScript", "args": ERRORS[1:]}
    assert call(port, "POST", "/events", event, token)[0] == 200
    (request,) = http_sink.wait_for(1)
    assert request.path == "/admin"
    assert [row[5] for row in router.outbox()] == ["admin"]

    def silenced_total() -> float:
        text = call(port, "GET", "/metrics", headers=token)[1]
        found = re.search(r"^router_notifications_silenced_total (\S+)$", text, re.M)
        return float(found.group(1)) if found else -1

    assert wait_until(lambda: silenced_total() == 1, "the silenced notification counted")

    bad = {"condition": 'target == "ops" and clinet == "x"', "for": "1h"}
    status, refused = call(port, "POST", "/silences", bad, token)
    assert status == 400 and "condition:1:21: error: unknown field 'clinet'" in refused["error"]
    assert call(port, "POST", "/silences", {"condition": "x", "when": "1h"}, token)[0] == 400
    assert call(port, "POST", "/silences", {"condition": 'client == "A"'}, token)[0] == 400

    status, expired = call(port, "DELETE", f"/silences/{silence}", headers=token)
    assert status == 200 and expired["silence"]["active"] is False
    assert call(port, "DELETE", "/silences/99", headers=token)[0] == 404
    assert call(port, "GET", "/silences", headers=token)[1]["silences"] == []
    everything = call(port, "GET", "/silences?all=1", headers=token)[1]["silences"]
    assert [(s["id"], s["state"]) for s in everything] == [(silence, "expired")]

    assert call(port, "POST", "/events", event, token)[0] == 200
    http_sink.wait_for(3)
    assert _paths(http_sink) == ["/admin", "/admin", "/ops"]
    assert router.stop() == 0
    assert "s3cret-token" not in router.log()
