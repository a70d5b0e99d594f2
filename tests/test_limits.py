"""Issue 7's limits through the real executables: a regular expression cannot
hang the handler (RE2), ``router check`` says what RE2 cannot do and where,
and a template that runs away is cut short with a journaled note while every
other rule and step of the event still happens.

Each subprocess gets a ``router.toml`` of its own (``ROUTER_CONFIG``), the
rules and state directories, and a home in the test's directory, so nothing
on the machine is read. A hang shows up as the subprocess timeout expiring,
which fails the test; no test asserts a speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

import pytest
from sinks import HttpSink
from test_session import HANDLER, Run, Site, run_process  # tests/ is on sys.path

from router.templates import MAX_OUTPUT, render

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX processes, as test_session")

#: Far more than the handler (or one render) needs; reaching it means it hung.
HANDLER_TIMEOUT = 30
#: Room for the "[template ... exceeded ...]" note after the text.
NOTE_ALLOWANCE = 100
NESTED = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
NESTED_SILENT = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


@pytest.fixture
def site(tmp_path) -> Site:
    return Site(tmp_path)


def handler(site: Site, *args: str) -> Run:
    env = {**site.env, "ROUTER_RULES_DIR": str(site.rules), "ROUTER_STATE_DIR": str(site.state)}
    result = run_process([*HANDLER, *args], cwd=site.cwd, env=env, timeout=HANDLER_TIMEOUT)
    site.outputs += [result.out, result.err]
    return result


def test_a_backtracking_regex_cannot_hang_the_handler(site: Site, http_sink: HttpSink) -> None:
    """``^(a+)+$`` against forty a's and a b took Python's re longer than
    Retrospect waits; with RE2 the rule simply does not match, and the
    event's other rule still notifies."""
    site.write_rules(
        f"""
        target ops = "json://{http_sink.address}/hook"
        rule "nested" on EndScript where script =~ "^(a+)+$"
          notify ops title "nested {{{{ script }}}}"
        rule "every" on EndScript
          notify ops title "every {{{{ script }}}}"
        """
    )
    script = "a" * 40 + "b"
    done = handler(site, "EndScript", script, "0", "0", "successful")
    assert (done.code, done.err) == (0, "")
    (request,) = http_sink.wait_for(1)
    assert request.json["title"] == f"every {script}"

    done = handler(site, "EndScript", "a" * 40, "0", "0", "successful")  # and it does match
    assert (done.code, done.err) == (0, "")
    titles = sorted(r.json["title"] for r in http_sink.wait_for(3))
    assert titles == ["every " + "a" * 40, "every " + script, "nested " + "a" * 40]


def test_router_check_points_into_the_string_at_what_re2_cannot_do(site: Site) -> None:
    path = site.write_rules(
        'on EndScript where script =~ "(a)\\1"\n'
        '  log "backreference"\n'
        'on EndScript where script =~ "Daily(?=x)"\n'
        '  log "lookahead"\n',
        "bad.rules",
    )
    result = site.router("check", str(path))
    assert result.code == 1, result
    # Columns inside the string: the backslash of \1, the "(" of (?=.
    assert f"{path}:1:34: error: invalid regular expression for RE2: " in result.out
    assert "invalid escape sequence: \\1" in result.out
    assert f"{path}:3:36: error: invalid regular expression for RE2: " in result.out
    assert "invalid perl operator: (?=" in result.out
    assert "RE2 has no backreferences" in result.out
    assert "RE2 has no lookahead or lookbehind" in result.out
    assert "re2.cc" not in result.err  # RE2's own logging stays off


# ---------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------

#: Renders argv[1] (as a title when argv[2] says so) and prints the outcome.
#: Its address space is capped, so a runaway render without limits fails
#: with MemoryError instead of filling the machine's memory.
RENDER = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from router.templates import render, render_title
rendered = (render_title if sys.argv[2] == "title" else render)(sys.argv[1], {"script": "Daily"})
print(json.dumps({"length": len(rendered.text), "tail": rendered.text[-120:],
                  "head": rendered.text[:20], "error": rendered.error}))
