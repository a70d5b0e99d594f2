"""Runs: one backup's events as one story (docs/rules.md, "Runs").

The pure part (``router.runs.follow``) with the event sequences Retrospect
sends, then the whole way through: the real handler, the real store, a rule
testing ``run.*`` and a template naming the failed sources.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from helpers import Site
from sinks import HttpSink

from router.runs import CLIENT, PROACTIVE, SCRIPT, Run, follow, overdue

T0 = datetime(2026, 11, 28, 2, 0)


class Engine:
    """The open runs of one router, fed events as the store would keep them."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.minute = 0

    def send(self, name: str, host: str = "engine-a", **fields: Any) -> Run | None:
        self.minute += 1
        fields.update(host=host, received=T0 + timedelta(minutes=self.minute))
        fields.setdefault("status", "success")
        open_runs = [r for r in self.runs.values() if r.open]
        changed, current = follow(name, fields, open_runs)
        for run in changed:
            self.runs[run.id] = run
        return current


def end_source(engine: Engine, script: str, source: str, status: str, **more: Any) -> Run:
    run = engine.send(
        "EndSource",
        script=script,
        source=source,
        client=source.split("/")[0],
        status=status,
        errors=1 if status != "success" else 0,
        bytes=1024,
        files=3,
        **more,
    )
    assert run is not None
    return run


def test_a_script_run_gathers_its_sources_and_ends_at_endscript() -> None:
    engine = Engine()
    started = engine.send("StartScript", script="Nightly")
    assert started is not None and started.kind == SCRIPT and started.open
    engine.send("StartSource", script="Nightly", source="ws1/C")
    end_source(engine, "Nightly", "ws1/C", "success")
    engine.send("StartSource", script="Nightly", source="ws2/C")
    failed = end_source(engine, "Nightly", "ws2/C", "failure")
    assert failed.id == started.id and failed.status == "failure"
    media = engine.send("MediaRequest", backup_set="Set A")  # names no script: the host's run
    assert media is not None and media.id == started.id and media.media_requests == 1
    ended = engine.send("EndScript", script="Nightly", status="failure", errors=1)
    assert ended is not None and not ended.open and ended.ended_by == "EndScript"
    view = ended.view()
    assert view["status"] == "failure" and view["failed_count"] == 1
    assert [s["source"] for s in view["failed"]] == ["ws2/C"]
    # EndScript's one error is ws2's: counted once.
    assert (view["source_count"], view["bytes"], view["files"], view["errors"]) == (2, 2048, 6, 1)
    assert view["ended"] - view["started"] == timedelta(minutes=6)
    assert view["duration"] == 360.0 and view["media_requests"] == 1


def test_status_is_the_worst_of_script_sources_and_fatal_error() -> None:
    engine = Engine()
    engine.send("StartScript", script="A")
    assert end_source(engine, "A", "ws/C", "warning").status == "warning"
    fatal = engine.send("FatalBackupError", script="A", reason="disk full", error_code=-1101)
    assert fatal is not None and fatal.status == "failure"
    assert fatal.view()["fatal"]["reason"] == "disk full"
    clean = Engine()
    clean.send("StartScript", script="B")
    end_source(clean, "B", "ws/C", "success")
    ended = clean.send("EndScript", script="B", errors=0)
    assert ended is not None and ended.status == "success"


def test_hosts_and_scripts_keep_their_own_runs() -> None:
    engine = Engine()
    a = engine.send("StartScript", script="Nightly", host="engine-a")
    b = engine.send("StartScript", script="Nightly", host="engine-b")
    other = engine.send("StartScript", script="Weekly", host="engine-a")
    assert a is not None and b is not None and other is not None
    assert len({a.id, b.id, other.id}) == 3
    run_b = end_source(engine, "Nightly", "ws/C", "failure", host="engine-b")
    assert run_b.id == b.id and engine.runs[a.id].sources == []


def test_a_restarted_script_gives_up_the_run_that_never_ended() -> None:
    engine = Engine()
    first = engine.send("StartScript", script="Nightly")
    second = engine.send("StartScript", script="Nightly")
    assert first is not None and second is not None and first.id != second.id
    given_up = engine.runs[first.id]
    assert given_up.status == "incomplete" and given_up.ended_by == "restarted"


