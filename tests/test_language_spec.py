"""docs/rules.md is the contract: its examples must check clean and mean what
they say.

tests/test_docs.py runs every example of docs/ (each rules block checked,
each console block's output compared with the real one). This module reads
docs/rules.md's first example, "At a glance", and asserts what it means,
then tests the language's tables row by row with small examples whose
parsed form is asserted, not only "no errors".
"""

from __future__ import annotations

import re
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import DOCS, Block, code_blocks, doc_blocks, write_rules

from router.actions import Abort, Log, Notify, Run, Stop
from router.checker import check_paths, check_text
from router.language import nodes as n
from router.language.parser import parse_text
from router.templates import environment


def assert_clean(result, allowed: set = frozenset()) -> None:
    problems = [d for d in result.diagnostics if d.is_error or (d.code not in allowed)]
    assert problems == [], "\n".join(f"{d.line}:{d.column} {d.code}: {d.message}" for d in problems)


# ---------------------------------------------------------------------------
# docs/rules.md's own examples
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def glance() -> str:
    """The page's first example, "At a glance": a whole rule file."""
    return doc_blocks("rules.md", "rules")[0].text


def test_code_block_extraction() -> None:
    markdown = (
        "Intro\n\n```rules\non any\n  stop\n```\n\nText:\n\n"
        "    indented, not a block\n\n1. item\n\n   ```console\n   $ router check\n   ```\n"
    )
    assert code_blocks(markdown, "p.md") == [
        Block("p.md", 4, ("rules",), "on any\n  stop\n"),
        Block("p.md", 15, ("console",), "$ router check\n"),
    ]
    assert code_blocks("```rules invalid\nx\n```\n")[0].info == ("rules", "invalid")


def test_rules_md_has_rule_examples_and_shows_router_check() -> None:
    assert len(doc_blocks("rules.md", "rules")) >= 10
    shown = [b.text for b in doc_blocks("rules.md", "console") if "$ router check" in b.text]
    # A diagnostic as the reader will meet it: where, what, the line, a caret, a hint.
    assert any(
        ": error: unknown field" in text and "^~" in text and "hint:" in text for text in shown
    )


def test_rules_md_lists_every_reserved_word() -> None:
    from router.language.syntax_errors import reserved_words

    text = (DOCS / "rules.md").read_text(encoding="utf-8")
    listed = text.split("These words are reserved", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"`(\w+)`", listed)) == reserved_words()


def test_at_a_glance_example_means_what_it_says(glance: str, monkeypatch) -> None:
    monkeypatch.delenv("RETRO_CHAT_URL", raising=False)
    rule_file, diagnostics = parse_text(glance, "glance.rules")
    assert diagnostics == []
    statements = rule_file.statements
    targets = {s.name: s for s in statements if isinstance(s, n.TargetDef)}
    assert set(targets) == {"ops", "chat", "pager", "team"}
    assert [s.kind for s in targets["pager"].sources] == ["url", "url"]
    assert targets["chat"].sources[0].kind == "env"
    assert targets["chat"].sources[0].value == "RETRO_CHAT_URL"
    team = targets["team"].sources[0]
    assert (team.kind, team.value, team.tag) == ("config", "/etc/apprise.yml", "backup")

    rules = [s for s in statements if isinstance(s, n.Rule)]
    named = next(r for r in rules if r.name == "script failed")
    assert named.options[0].kind == "throttle"
    assert named.options[0].window == timedelta(hours=1)
    assert [f.name for f in named.options[0].by] == ["script"]
    body = named.actions[0].body
    # Triple-quoted: common indentation removed, closing-quote line dropped.
    assert body.source.splitlines()[0].startswith("{{ script }} stopped with error")
    assert body.source.splitlines()[1].startswith("on {{ host }}")

    expect = next(r for r in rules if r.is_expect)
    assert (expect.every, expect.grace) == (timedelta(hours=24), timedelta(hours=2))
    assert rules[-1].any_event
    assert isinstance(rules[-1].actions[0], Log)
    assert rules[-1].actions[0].path.source == "/var/log/retrospect-events.log"
    freeze = next(r for r in rules if any(isinstance(a, Run) and a.fallback for a in r.actions))
    run = freeze.actions[0]
    assert run.program.source == "/opt/scripts/sql-freeze"
    assert [a.source for a in run.args] == ["{{ source_path }}"]
    assert run.timeout == timedelta(minutes=2)
    assert isinstance(run.fallback, Abort)