"""


def render_elsewhere(site: Site, source: str, kind: str = "body") -> dict[str, Any]:
    """``render`` (or ``render_title``) in a fresh interpreter, which must
    finish within the timeout."""
    env = {**site.env, "ROUTER_RULES_DIR": str(site.rules), "ROUTER_STATE_DIR": str(site.state)}
    done = subprocess.run(
        [sys.executable, "-c", RENDER, source, kind],
        cwd=site.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANDLER_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    ("source", "what"),
    [
        (NESTED, "output exceeded 64 KB"),
        (NESTED_SILENT, "range() exceeded 100000 items"),
        ("{{ 'a' * 100000000 }}", "result of '*' exceeded 64 KB"),
        ("{{ [script] * 100000000 }}", "result of '*' exceeded 64 KB"),
        ("{{ 2 ** 100000000 }}", "result of '**' exceeded 64 KB"),
        ("{{ '%0100000000d' % 1 }}", "result of '%' exceeded 64 KB"),
        ("{{ '%s' | format(1) }}{{ '%.100000000f' | format(1) }}", "result of format exceeded"),
        ("{{ '{:>100000000}'.format(1) }}", "result of format exceeded 64 KB"),
        ("{{ '{x:>100000000}'.format_map({'x': 1}) }}", "result of format exceeded 64 KB"),
        ("{{ script | center(100000000) }}", "result of center exceeded 64 KB"),
        ("{{ script.ljust(100000000) }}", "result of ljust() exceeded 64 KB"),
        ("{{ script | indent(100000000) }}", "result of indent exceeded 64 KB"),
        ("{{ 'a b' | wordwrap(1, wrapstring='-' * 60000) }}", "result of wordwrap exceeded"),
        ("{{ range(100000) | join('-' * 60000) }}", "result of join exceeded 64 KB"),
        ("{{ ('x' * 60000) | replace('', '-' * 60000) }}", "result of replace exceeded"),
        ("{{ [1] | batch(100000000, 0) | list | length }}", "result of batch exceeded"),
        ("{{ [1] | slice(100000000) | list | length }}", "result of slice exceeded"),
        ("{{ lipsum(100000000) }}", "exceeded 64 KB"),
        (
            "{% set ns = namespace(s='ab') %}{% for i in range(60) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
            "namespace value 's' exceeded 64 KB",
        ),
        (
            "{% macro twice(n) %}{% if n %}{% set s = twice(n - 1) %}{{ s }}{{ s }}"
            "{% endif %}x{% endmacro %}{{ twice(60) }}",
            "result of twice() exceeded 64 KB",
        ),
        (
            # No range, no output, no call: only the loops themselves check the clock.
            "{% set s = 'x' * 60000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
            "rendering exceeded 1 s",
        ),
    ],
)
def test_a_runaway_template_stops_with_a_note(site: Site, source: str, what: str) -> None:
    result = render_elsewhere(site, source)
    assert result["error"] is not None and what in result["error"], result
    notes = (f"[template {result['error']}: stopped]", f"[template {result['error']}: cut here]")
    assert result["tail"].endswith(notes)
    assert result["length"] <= MAX_OUTPUT + NOTE_ALLOWANCE


def test_output_is_cut_at_the_bound_and_says_so(site: Site) -> None:
    result = render_elsewhere(site, "Start " + NESTED)
    assert result["error"] == "output exceeded 64 KB"
    assert result["head"] == "Start " + "x" * 14  # what came before the cut is kept
    assert result["tail"].endswith("x\n[template output exceeded 64 KB: cut here]")
    assert result["length"] == MAX_OUTPUT + len("\n[template output exceeded 64 KB: cut here]")


def test_a_runaway_title_stays_on_one_line(site: Site) -> None:
    result = render_elsewhere(site, "{{ script }} " + NESTED, "title")
    assert "exceeded" in result["error"] and "\n" not in result["tail"]
    assert result["tail"].endswith("x [template output exceeded 64 KB: cut here]")
    assert result["length"] <= MAX_OUTPUT + NOTE_ALLOWANCE


def test_limits_leave_ordinary_templates_alone() -> None:
    """What templates commonly do renders exactly as in Jinja's own sandbox."""
    from jinja2.sandbox import SandboxedEnvironment

    source = (
        "{% for i in range(3) %}{{ i }}{{ loop.length }}{{ loop.last }}{% endfor %}"
        " {{ range(5) | length }} {{ range(5) | list }} {{ range(3) | reverse | list }}"
        " {{ range(10)[2:4] | list }} {{ 3 in range(5) }} {{ range(3) }}"
        " {{ range(1, 9, 2) | last }}"
        " {{ '%s-%05d' % ('a', 3) }} {{ '{:>5}|{x}'.format(1, x=2) }} {{ 'ab' * 3 }} {{ 2 ** 10 }}"
        " {{ [1, 2] | join(',') }} {{ [{'a': 1}, {'a': 2}] | join(',', attribute='a') }}"
        " {{ 'ab' | center(6) }}| {{ 'x'.ljust(3) }}| {{ 7 % 3 }} {{ 'x' | replace('x', 'y') }}"
        " {{ [1, 2, 3, 4] | slice(2) | list }} {{ [1, 2, 3] | batch(2, 0) | list }}"
        " {{ 'a b c' | wordwrap(2) }} {{ 'a\nb' | indent(2, true) }} {{ '%.1f' | format(2.25) }}"
        " {% for x in [] %}a{% else %}empty{% endfor %} {% for x in [1, 2, 3] if x > 1 %}{{ x }}"
        "{% endfor %} {% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}"
        "{% endfor %}{{ ns.n }} {{ range(4) | map('string') | join('-') }}"
        " {{ '{0}{0}'.format('ab') }}"
    )
    expected = SandboxedEnvironment().from_string(source).render()
    assert render(source, {}).text == expected
    assert render(source, {}).error is None