def test_proactive_runs_end_with_the_backup_server_and_client_runs_alone() -> None:
    engine = Engine()
    engine.send("StartBackupServer")
    proactive = engine.send("StartSource", script="Proactive", source="laptop/C")
    assert proactive is not None and proactive.kind == PROACTIVE
    end_source(engine, "Proactive", "laptop/C", "success")
    assert engine.runs[proactive.id].open  # a session lasts until the server stops
    engine.send("StopBackupServer")
    assert not engine.runs[proactive.id].open
    client = Engine()  # a client engine: no StartScript, no backup server
    run = client.send("StartSource", script="Nightly", source="db01/var", host="db01")
    assert run is not None and run.kind == CLIENT
    ended = end_source(client, "Nightly", "db01/var", "success", host="db01")
    assert ended.id == run.id and not ended.open


def test_a_silent_run_is_closed_incomplete_after_run_timeout() -> None:
    engine = Engine()
    run = engine.send("StartScript", script="Nightly")
    assert run is not None
    now = run.last_seen + 3600
    assert overdue([run], now, 7200) == []
    (given_up,) = overdue([run], now, 1800)
    assert given_up.status == "incomplete" and given_up.ended == run.last_seen + 1800


def test_a_number_that_came_as_text_counts_nothing() -> None:
    engine = Engine()
    engine.send("StartScript", script="Nightly")
    ended = engine.send("EndScript", script="Nightly", errors="lots", status="failure")
    assert ended is not None and ended.view()["errors"] == 0 and ended.status == "failure"


RUN_RULES = """\
target sink = "json://{address}/"
on EndScript where run.status == "failure" and run.failed_count > 0
  notify sink title "{{{{ run.script }}}} failed"
    body "{{{{ run.failed | map(attribute='source') | join(', ') }}}} of {{{{ run.source_count }}}}"
target nowhere = "json://127.0.0.1:9/"
rule "sources" on EndSource notify nowhere digest run
"""


def test_the_handler_keeps_runs_and_rules_see_them(tmp_path: Any, http_sink: HttpSink) -> None:
    """Through the real handler (inline) and store: one notification for the
    failed run, naming its failed source, and none for the clean one."""
    site = Site(tmp_path)
    site.write_rules(RUN_RULES.format(address=http_sink.address))
    date = "11/28/2026 2:00 AM"
    for script, status, code, message in (
        ("Nightly", 1, -519, "network communication failed"),
        ("Weekly", 0, 0, "successful"),
    ):
        assert site.handler("StartScript", script, date, site.intervention_file("s")).code == 0
        source = ("EndSource", script, "ws2/C", "C:", "ws2", "1024", "10", "9:00", date, date)
        done = site.handler(*source, date, "Set A", "Normal", "C:", str(status), str(code), message)
        assert done.code == 0, done.err
        assert site.handler("EndScript", script, str(status), str(code), message).code == 0
    (request,) = http_sink.wait_for(1)
    sent = json.loads(request.body)
    assert (sent["title"], sent["message"]) == ("Nightly failed", "ws2/C of 1")
    runs = json.loads(site.router("runs", "--format", "json").out)
    assert [(r["script"], r["status"], r["source_count"]) for r in runs] == [
        ("Weekly", "success", 1),
        ("Nightly", "failure", 1),
    ]
    # router test shows the run an event would join, as the store has it.
    assert site.handler("StartScript", "Monthly", date, site.intervention_file("s")).code == 0
    source = ("EndSource", "Monthly", "ws3/D", "D:", "ws3", "1", "1", "1:00", date, date)
    assert site.handler(*source, date, "Set A", "Normal", "D:", "1", "-519", "lost").code == 0
    shown = site.router("test", "EndScript", "Monthly", "1", "-519", "lost").out
    assert "Monthly on" in shown and "status failure: 1 source(s), 1 failed" in shown
    assert "  failed: ws3/D: lost" in shown
    report = json.loads(site.router("test", "--format", "json", "EndSource", "Monthly").out)
    assert report["run"]["script"] == "Monthly" and report["run"]["failed_count"] == 1
    # ... and the run digest it would join, with what it holds already.
    (digest,) = [r["digest"] for r in report["rules"] if r["rule"] == "sources"]
    assert (digest["window"], digest["collected"]) == ("run", 1)
    assert (
        "(with 1 collected so far), sent as one when the run ends"
        in site.router("test", "EndSource", "Monthly").out
    )


MEDIA_RULES = """\
target ops = "json://127.0.0.1:9/"
rule "media" on MediaRequest notify ops title "{{ backup_set }} needs media" throttle 1d by run
"""