# ---------------------------------------------------------------------------
# Helpers for the table rows
# ---------------------------------------------------------------------------


def parse_ok(text: str, path: str = "t.rules") -> list:
    rule_file, diagnostics = parse_text(textwrap.dedent(text), path)
    assert diagnostics == [], [d.message for d in diagnostics]
    return rule_file.statements


def check_ok(text: str, allowed: set = frozenset()) -> None:
    assert_clean(check_text(textwrap.dedent(text), "t.rules"), allowed)


def condition(text: str, event: str = "EndSource") -> n.Condition:
    rule_text = f"on {event} where {text}\n  stop\n"
    check_ok(rule_text)
    (rule,) = parse_ok(rule_text)
    return rule.condition


def literal(text: str) -> n.Literal:
    """The right-hand literal of ``x == <text>`` (parsed only)."""
    (rule,) = parse_ok(f"on EndSource where x == {text}\n  stop\n")
    return rule.condition.right


def shape(cond: n.Condition) -> object:
    """A condition without positions: nested tuples a test can compare."""
    if isinstance(cond, n.BoolOp):
        return (cond.op, *[shape(c) for c in cond.operands])
    if isinstance(cond, n.Not):
        return ("not", shape(cond.operand))
    if isinstance(cond, n.Reference):
        return cond.name
    if isinstance(cond, n.Compare):
        return (cond.op, _operand(cond.left), _operand(cond.right))
    if isinstance(cond, n.Pattern):
        return (cond.op, cond.field.name, cond.pattern.value)
    if isinstance(cond, n.Member):
        values = [v.value for v in cond.values.value]
        return ("not in" if cond.negated else "in", cond.field.name, values)
    if isinstance(cond, n.Between):
        return ("between", cond.field.name, _operand(cond.low), _operand(cond.high))
    if isinstance(cond, n.Exists):
        return ("exists", cond.field.name)
    raise AssertionError(cond)


def _operand(operand: n.Operand) -> object:
    return operand.name if isinstance(operand, n.Field) else operand.value


# ---------------------------------------------------------------------------
# Statements
# ---------------------------------------------------------------------------


