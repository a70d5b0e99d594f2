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

import os

import pytest
from sinks import HttpSink
from test_session import HANDLER, Run, Site, run_process  # tests/ is on sys.path

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX processes, as test_session")

#: Far more than the handler needs; reaching it means it hung.
HANDLER_TIMEOUT = 30


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