def test_by_run_makes_one_notice_per_run_of_a_repeating_media_request() -> None:
    """Retrospect repeats MediaRequest every 5 minutes while it waits:
    ``throttle ... by run`` notifies once per run, and again in the next."""
    from router.checker import check_text
    from router.dispatch import process
    from router.events import event_from_argv
    from router.loader import build_ruleset
    from router.store import Store

    rules = build_ruleset(check_text(MEDIA_RULES, "media.rules"))
    sent = []
    with Store.in_memory() as store:
        minute = 0
        for script in ("Nightly", "Nightly"):
            minute += 1
            start = ["StartScript", script, "11/28/2026 2:00 AM", "/tmp/if"]
            process(event_from_argv(start, received=T0 + timedelta(minutes=minute)), rules, store)
            for wait in range(4):
                minute += 5
                media = ["MediaRequest", "Set A", "1-Set A", "true", str(wait * 5), "/tmp/if"]
                at = T0 + timedelta(minutes=minute)
                outcome = process(event_from_argv(media, received=at), rules, store)
                sent.append(outcome.plan.matched)
    assert sent == [["media"], [], [], [], ["media"], [], [], []]


HUNG_RULES = """\
target ops = "json://127.0.0.1:9/"
rule "hung" expect EndScript where script == "Nightly" within 6h after StartScript
  notify ops title "{{ run.script }} on {{ run.host }} has run for {{ overdue | duration }}"
"""


def test_a_hung_run_fires_its_expectation_once() -> None:
    """``expect EndScript within 6h after StartScript``: a run still open 6
    hours after its start fires once; a run that ended, or another script's,
    does not."""
    from router.checker import check_text
    from router.dispatch import process
    from router.events import event_from_argv
    from router.loader import build_ruleset
    from router.store import Store
    from router.timers import tick

    rules = build_ruleset(check_text(HUNG_RULES, "hung.rules"))
    with Store.in_memory() as store:
        for script in ("Nightly", "Weekly"):
            start = ["StartScript", script, "11/28/2026 2:00 AM", "/tmp/if"]
            process(event_from_argv(start, host="engine-a", received=T0), rules, store)
        finished = ["StartScript", "Nightly", "11/28/2026 2:00 AM", "/tmp/if"]
        process(event_from_argv(finished, host="engine-b", received=T0), rules, store)
        end = ["EndScript", "Nightly", "0", "0", "successful"]
        at = T0 + timedelta(hours=1)
        process(event_from_argv(end, host="engine-b", received=at), rules, store)

        assert tick(rules, store, now=(T0 + timedelta(hours=5)).timestamp()).fired == []
        late = tick(rules, store, now=(T0 + timedelta(hours=7)).timestamp())
        assert [(f.kind, f.rule) for f in late.fired] == [("expect", "hung")]
        (row,) = store.outbox.rows(limit=10)
        assert row.title == "Nightly on engine-a has run for 7 hours"
        assert tick(rules, store, now=(T0 + timedelta(hours=9)).timestamp()).fired == []


def test_events_that_name_no_script_start_no_run() -> None:
    engine = Engine()
    assert engine.send("StartScript", script="") is None
    assert engine.send("EndSource", source="ws/C") is None
    assert engine.runs == {}


REPORT_RULES = """\
target ops = "json://127.0.0.1:9/"
rule "run report" on EndSource
  notify ops
    title "{{ run.script }}: {{ count }} source(s), {{ run.status }}"
    body "{% for e in events %}{{ e.source }} {{ e.status }}; {% endfor %}"
  digest run
"""


def test_digest_run_sends_one_report_per_run_when_it_ends() -> None:
    """The shape of Retrospect's Email Notifier sample: one report per run
    from every EndSource, sent when the run ends (EndScript)."""
    from router.checker import check_text
    from router.dispatch import process
    from router.events import event_from_argv
    from router.loader import build_ruleset
    from router.store import Store
    from router.timers import tick

    rules = build_ruleset(check_text(REPORT_RULES, "report.rules"))
    date = "11/28/2026 2:00 AM"

    def source(name: str, code: str) -> list[str]:
        status = "0" if code == "0" else "1"
        end = [date, date, date, "Set A", "Normal", "C:", status, code, "x"]
        return ["EndSource", "Nightly", name, "C:", name.split("/")[0], "10", "1", "1", *end]

    with Store.in_memory() as store:
        minute = 0

        def send(argv: list[str]) -> None:
            nonlocal minute
            minute += 1
            at = T0 + timedelta(minutes=minute)
            process(event_from_argv(argv, received=at), rules, store)
            tick(rules, store, now=at.timestamp())

        send(["StartScript", "Nightly", date, "/tmp/if"])
        send(source("ws1/C", "0"))
        send(source("ws2/C", "-519"))
        assert store.outbox.rows(limit=10) == []  # the run is still going
        send(["EndScript", "Nightly", "1", "-519", "x"])
        (row,) = store.outbox.rows(limit=10)
        assert row.title == "Nightly: 2 source(s), failure"
        assert row.body == "ws1/C success; ws2/C failure; "