def test_target_sources(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RR_SPEC_URLS", "json://localhost:9/ json://localhost:10/,json://h/")
    (tmp_path / "apprise.yml").write_text(
        "urls:\n  - json://localhost:9/:\n    - tag: backup\n", encoding="utf-8"
    )
    text = (
        'target one = "json://localhost:9/"\n'
        'target many = "json://localhost:9/", "ntfy://ntfy.example.com/backups"\n'
        'target secret = env("RR_SPEC_URLS")\n'
        'target tagged = config("apprise.yml", tag="backup")\n'
        'target whole = config("apprise.yml")\n'
        "on EndScript\n"
        "  notify one, many, secret, tagged, whole\n"
    )
    rules = write_rules(tmp_path / "t.rules", text)
    assert_clean(check_paths([rules]))
    targets = parse_ok(text)[:5]
    assert [t.name for t in targets] == ["one", "many", "secret", "tagged", "whole"]
    assert [(s.kind, s.value) for s in targets[1].sources] == [
        ("url", "json://localhost:9/"),
        ("url", "ntfy://ntfy.example.com/backups"),
    ]
    assert (targets[2].sources[0].kind, targets[2].sources[0].value) == ("env", "RR_SPEC_URLS")
    assert (targets[3].sources[0].value, targets[3].sources[0].tag) == ("apprise.yml", "backup")
    assert (targets[4].sources[0].kind, targets[4].sources[0].tag) == ("config", None)
    assert targets[0].name_span.line == 1 and targets[0].name_span.column == 8


def test_define_stands_anywhere_a_condition_can() -> None:
    text = """\
        define nightly = script matches "Nightly*" or script matches "Daily*"
        define bad = nightly and status == "failure"
        on EndScript where nightly
          stop
        on EndScript where not nightly and (bad or errors > 0)
          stop
        """
    check_ok(text)
    nightly, bad, first, second = parse_ok(text)
    assert isinstance(nightly, n.Define) and nightly.name == "nightly"
    assert shape(nightly.condition) == (
        "or",
        ("matches", "script", "Nightly*"),
        ("matches", "script", "Daily*"),
    )
    assert shape(bad.condition) == ("and", "nightly", ("==", "status", "failure"))
    assert shape(first.condition) == "nightly"
    assert shape(second.condition) == (
        "and",
        ("not", "nightly"),
        ("or", "bad", (">", "errors", 0)),
    )


def test_rule_forms_name_events_where_actions_options() -> None:
    text = """\
        target ops = "json://localhost:9/"
        rule "failures"
        on EndScript, EndSource where status == "failure"
          notify ops
          log "failed"
          throttle 10m by script
        on StartSource
          stop
        """
    check_ok(text)
    _, named, bare = parse_ok(text)
    assert named.name == "failures" and named.label == "failures"
    assert [name for name, _ in named.events] == ["EndScript", "EndSource"]
    assert [type(a) for a in named.actions] == [Notify, Log]
    assert named.span.line == 2  # a named rule starts at `rule`
    assert bare.name is None and bare.condition is None
    assert bare.label == "t.rules:7"
    assert not bare.is_expect


def test_unnamed_rule_label_is_file_and_line(tmp_path) -> None:
    path = write_rules(tmp_path / "ops.rules", "# comment\n\non EndScript\n  stop\n")
    result = check_paths([path])
    assert_clean(result)
    (rule,) = result.rule_files[0].statements
    assert rule.label == "ops.rules:3"  # the file's name: stable wherever the directory is


def test_on_any() -> None:
    text = "on any\n  log \"{{ event }} {{ args | join(' ') }}\"\n"
    check_ok(text)
    (rule,) = parse_ok(text)
    assert rule.events == () and rule.any_event


def test_multiple_events_and_aliases() -> None:
    # SchedStop = StopSched, FatalErrorBackup = FatalBackupError: both pass an
    # intervention file, so abort is allowed, and their own fields are known.
    text = """\
        on SchedStop, FatalErrorBackup where script == "Nightly"
          abort "not tonight"
        on FatalErrorBackup where error_zone == "backup"
          log "{{ error_zone }}"
        on SchedStop where date exists
          stop
        """
    check_ok(text)
    first, second, _ = parse_ok(text)
    assert [name for name, _ in first.events] == ["SchedStop", "FatalErrorBackup"]
    assert second.events[0][1].column == 4


def test_alias_and_canonical_name_are_the_same_event() -> None:
    result = check_text("on StopSched, SchedStop\n  stop\n", "t.rules")
    assert [(d.code, d.line, d.column) for d in result.diagnostics] == [("duplicate-event", 1, 15)]


def test_expect_every_grace_and_pinned_fields() -> None:
    text = """\
        target ops = "json://localhost:9/"
        rule "daily done"
        expect EndScript where script == "Daily Backup" every 24h grace 2h
          notify ops title "{{ script }} late by {{ overdue | duration }}, last {{ last }}"
        expect EndSource every 1w
          notify ops
        """
    check_ok(text)
    _, daily, weekly = parse_ok(text)
    assert daily.is_expect and daily.name == "daily done"
    assert (daily.every, daily.grace) == (timedelta(days=1), timedelta(hours=2))
    assert shape(daily.condition) == ("==", "script", "Daily Backup")
    assert (weekly.every, weekly.grace) == (timedelta(weeks=1), None)


def test_comments_and_free_indentation_do_not_change_meaning() -> None:
    one_line = (
        'target ops = "json://localhost:9/" '
        'on EndScript where errors > 0 notify ops title "x" stop\n'
    )
    spread = """\
        # a comment on its own line
        target ops =
                  "json://localhost:9/"   # trailing comment
        on EndScript
        where errors
          > 0           # the condition goes on
                  notify ops
            title "x"
        stop
        """
    check_ok(one_line)
    check_ok(spread)
    a, b = parse_ok(one_line), parse_ok(spread)
    assert [type(s) for s in a] == [type(s) for s in b] == [n.TargetDef, n.Rule]
    assert shape(a[1].condition) == shape(b[1].condition) == (">", "errors", 0)
    assert [type(x) for x in a[1].actions] == [type(x) for x in b[1].actions] == [Notify, Stop]
    assert a[1].actions[0].title.source == b[1].actions[0].title.source == "x"


def test_hash_inside_a_string_is_not_a_comment() -> None:
    (rule,) = parse_ok('on EndScript\n  log "#1 {{ script }}"\n')
    assert rule.actions[0].text.source == "#1 {{ script }}"


# ---------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ('client == "SQL01"', ("==", "client", "SQL01")),
        ('client != "SQL01"', ("!=", "client", "SQL01")),
        ("errors < 1", ("<", "errors", 1)),
        ("errors <= 1", ("<=", "errors", 1)),
        ("errors > 1", (">", "errors", 1)),
        ("errors >= 1", (">=", "errors", 1)),
        ("0 < errors", ("<", 0, "errors")),
        ("duration > 5m", (">", "duration", timedelta(minutes=5))),
        ("errors == error_code", ("==", "errors", "error_code")),
        ('source_end > "2016-11-21 18:06"', (">", "source_end", "2016-11-21 18:06")),
        ('source_end < "11/21/2016 18:06"', ("<", "source_end", "11/21/2016 18:06")),
        ('client matches "*-laptop"', ("matches", "client", "*-laptop")),
        ('client matches "pc-[abc]?"', ("matches", "client", "pc-[abc]?")),
        ('source =~ "^My Computer/.*HD$"', ("=~", "source", "^My Computer/.*HD$")),
        ('error_message contains "trouble"', ("contains", "error_message", "trouble")),
        ('weekday in ["sat", "sun"]', ("in", "weekday", ["sat", "sun"])),
        ('weekday not in ["sat", "sun"]', ("not in", "weekday", ["sat", "sun"])),
        ("errors in [1, 2, 3]", ("in", "errors", [1, 2, 3])),
        ("hour between 9 and 17", ("between", "hour", 9, 17)),
        ("kb exists", ("exists", "kb")),
        ("previous.status exists", ("exists", "previous.status")),
        ('previous.status == "failure"', ("==", "previous.status", "failure")),
        ("streak >= 3", (">=", "streak", 3)),
        ("not errors > 0", ("not", (">", "errors", 0))),
        ("not not kb exists", ("not", ("not", ("exists", "kb")))),
        (
            "errors > 0 and kb > 0 and files > 0",
            ("and", (">", "errors", 0), (">", "kb", 0), (">", "files", 0)),
        ),
        ("errors > 0 or kb > 0", ("or", (">", "errors", 0), (">", "kb", 0))),
        # `and` binds tighter than `or`, on either side.
        (
            "errors > 0 or kb > 0 and files > 0",
            ("or", (">", "errors", 0), ("and", (">", "kb", 0), (">", "files", 0))),
        ),
        (
            "errors > 0 and kb > 0 or files > 0",
            ("or", ("and", (">", "errors", 0), (">", "kb", 0)), (">", "files", 0)),
        ),
        # Parentheses override it.
        (
            "(errors > 0 or kb > 0) and files > 0",
            ("and", ("or", (">", "errors", 0), (">", "kb", 0)), (">", "files", 0)),
        ),
        (
            "not (errors > 0 or kb > 0)",
            ("not", ("or", (">", "errors", 0), (">", "kb", 0))),
        ),
        # `not` binds tighter than `and`.
        (
            "not errors > 0 and kb > 0",
            ("and", ("not", (">", "errors", 0)), (">", "kb", 0)),
        ),
    ],
)
def test_condition_forms(text: str, expected: object) -> None:
    assert shape(condition(text)) == expected


