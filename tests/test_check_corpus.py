"""A corpus of broken rule files, each with the exact problems ``router check``
must report: file, line, column, severity and code, and for the important
ones what the message or hint says.

Every case is written to real files in a temporary rules directory and
checked with ``check_paths``, as ``router check`` loads them. The list of
problems must match exactly: a missing report fails, and so does an extra
one (a check that fires twice, or a false alarm beside the real problem).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import pytest

from router.checker import check_paths
from router.language.diagnostics import format_text

SECRET = "hunter2"
OPS = 'target ops = "json://localhost:9/"\n'


@dataclass(frozen=True)
class E:
    """One expected problem. ``needles`` must each appear in message or hint."""

    line: int
    column: int
    severity: str
    code: str
    needles: tuple[str, ...] = ()
    file: str = "main.rules"
    #: Text that must NOT appear in the message or hint.
    absent: tuple[str, ...] = ()


def err(line: int, column: int, code: str, *needles: str, **kw) -> E:
    return E(line, column, "error", code, needles, **kw)


def warn(line: int, column: int, code: str, *needles: str, **kw) -> E:
    return E(line, column, "warning", code, needles, **kw)


@dataclass
class Case:
    id: str
    #: main.rules; "@TMP@" is replaced by the case's directory.
    text: Union[str, bytes]
    expect: list[E]
    #: Other files, relative to the rules directory.
    files: dict[str, Union[str, bytes]] = field(default_factory=dict)
    env: dict[str, Optional[str]] = field(default_factory=dict)
    #: chmod for main.rules (default 0o644).
    mode: int = 0o644
    #: Executable files to create (path relative to the rules directory: mode).
    modes: dict[str, int] = field(default_factory=dict)
    #: Depends on POSIX file modes or paths (skipped on Windows).
    posix: bool = False


CASES = [
    # ---- syntax -------------------------------------------------------------
    Case(
        "missing-condition-after-where",
        'on EndScript where\n  log "x"\n',
        [err(2, 3, "syntax", "unexpected 'log', expected a condition", "condition before 'log'")],
    ),
    Case(
        "incomplete-condition",
        'on EndScript where errors >\n  log "x"\n',
        [err(2, 3, "syntax", "expected a field or a value", absent=("reserved",))],
    ),
    Case(
        "missing-action-at-end-of-file",
        "on EndScript where errors > 0\n",
        [
            err(
                1,
                30,
                "syntax",
                "unexpected end of file, expected an action (notify, run, abort, log, stop)",
                absent=("every",),
            )
        ],
    ),
    Case(
        "missing-action-before-next-rule",
        'on EndScript where errors > 0\n\non EndSource\n  log "x"\n',
        [
            err(
                1,
                30,
                "syntax",
                "expected an action",
                "before the next statement ('on' on line 3)",
                absent=("end of file",),
            )
        ],
    ),
    Case(
        "expect-without-every",
        'expect EndScript where script == "Daily"\n  log "late"\n',
        [
            err(
                2,
                3,
                "syntax",
                "unexpected 'log', expected 'at', 'every' or 'within'",
                absent=("action",),
            )
        ],
    ),
    Case(
        "unterminated-string",
        'on EndScript where script == "Daily\n  log "x"\n',
        [err(1, 30, "syntax", "unterminated string", "same line")],
    ),
    Case(
        "unterminated-triple-quoted-string",
        'on EndScript\n  log """abc\n  stop\n',
        [err(2, 7, "syntax", "unterminated string", '"""')],
    ),
    Case(
        "single-quotes",
        "on EndScript where script == 'Daily'\n  log \"x\"\n",
        [err(1, 30, "syntax", 'unexpected character "\'"', "double quotes")],
    ),
    Case(
        "reserved-word-as-operand",
        'on EndScript where errors > and\n  log "x"\n',
        [err(1, 29, "syntax", "unexpected 'and'", "'and' is a reserved word")],
    ),
    Case(
        "reserved-word-as-target-name",
        'target log = "json://localhost:9/"\n',
        [err(1, 8, "syntax", "expected a name", "'log' is a reserved word")],
    ),
    Case(
        "bad-duration-unit",
        'on EndScript\n  log "x"\n  throttle 5q\n',
        [err(3, 12, "syntax", "'5q' is not a number, duration or size", "90s, 5m")],
    ),
    Case(
        "number-glued-to-a-word",
        'on EndSource where duration > 90sec\n  log "x"\n',
        [err(1, 31, "syntax", "'90sec' is not a number, duration or size")],
    ),
    Case(
        "number-where-a-duration-is-needed",
        'on EndScript\n  log "x"\n  throttle 5\n',
        [err(3, 12, "syntax", "unexpected '5', expected a duration")],
    ),
    Case(
        "stray-token-after-action",
        'on EndScript\n  log "x" 42\n',
        [err(2, 11, "syntax", "unexpected '42'", absent=("')'", "']'"))],
    ),
    Case(
        "notify-right-after-where",
        # `notify` is one word, not `not` + `ify`. And ops is not "never
        # notified": the rule that notifies it is the one that did not parse.
        OPS + "on EndScript where\n  notify ops\n",
        [err(3, 3, "syntax", "unexpected 'notify', expected a condition")],
    ),
    Case(
        "stray-word-after-action",
        'on EndScript\n  log "x" foo\n',
        [err(2, 11, "syntax", "unexpected 'foo'", "actions are notify", absent=("where",))],
    ),
    Case(
        "condition-without-where",
        'on EndScript errors > 0\n  log "x"\n',
        [err(1, 14, "syntax", "unexpected 'errors'", "a condition goes after 'where'")],
    ),
    Case(
        "unexpected-end-of-file-in-target",
        "target ops =",
        [err(1, 13, "syntax", "unexpected end of file")],
    ),
    Case(
        "unclosed-parenthesis",
        'on EndScript where (errors > 0\n  log "x"\n',
        [err(2, 3, "syntax", "unexpected 'log'", "')'")],
    ),
    Case(
        "rule-keyword-without-name",
        "rule on EndScript\n  stop\n",
        [err(1, 5, "syntax", "expected a string before the next statement ('on' on line 1)")],
    ),
    Case(
        "notify-without-target",
        "on EndScript\n  notify\n",
        [err(2, 9, "syntax", "unexpected end of file, expected a name")],
    ),
    # ---- events and fields ----------------------------------------------------
    Case(
        "unknown-event",
        'on EndScrip\n  log "x"\n',
        [err(1, 4, "unknown-event", "unknown event 'EndScrip'", "did you mean 'EndScript'?")],
    ),
    Case(
        "unknown-event-in-a-list",
        'on EndScript, StartSorce\n  log "x"\n',
        [err(1, 15, "unknown-event", "did you mean 'StartSource'?")],
    ),
    Case(
        "event-and-its-alias",
        "on StopSched, SchedStop\n  stop\n",
        [warn(1, 15, "duplicate-event", "listed twice")],
    ),
    Case(
        "unknown-field",
        'on EndScript where script_name == "Daily"\n  log "x"\n',
        [
            err(
                1,
                20,
                "unknown-field",
                "unknown field 'script_name' for EndScript (did you mean 'script'?)",
            )
        ],
    ),
    Case(
        "unknown-previous-field",
        'on EndScript where previous.scrpt == "x"\n  log "x"\n',
        [err(1, 20, "unknown-field", "did you mean 'script'?")],
    ),
    Case(
        "dotted-field-that-is-not-previous",
        'on EndScript where last.script == "x"\n  log "x"\n',
        [err(1, 20, "unknown-field", "only previous.FIELD")],
    ),
    Case(
        "field-some-events-lack",
        'on EndScript, EndSource where kb > 5\n  log "x"\n',
        [warn(1, 31, "missing-field", "EndScript has no field 'kb'")],
    ),
    Case(
        "throttle-by-unknown-field",
        'on EndScript\n  log "x"\n  throttle 1h by sript\n',
        [err(3, 18, "unknown-field", "did you mean 'script'?")],
    ),
    # ---- types ----------------------------------------------------------------
    Case(
        "string-field-vs-number",
        'on EndScript where script == 5\n  log "x"\n',
        [err(1, 30, "type-mismatch", "script is str, not a number", "double quotes")],
    ),
    Case(
        "number-field-vs-string",
        'on EndScript where errors == "5"\n  log "x"\n',
        [err(1, 30, "type-mismatch", "errors is int, not a string", "without quotes")],
    ),
    Case(
        "duration-vs-number",
        'on EndSource where duration > 5\n  log "x"\n',
        [err(1, 31, "type-mismatch", "not a number", "duration > 30m")],
    ),
    Case(
        "bool-vs-string",
        'on StartApp where autolaunched == "true"\n  log "x"\n',
        [err(1, 35, "type-mismatch", "not a string", "autolaunched == true")],
    ),
    Case(
        "date-that-does-not-parse",
        'on StartScript where date > "yesterday"\n  log "x"\n',
        [err(1, 29, "type-mismatch", "'yesterday' is not a date", "2024-01-31 18:00")],
    ),
    Case(
        "ordering-on-strings",
        'on EndScript where script > "abc"\n  log "x"\n',
        [err(1, 29, "type-mismatch", "'>' does not order str", "matches")],
    ),
    Case(
        "size-on-kb",
        'on EndSource where kb > 20MB\n  log "x"\n',
        [warn(1, 25, "size-unit", "not", "bytes > 20MB")],
    ),
    Case(
        "field-vs-field-of-another-type",
        'on EndSource where kb == script\n  log "x"\n',
        [err(1, 26, "type-mismatch", "cannot compare kb (int) with script (str)")],
    ),
    Case(
        "compare-with-a-list",
        'on EndScript where errors == [1, 2]\n  log "x"\n',
        [err(1, 30, "type-mismatch", "with a list", "errors in [...]")],
    ),
    Case(
        "list-member-of-the-wrong-type",
        'on EndScript where script in ["a", 3]\n  log "x"\n',
        [err(1, 36, "type-mismatch", "not a number")],
    ),
    Case(
        "glob-on-a-number-field",
        'on EndScript where errors matches "1*"\n  log "x"\n',
        [err(1, 20, "type-mismatch", "'matches' works on text")],
    ),
    Case(
        "bare-non-bool-field-as-condition",
        'on EndScript where script\n  log "x"\n',
        [err(1, 20, "not-a-condition", "'script' is a str field, not a condition")],
    ),
    Case(
        "two-constants",
        'on EndScript where 1 == 1\n  log "x"\n',
        [warn(1, 20, "constant-comparison")],
    ),
    Case(
        "empty-between",
        'on EndScript where errors between 5 and 1\n  log "x"\n',
        [warn(1, 35, "empty-range", "never true")],
    ),
    Case(
        "empty-list",
        'on EndScript where script in []\n  log "x"\n',
        [warn(1, 30, "empty-list", "never true")],
    ),
    # ---- enumerated values ----------------------------------------------------
    Case(
        "status-misspelt",
        'on EndScript where status == "faliure"\n  log "x"\n',
        [err(1, 30, "bad-value", "did you mean 'failure'?", "failure, warning, success, info")],
    ),
    Case(
        "weekday-spelt-out",
        'on EndScript where weekday == "monday"\n  log "x"\n',
        [err(1, 31, "bad-value", "did you mean 'mon'?", "mon, tue")],
    ),
    Case(
        "weekday-in-list",
        'on EndScript where weekday in ["sat", "sunday"]\n  log "x"\n',
        [err(1, 39, "bad-value", "did you mean 'sun'?")],
    ),
    # ---- globs and regular expressions ----------------------------------------
    Case(
        "glob-with-unclosed-bracket",
        'on EndScript where script matches "Daily[abc"\n  log "x"\n',
        [err(1, 41, "bad-glob", "'[' at position 6 is never closed")],
    ),
    Case(
        "regex-with-unclosed-group",
        # The column is the '(' inside the string, not the string's start.
        'on EndScript where script =~ "Daily(abc"\n  log "x"\n',
        [err(1, 36, "bad-regex", "invalid regular expression", "missing )")],
    ),
    Case(
        "regex-with-unclosed-set",
        'on EndScript where script =~ "ab[c"\n  log "x"\n',
        [err(1, 33, "bad-regex", "unterminated character set")],
    ),
    Case(
        "regex-column-counts-escapes",
        # Source "\\d+(" is the pattern \d+( : the '(' is at column 35, not 34.
        'on EndScript where script =~ "\\\\d+("\n  log "x"\n',
        [err(1, 35, "bad-regex", "missing )")],
    ),
    # RE2 runs rule regexes (linear time): what it cannot do is an error
    # pointing at the refused part, with a hint naming RE2.
    Case(
        "regex-backreference",
        'on EndScript where script =~ "(a)\\1"\n  log "x"\n',
        [err(1, 34, "bad-regex", "RE2", "\\1", "no backreferences")],
    ),
    Case(
        "regex-named-backreference-points-at-the-reference",
        'on EndScript where script =~ "(?P<n>a)(?P=n)"\n  log "x"\n',
        [err(1, 39, "bad-regex", "RE2", "no backreferences")],
    ),
    Case(
        "regex-lookahead",
        'on EndScript where script =~ "Daily(?=Backup)"\n  log "x"\n',
        [err(1, 36, "bad-regex", "invalid perl operator: (?=", "RE2 has no lookahead", "rewrite")],
    ),
    Case(
        "regex-negative-lookahead",
        'on EndScript where script =~ "^(?!Test)"\n  log "x"\n',
        [err(1, 32, "bad-regex", "(?!", "RE2 has no lookahead")],
    ),
    Case(
        "regex-lookbehind",
        'on EndScript where script =~ "(?<=Daily) Backup"\n  log "x"\n',
        [err(1, 31, "bad-regex", "(?<=", "lookbehind")],
    ),
    Case(
        "regex-negative-lookbehind",
        'on EndScript where script =~ "x(?<!Daily)"\n  log "x"\n',
        [err(1, 32, "bad-regex", "(?<!", "lookbehind")],
    ),
    Case(
        "regex-column-counts-escapes-for-re2",
        # Source "\\d(?=x)" is the pattern \d(?=x): the '(' is at column 34.
        'on EndScript where script =~ "\\\\d(?=x)"\n  log "x"\n',
        [err(1, 34, "bad-regex", "(?=")],
    ),
    Case(
        "regex-end-of-text-is-lowercase-z",
        'on EndScript where script =~ "Backup\\Z"\n  log "x"\n',
        [err(1, 37, "bad-regex", "\\Z", "RE2 writes the end of the text as \\z")],
    ),
    Case(
        "regex-possessive-quantifier",
        'on EndScript where script =~ "a++b"\n  log "x"\n',
        [err(1, 32, "bad-regex", "RE2", "possessive")],
    ),
    Case(
        "regex-atomic-group",
        'on EndScript where script =~ "(?>ab)c"\n  log "x"\n',
        [err(1, 31, "bad-regex", "RE2", "atomic")],
    ),
    Case(
        "regex-open-lower-bound-would-change-meaning",
        # Python's re read {,3} as {0,3}; RE2 reads it as text.
        'on EndScript where script =~ "Daily-a{,3}"\n  log "x"\n',
        [err(1, 38, "bad-regex", "{,n}", "{0,n}")],
    ),
    Case(
        "regex-re2-accepts-what-python-did-not",
        'on EndScript where script =~ "\\pL+ Backup\\z"\n  log "x"\n',
        [],
    ),
    # ---- names ----------------------------------------------------------------
    Case(
        "unknown-target",
        OPS + "on EndScript\n  notify opz\n",
        [
            warn(1, 8, "unused-target"),
            err(3, 10, "unknown-target", "unknown target 'opz' (did you mean 'ops'?)"),
        ],
    ),
    Case(
        "duplicate-target",
        OPS + OPS + "on EndScript\n  notify ops\n",
        [err(2, 8, "duplicate-name", "'ops' is already defined at", "main.rules:1:8")],
    ),
    Case(
        "duplicate-define",
        "define big = errors > 5\ndefine big = errors > 9\non EndScript where big\n  stop\n",
        [err(2, 8, "duplicate-name", "'big' is already defined")],
    ),
    Case(
        "target-and-define-with-one-name",
        OPS + "define ops = errors > 5\non EndScript where ops\n  notify ops\n",
        # The define is dropped, so its use is unknown too.
        [err(2, 8, "duplicate-name"), err(3, 20, "unknown-name")],
    ),
    Case(
        "define-named-like-a-field",
        'define script = errors > 5\non EndScript\n  log "x"\n',
        [err(1, 8, "duplicate-name", "the name of an event field")],
    ),
    Case(
        "duplicate-rule-name",
        'rule "a" on EndScript\n  stop\nrule "a" on EndSource\n  stop\n',
        [err(3, 1, "duplicate-name", "rule name 'a' is already used")],
    ),
    Case(
        "unknown-name",
        'define nightly = script matches "Nightly*"\non EndScript where nigthly\n  stop\n',
        [
            warn(1, 8, "unused-define"),
            err(2, 20, "unknown-name", "unknown name 'nigthly' (did you mean 'nightly'?)"),
        ],
    ),
    Case(
        "define-refers-to-itself",
        "define loop = loop or errors > 0\non EndScript where loop\n  stop\n",
        [err(1, 15, "recursive-define", "refers to itself")],
    ),
    Case(
        "defines-refer-to-each-other",
        "define a = b\ndefine b = not a\non EndScript where a\n  stop\n",
        [
            err(1, 12, "recursive-define", "a -> b -> a"),
            err(2, 16, "recursive-define", "b -> a -> b"),
        ],
    ),
    Case(
        "define-tests-a-field-the-event-lacks",
        "define big = kb > 5\non EndScript where big\n  stop\n",
        [err(2, 20, "unknown-field", "define 'big'", "'kb'")],
    ),
    # ---- templates ------------------------------------------------------------
    Case(
        "jinja-syntax-in-single-line-title",
        OPS + 'on EndScript\n  notify ops title "{{ script }"\n',
        [err(3, 20, "template-syntax", "template:", "unexpected '}'")],
    ),
    Case(
        "jinja-syntax-on-line-2-of-a-body",
        OPS
        + "on EndScript\n"
        + '  notify ops body """\n'
        + "    first {{ script }}\n"
        + "    second {% if errors %}\n"
        + '    """\n',
        # Line 5 of the file: the template's own line 2.
        [err(5, 5, "template-syntax", "template:", "endif")],
    ),
    Case(
        "jinja-syntax-on-line-3-of-a-body",
        OPS
        + "on EndScript\n"
        + '  notify ops body """\n'
        + "    first {{ script }}\n"
        + "    second line\n"
        + "    third {{ errors + }}\n"
        + '    """\n',
        [err(6, 5, "template-syntax", "template:")],
    ),
    Case(
        "unknown-template-variable",
        'on EndScript\n  log "{{ scrpt }} failed"\n',
        [err(2, 11, "unknown-variable", "unknown variable 'scrpt' (did you mean 'script'?)")],
    ),
    Case(
        "unknown-template-variable-on-line-2",
        'on EndScript\n  log """\n    {{ script }}\n    {{ erors }}\n    """\n',
        [err(4, 8, "unknown-variable", "did you mean 'errors'?")],
    ),
    Case(
        "template-variable-some-events-lack",
        'on EndScript, EndSource\n  log "{{ kb }}"\n',
        [warn(2, 11, "missing-variable", "EndScript has no field 'kb'")],
    ),
    Case(
        "unknown-filter",
        'on EndScript\n  log "{{ script | upperr }}"\n',
        [err(2, 20, "unknown-filter", "unknown filter 'upperr' (did you mean 'upper'?)")],
    ),
    Case(
        "unknown-jinja-test",
        'on EndScript\n  log "{% if errors is nmber %}x{% endif %}"\n',
        [err(2, 24, "unknown-test", "did you mean 'number'?")],
    ),
    Case(
        "previous-unknown-in-template",
        'on EndScript\n  log "was {{ previous.statu }}"\n',
        [err(2, 15, "unknown-variable", "'previous.statu'", "did you mean 'status'?")],
    ),
    Case(
        "expect-template-names-a-field-not-pinned",
        OPS
        + 'expect EndScript where script == "Daily" every 24h\n'
        + '  notify ops title "{{ script }}: {{ errors }} errors"\n',
        [err(3, 38, "unknown-variable", "cannot see 'errors'", "last.FIELD")],
    ),
    Case(
        "digest-variables-outside-digest",
        OPS + 'on EndScript\n  notify ops title "{{ count }} events"\n',
        [err(3, 24, "unknown-variable", "unknown variable 'count'")],
    ),
    # ---- abort ----------------------------------------------------------------
    Case(
        "abort-on-an-event-without-intervention-file",
        'on EndScript\n  abort "no"\n',
        [err(2, 3, "abort-without-intervention", "EndScript", "StartScript")],
    ),
    Case(
        "abort-on-any",
        'on any\n  abort "no"\n',
        [err(2, 3, "abort-without-intervention", "not 'any'")],
    ),
    Case(
        "abort-in-expect",
        'expect StartScript every 1h\n  abort "no"\n',
        [err(2, 3, "abort-without-intervention", "expect")],
    ),
    Case(
        "run-in-expect",
        'expect EndScript every 1d\n  run "/bin/true"\n',
        [err(2, 3, "bad-action", "'run' in an expect rule")],
    ),
    Case(
        "abort-where-one-of-the-events-lacks-it",
        'on StartScript, EndScript\n  abort "no"\n',
        [err(2, 3, "abort-without-intervention", "'abort' on EndScript")],
    ),
    Case(
        "abort-as-run-fallback-on-endsource",
        'on EndSource\n  run "true" or abort "no"\n',
        [err(2, 17, "abort-without-intervention", "EndSource")],
    ),
    Case(
        "abort-on-nextexec",
        'on NextExec\n  abort "no"\n',
        [warn(2, 3, "abort-no-effect", "NextExec")],
    ),
    Case(
        "stop-in-expect",
        'expect StartScript every 1h\n  log "late"\n  stop\n',
        [err(3, 3, "bad-action", "expect")],
    ),
    # ---- notify ---------------------------------------------------------------
    Case(
        "unknown-notify-type",
        OPS + "on EndScript\n  notify ops type failur\n",
        [err(3, 19, "bad-value", "unknown type 'failur' (did you mean 'failure'?)")],
    ),
    Case(
        "unknown-notify-format",
        OPS + "on EndScript\n  notify ops format htm\n",
        [err(3, 21, "bad-value", "unknown format 'htm' (did you mean 'html'?)")],
    ),
    Case(
        "notify-option-twice",
        OPS + 'on EndScript\n  notify ops title "a" title "b"\n',
        [warn(3, 30, "duplicate-option", "'title' is given twice")],
    ),
    Case(
        "url-apprise-does-not-know",
        f'target ops = "foo://user:{SECRET}@host"\non EndScript\n  notify ops\n',
        [err(1, 14, "bad-url", "foo://****", "no service for 'foo://'")],
    ),
    Case(
        "url-apprise-cannot-use",
        'target ops = "mailto://"\non EndScript\n  notify ops\n',
        [err(1, 14, "bad-url", "cannot use this mailto:// URL")],
    ),
    Case(
        "not-a-url",
        'target ops = "backup-admin@example.com"\non EndScript\n  notify ops\n',
        [err(1, 14, "bad-url", "not a URL")],
    ),
    Case(
        "env-holding-a-bad-url",
        'target ops = env("RR_CORPUS_URL")\non EndScript\n  notify ops\n',
        [warn(1, 14, "bad-url", "RR_CORPUS_URL holds 'foo://****'")],
        env={"RR_CORPUS_URL": f"json://localhost:9/ foo://admin:{SECRET}@host"},
    ),
    # ---- warnings about this machine ------------------------------------------
    Case(
        "unset-env",
        'target ops = env("RR_CORPUS_UNSET")\non EndScript\n  notify ops\n',
        [warn(1, 14, "unset-env", "RR_CORPUS_UNSET is not set")],
        env={"RR_CORPUS_UNSET": None},
    ),
    Case(
        "missing-config",
        'target ops = config("apprise.yml")\non EndScript\n  notify ops\n',
        [warn(1, 14, "missing-config", "'apprise.yml' does not exist")],
    ),
    Case(
        "config-tag-no-entry-has",
        'target ops = config("apprise.yml", tag="backpu")\non EndScript\n  notify ops\n',
        [warn(1, 14, "unknown-tag", "did you mean 'backup'?")],
        files={"apprise.yml": "urls:\n  - json://localhost:9/:\n    - tag: backup\n"},
    ),
    Case(
        "program-not-on-path",
        'on EndScript\n  run "retro-router-no-such-program"\n',
        [warn(2, 7, "program-not-found", "not found on PATH")],
    ),
    Case(
        "program-does-not-exist",
        'on EndScript\n  run "@TMP@/bin/missing"\n',
        [warn(2, 7, "program-not-found", "does not exist")],
        posix=True,
    ),
    Case(
        "program-not-executable",
        'on EndScript\n  run "@TMP@/bin/freeze"\n',
        [warn(2, 7, "program-not-found", "is not executable")],
        files={"bin/freeze": "#!/bin/sh\nexit 0\n"},
        modes={"bin/freeze": 0o644},
    ),
    Case(
        "log-to-a-missing-directory",
        'on EndScript\n  log "x" to "@TMP@/no/such/dir/events.log"\n',
        [warn(2, 14, "missing-directory", "does not exist")],
        posix=True,
    ),
    Case(
        "unused-target",
        OPS + 'on EndScript\n  log "x"\n',
        [warn(1, 8, "unused-target", "target 'ops' is never notified")],
    ),
    Case(
        "unused-define",
        'define big = errors > 5\non EndScript\n  log "x"\n',
        [warn(1, 8, "unused-define", "define 'big' is never used")],
    ),
    # ---- files ------------------------------------------------------------------
    Case(
        "body-file-missing",
        OPS + 'on EndScript\n  notify ops body file "templates/missing.j2"\n',
        [err(3, 19, "template-file", "templates/missing.j2", "relative to the rule file")],
    ),
    Case(
        "template-file-with-jinja-error",
        OPS + 'on EndScript\n  notify ops body file "templates/bad.j2"\n',
        [err(2, 1, "template-syntax", "template:", file="templates/bad.j2")],
        files={"templates/bad.j2": "Hello {{ script }}\n{% for x in y %}\n"},
    ),
    Case(
        "template-file-with-unknown-variable",
        OPS + 'on EndScript\n  notify ops body file "templates/var.j2"\n',
        [err(3, 11, "unknown-variable", "did you mean 'script'?", file="templates/var.j2")],
        files={"templates/var.j2": "Hello\n\nScript {{ scrip }}\n"},
    ),
    Case(
        "not-utf-8",
        b'# caf\xc3\xa9 is fine here\non EndScript\n  log "caf\xe9"\n',
        [err(3, 11, "encoding", "UTF-8")],
    ),
    Case(
        "utf-8-bom-does-not-shift-columns",
        b'\xef\xbb\xbfon EndScript where scrpt == "x"\n  stop\n',
        [err(1, 20, "unknown-field", "did you mean 'script'?")],
    ),
    Case(
        "crlf-line-endings",
        b'on EndScript\r\n  log """\r\n    {{ script }}\r\n    {{ erors }}\r\n    """\r\n',
        [err(4, 8, "unknown-variable", "did you mean 'errors'?")],
    ),
    Case(
        "template-file-with-bom",
        OPS + 'on EndScript\n  notify ops body file "body.j2"\n',
        [err(1, 4, "unknown-variable", "did you mean 'script'?", file="body.j2")],
        files={"body.j2": b"\xef\xbb\xbf{{ scrip }}\n"},
    ),
    Case(
        "rule-file-writable-by-others",
        'on EndScript\n  log "x"\n',
        [err(1, 1, "insecure-permissions", "writable by any user", "chmod go-w")],
        mode=0o666,
    ),
    Case(
        "rule-file-writable-by-its-group",
        'on EndScript\n  log "x"\n',
        [err(1, 1, "insecure-permissions", "writable by its group")],
        mode=0o664,
    ),
    # ---- options ----------------------------------------------------------------
    Case(
        "throttle-0s",
        'on EndScript\n  log "x"\n  throttle 0s\n',
        [err(3, 3, "bad-duration", "'throttle' needs a duration above zero")],
    ),
    Case(
        "duplicate-throttle",
        'on EndScript\n  log "x"\n  throttle 1h\n  throttle 2h\n',
        [err(4, 3, "duplicate-option", "'throttle' is given twice")],
    ),
    Case(
        "digest-without-notify",
        'on EndScript\n  log "x"\n  digest 1h\n',
        [warn(3, 3, "digest-without-notify", "sends none")],
    ),
    Case(
        "timeout-0s",
        'on EndScript\n  run "true" timeout 0s\n',
        [err(2, 3, "bad-duration", "'timeout' needs a duration above zero")],
    ),
    Case(
        "expect-every-0s",
        'expect EndScript every 0s\n  log "late"\n',
        [err(1, 1, "bad-duration", "'every' needs a duration above zero")],
    ),
    # ---- several broken rules in one file -----------------------------------------
    Case(
        "several-broken-rules",
        OPS
        + "\n"
        + "# rule 1: no condition after where\n"
        + "on EndScript where\n"
        + "  notify ops\n"
        + "\n"
        + "# rule 2: fine\n"
        + 'on EndScript where errors > 0\n  notify ops title "{{ script }}"\n'
        + "\n"
        + "# rule 3: single quotes\n"
        + "on EndSource where client == 'SQL01'\n"
        + "  notify ops\n"
        + "\n"
        + "# rule 4: fine\n"
        + 'on StartSource\n  log "{{ client }}"\n'
        + "\n"
        + "# rule 5: unknown field\n"
        + 'on EndSource where clinet == "SQL01"\n'
        + "  notify ops\n",
        [
            err(5, 3, "syntax", "expected a condition"),
            err(12, 30, "syntax", "double quotes"),
            err(20, 20, "unknown-field", "did you mean 'client'?"),
        ],
    ),
]