def test_each_render_has_its_own_budget() -> None:
    """The budget lives in a context variable: one render, or one thread,
    never spends another's."""
    from router.template_limits import _BUDGET, Budget

    spent = Budget(deadline=0.0, range_items=0)  # as if a render had used everything
    token = _BUDGET.set(spent)
    try:
        assert render("{% for i in range(5) %}{{ i }}{% endfor %}", {}).text == "01234"
        results: list[str] = []
        thread = threading.Thread(
            target=lambda: results.append(render("{{ range(3)|list }}", {}).text)
        )
        thread.start()
        thread.join()
        assert results == ["[0, 1, 2]"]
        assert _BUDGET.get() is spent  # and the render put the one around it back
    finally:
        _BUDGET.reset(token)


def test_a_runaway_template_costs_only_its_own_text(site: Site, http_sink: HttpSink) -> None:
    """One rule's body passes a limit: its notification carries the note,
    the event's other rule still notifies, its log step still runs, and the
    journal records the breach as a template error."""
    site.write_rules(
        f"""
        target ops = "json://{http_sink.address}/hook"
        rule "runaway" on EndScript
          notify ops title "runaway {{{{ script }}}}" body "{NESTED_SILENT}"
        rule "calm" on EndScript
          notify ops title "calm {{{{ script }}}}"
          log "logged {{{{ script }}}}"
        """
    )
    done = handler(site, "EndScript", "Daily", "0", "0", "successful")
    assert (done.code, done.err) == (0, "")
    requests = {r.json["title"]: r.json["message"] for r in http_sink.wait_for(2)}
    assert set(requests) == {"runaway Daily", "calm Daily"}
    assert requests["runaway Daily"] == "[template range() exceeded 100000 items: stopped]"
    assert (site.state / "events.log").read_text() == "logged Daily\n"
    (entry,) = site.history()
    where = site.rules / "site.rules"
    assert entry["errors"] == [f"template error at {where}:4:48: range() exceeded 100000 items"]
    assert [step["outcome"] for step in entry["steps"]] == ["ok"]