def test_bare_bool_field_is_a_condition() -> None:
    cond = condition("autolaunched", event="StartApp")
    assert isinstance(cond, n.Reference) and cond.name == "autolaunched"
    assert shape(condition("autolaunched == true", event="StartApp")) == (
        "==",
        "autolaunched",
        True,
    )
    assert shape(condition("not known or waited > 1h", event="MediaRequest")) == (
        "or",
        ("not", "known"),
        (">", "waited", timedelta(hours=1)),
    )


def test_condition_positions() -> None:
    cond = condition('client matches "*-laptop"')
    assert (cond.field.span.line, cond.field.span.column) == (1, 20)
    assert (cond.pattern.span.column, cond.pattern.span.end_column) == (35, 45)


# ---------------------------------------------------------------------------
# Literals
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, kind, value",
    [
        ("0", "number", 0),
        ("42", "number", 42),
        ("-530", "number", -530),
        ("2.5", "number", 2.5),
        ('"plain"', "string", "plain"),
        (r'"say \"hi\""', "string", 'say "hi"'),
        (r'"C:\\Retrospect"', "string", "C:\\Retrospect"),
        (r'"two\nlines"', "string", "two\nlines"),
        (r'"\d+ stays"', "string", "\\d+ stays"),
        ('""', "string", ""),
        ("90s", "duration", timedelta(seconds=90)),
        ("5m", "duration", timedelta(minutes=5)),
        ("2h", "duration", timedelta(hours=2)),
        ("1d", "duration", timedelta(days=1)),
        ("1w", "duration", timedelta(weeks=1)),
        ("1h30m", "duration", timedelta(minutes=90)),
        ("500KB", "size", n.Size(500 * 1024)),
        ("20MB", "size", n.Size(20 * 1024**2)),
        ("2GB", "size", n.Size(2 * 1024**3)),
        ("1TB", "size", n.Size(1024**4)),
        ("true", "bool", True),
        ("false", "bool", False),
    ],
)
def test_literals(text: str, kind: str, value: object) -> None:
    lit = literal(text)
    assert (lit.kind, lit.value) == (kind, value)
    assert type(lit.value) is type(value)