def _materialise(case: Case, tmp_path: Path) -> Path:
    root = tmp_path / "rules"
    root.mkdir()
    root.chmod(0o755)
    for name, content in case.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o755)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("@TMP@", str(root)), encoding="utf-8")
        path.chmod(case.modes.get(name, 0o644))
    main = root / "main.rules"
    if isinstance(case.text, bytes):
        main.write_bytes(case.text)
    else:
        main.write_text(case.text.replace("@TMP@", str(root)), encoding="utf-8")
    main.chmod(case.mode)
    return root


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_corpus(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if (case.posix or case.mode & 0o022 or case.modes) and sys.platform.startswith("win"):
        pytest.skip("file modes and paths are POSIX")
    for name, value in case.env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    root = _materialise(case, tmp_path)
    result = check_paths([root])
    assert result.usage_error is None

    def rel(path: str) -> str:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()

    actual = sorted((rel(d.path), d.line, d.column, d.severity, d.code) for d in result.diagnostics)
    expected = sorted((e.file, e.line, e.column, e.severity, e.code) for e in case.expect)
    described = "\n".join(
        f"  {rel(d.path)}:{d.line}:{d.column} {d.severity} {d.code}: {d.message} | {d.hint}"
        for d in result.diagnostics
    )
    assert actual == expected, "reported:\n" + described

    for e in case.expect:
        (diag,) = [
            d
            for d in result.diagnostics
            if (rel(d.path), d.line, d.column, d.code) == (e.file, e.line, e.column, e.code)
        ]
        said = f"{diag.message} | {diag.hint or ''}"
        for needle in e.needles:
            assert needle in said, f"{needle!r} not in {said!r}"
        for needle in e.absent:
            assert needle not in said, f"{needle!r} should not be in {said!r}"
        assert (diag.end_line, diag.end_column) >= (diag.line, diag.column)

    # No secret in what router check would print, in either format.
    printed = "\n".join(format_text(d, result.sources.get(d.path)) for d in result.diagnostics)
    assert SECRET not in printed
    assert all(SECRET not in str(d.as_json()) for d in result.diagnostics)


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)