def test_sizes_are_powers_of_1024_and_compare_with_bytes() -> None:
    cond = condition("bytes > 1TB and bytes < 2GB")
    assert [int(c.right.value) for c in cond.operands] == [1099511627776, 2147483648]


def test_list_literal() -> None:
    lit = literal('["a", 2, 5m, true]')
    assert lit.kind == "list"
    assert [(x.kind, x.value) for x in lit.value] == [
        ("string", "a"),
        ("number", 2),
        ("duration", timedelta(minutes=5)),
        ("bool", True),
    ]
    assert literal("[]").value == ()


def test_triple_quoted_string_removes_common_indentation() -> None:
    text = (
        "on EndScript\n"
        '  log """\n'
        "      first {{ script }}\n"
        "        indented two more\n"
        '      "quoted" and \\"escaped\\"\n'
        '      """\n'
    )
    check_ok(text)
    (rule,) = parse_ok(text)
    template = rule.actions[0].text
    assert template.source == 'first {{ script }}\n  indented two more\n"quoted" and "escaped"'
    # The text starts on the line after the opening quotes.
    assert template.first_line == 3


# ---------------------------------------------------------------------------
# Actions and options
# ---------------------------------------------------------------------------


def test_notify_with_every_option() -> None:
    text = """\
        target ops = "json://localhost:9/"
        target chat = "json://localhost:10/"
        on EndScript
          notify ops, chat title "T {{ script }}" body "B {{ errors }}" type failure format markdown
          notify ops
        """
    check_ok(text)
    rule = parse_ok(text)[2]
    full, bare = rule.actions
    assert [name for name, _ in full.targets] == ["ops", "chat"]
    assert full.title.source == "T {{ script }}"
    assert full.body.source == "B {{ errors }}"
    assert full.type[0] == "failure" and full.format[0] == "markdown"
    assert (bare.title, bare.body, bare.type, bare.format) == (None, None, None, None)


@pytest.mark.parametrize("kind", ["info", "success", "warning", "failure"])
def test_notify_types(kind: str) -> None:
    check_ok(f'target ops = "json://localhost:9/"\non EndScript\n  notify ops type {kind}\n')


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_notify_formats(fmt: str) -> None:
    check_ok(f'target ops = "json://localhost:9/"\non EndScript\n  notify ops format {fmt}\n')


@pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX program path and mode")
def test_run_with_args_timeout_and_fallback(tmp_path) -> None:
    program = tmp_path / "freeze"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    text = (
        f'on StartSource where client == "SQL01"\n'
        f'  run "{program}" "{{{{ source_path }}}}" "--fast" timeout 2m\n'
        f'      or abort "could not freeze {{{{ client }}}}"\n'
        f"on EndSource\n"
        f'  run "{program}"\n'
        f'  run "{program}" or log "thaw failed"\n'
    )
    check_ok(text)
    first, second = parse_ok(text)
    run = first.actions[0]
    assert run.program.source == str(program)
    assert [a.source for a in run.args] == ["{{ source_path }}", "--fast"]
    assert run.timeout == timedelta(minutes=2)
    assert isinstance(run.fallback, Abort)
    assert run.fallback.text.source == "could not freeze {{ client }}"
    plain, with_log = second.actions
    assert (plain.args, plain.timeout, plain.fallback) == ((), None, None)
    assert isinstance(with_log.fallback, Log)


def test_abort_log_stop() -> None:
    text = """\
        on StartScript
          abort "{{ script }} is paused"
          log "aborted {{ script }}"
          log "to a file" to "/tmp/retro-router-spec-test.log"
          stop
        """
    check_ok(text)
    (rule,) = parse_ok(text)
    abort, log_default, log_to, stop = rule.actions
    assert isinstance(abort, Abort) and abort.text.source == "{{ script }} is paused"
    assert isinstance(log_default, Log) and log_default.path is None
    assert log_to.path.source == "/tmp/retro-router-spec-test.log"
    assert isinstance(stop, Stop)


def test_actions_keep_their_written_order() -> None:
    text = 'target ops = "json://localhost:9/"\non StartScript\n  log "1"\n  notify ops\n  stop\n'
    check_ok(text)
    assert [type(a) for a in parse_ok(text)[1].actions] == [
        Log,
        Notify,
        Stop,
    ]


def test_throttle_and_digest() -> None:
    text = """\
        target ops = "json://localhost:9/"
        on EndSource
          notify ops title "{{ suppressed }} suppressed"
          throttle 1h
        on EndSource
          notify ops title "{{ count }} events"
                     body "{% for e in events %}{{ e.source }}{% endfor %}"
          digest 15m by script, client
        on EndSource
          notify ops
          throttle 30m by script, source
          digest 1d
        """
    check_ok(text)
    _, plain, digest, both = parse_ok(text)
    (throttle,) = plain.options
    assert (throttle.kind, throttle.window, throttle.by) == ("throttle", timedelta(hours=1), ())
    (dig,) = digest.options
    assert (dig.kind, dig.window) == ("digest", timedelta(minutes=15))
    assert [f.name for f in dig.by] == ["script", "client"]
    assert [(o.kind, [f.name for f in o.by]) for o in both.options] == [
        ("throttle", ["script", "source"]),
        ("digest", []),
    ]


def test_body_file_is_relative_to_the_rule_file(tmp_path) -> None:
    rules_dir = tmp_path / "rules"
    (rules_dir / "templates").mkdir(parents=True)
    (rules_dir / "templates" / "endsource.j2").write_text(
        "{{ source }} finished\n{{ bytes | filesize }} in {{ duration | duration }}\n",
        encoding="utf-8",
    )
    rules = write_rules(
        rules_dir / "t.rules",
        'target ops = "json://localhost:9/"\n'
        "on EndSource\n"
        '  notify ops title file "templates/endsource.j2" body file "templates/endsource.j2"\n',
    )
    # Checked from elsewhere: the path is relative to the rule file, not the cwd.
    result = check_paths([rules])
    assert_clean(result)
    notify = result.rule_files[0].statements[1].actions[0]
    assert notify.body.path == "templates/endsource.j2"
    assert result.template_files[notify.body].startswith("{{ source }} finished")


def test_templates_see_rule_and_event_fields() -> None:
    check_ok('on EndScript\n  log "{{ rule }} {{ script }} {{ previous.status }} {{ streak }}"\n')


def test_template_filters_and_sandbox() -> None:
    env = environment()
    assert env.from_string("{{ s | duration }}").render(s=7500) == "2 hours 5 minutes"
    assert env.from_string("{{ s | duration }}").render(s=timedelta(minutes=90)) == (
        "1 hour 30 minutes"
    )
    assert env.from_string("{{ b | filesize }}").render(b=int(1.5 * 1024**3)) == "1.5 GB"
    from datetime import datetime

    when = datetime(2016, 11, 21, 18, 6)
    assert env.from_string("{{ d | datetime }}").render(d=when) == "2016-11-21 18:06"
    assert env.from_string("{{ d | datetime('%d/%m') }}").render(d=when) == "21/11"
    # Event values are data: a client named {{ 7*7 }} prints as written.
    assert env.from_string("{{ client }}").render(client="{{ 7*7 }}") == "{{ 7*7 }}"


def test_glance_example_in_a_rules_directory_with_others(glance, tmp_path, monkeypatch) -> None:
    """The page's example loads beside another file, in file-name order."""
    monkeypatch.delenv("RETRO_CHAT_URL", raising=False)
    write_rules(tmp_path / "50-glance.rules", glance)
    write_rules(tmp_path / "10-first.rules", 'on StartApp\n  log "up"\n')
    result = check_paths([tmp_path])
    assert [Path(f.path).name for f in result.rule_files] == ["10-first.rules", "50-glance.rules"]
    assert [d for d in result.diagnostics if d.is_error] == []