def test_a_good_file_beside_a_broken_one_is_still_loaded(tmp_path: Path) -> None:
    """A broken file does not hide the problems, or the rules, of the others."""
    root = tmp_path / "rules"
    root.mkdir()
    root.chmod(0o755)
    (root / "a.rules").write_text('on EndScript where\n  log "x"\n', encoding="utf-8")
    (root / "b.rules").write_text('on EndScrip\n  log "x"\n', encoding="utf-8")
    (root / "c.rules").write_text('on EndScript\n  log "ok"\n', encoding="utf-8")
    for path in root.iterdir():
        path.chmod(0o644)
    result = check_paths([root])
    assert [(Path(d.path).name, d.line, d.code) for d in result.diagnostics] == [
        ("a.rules", 2, "syntax"),
        ("b.rules", 1, "unknown-event"),
    ]
    assert result.files == 3
    assert result.rules == 2  # b's rule parsed (its event is unknown); a's did not


def test_rules_directory_writable_by_others_is_refused(tmp_path: Path) -> None:
    if sys.platform.startswith("win"):
        pytest.skip("directory modes are POSIX")
    root = tmp_path / "rules"
    root.mkdir()
    (root / "a.rules").write_text('on EndScript\n  log "x"\n', encoding="utf-8")
    (root / "a.rules").chmod(0o644)
    root.chmod(0o777)
    try:
        result = check_paths([root])
    finally:
        root.chmod(0o755)
    assert [(d.path, d.line, d.column, d.severity, d.code) for d in result.diagnostics] == [
        (str(root), 1, 1, "error", "insecure-permissions")
    ]
    assert "is writable by any user" in result.diagnostics[0].message


def test_regex_column_points_inside_the_string_after_other_text() -> None:
    """The regex error column counts from the pattern's own first character."""
    from router.checker import check_text

    result = check_text('on EndScript where errors > 0 and script =~ "a+b**"\n  stop\n', "t.rules")
    (diag,) = result.diagnostics
    # The second '*' of "a+b**" (column 50) repeats a repeat.
    assert (diag.code, diag.line, diag.column) == ("bad-regex", 1, 50)
    assert "multiple repeat" in diag.message
