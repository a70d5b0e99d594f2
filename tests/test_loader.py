"""The handler's ruleset cache (router.loader) and the grammar cache
(router.language.grammar.Grammar.use_cache_dir).

The cache must make the handler fast (a cached load imports no parser), be
rebuilt when a rule or template file changes, and never be replaced by a
broken ruleset: the last good one stays in force while the errors are
reported. Caches are pickles and the router may run as root, so they live
only in a directory private to the router's user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

import pytest

from router.events import Event
from router.loader import CACHE_NAME, load_ruleset

GOOD = 'rule "first"\non EndScript\n  log "first"\n'
SECOND = 'rule "second"\non EndScript where errors > 0\n  log "second"\n'
BROKEN = 'rule "broken"\non EndScrip\n  log "broken"\n'
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def event_named(name: str, **fields: object) -> Event:
    return Event(name, known=True, fields=dict(fields), args=[])


def labels(loaded) -> list[str]:  # noqa: ANN001 - LoadedRuleset
    return [rule.label for rule in loaded.ruleset.rules]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
    return path


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    directory.chmod(0o755)
    write(directory / "a.rules", GOOD)
    return directory


def run_python(code: str, env_extra: Optional[dict[str, str]] = None) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
    env.update(env_extra or {})
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# ---------------------------------------------------------------------------
# The ruleset cache
# ---------------------------------------------------------------------------


def test_second_load_comes_from_the_cache(rules_dir: Path, state_dir: Path) -> None:
    first = load_ruleset(rules_dir, state_dir)
    assert (first.from_cache, first.stale, first.errors) == (False, False, [])
    assert labels(first) == ["first"]
    assert (state_dir / CACHE_NAME).is_file()
    second = load_ruleset(rules_dir, state_dir)
    assert (second.from_cache, second.stale, second.errors) == (True, False, [])
    assert labels(second) == ["first"]


def test_a_cached_load_in_a_fresh_process_does_not_import_lark(
    rules_dir: Path, state_dir: Path
) -> None:
    assert load_ruleset(rules_dir, state_dir).from_cache is False
    code = f"""
        import json, sys
        from pathlib import Path
        from router.loader import load_ruleset, use_caches
        use_caches(Path({str(state_dir)!r}))  # as the handler does first
        loaded = load_ruleset(Path({str(rules_dir)!r}), Path({str(state_dir)!r}))
        print(json.dumps({{
            "from_cache": loaded.from_cache,
            "labels": [r.label for r in loaded.ruleset.rules],
            "lark": sorted(m for m in sys.modules if m == "lark" or m.startswith("lark.")),
        }}))
    """
    assert run_python(code) == {"from_cache": True, "labels": ["first"], "lark": []}
    # The control: with no cache, the same load parses, so it imports lark.
    (state_dir / CACHE_NAME).unlink()
    result = run_python(code)
    assert result["from_cache"] is False
    assert "lark" in result["lark"]


def test_a_changed_rule_file_rebuilds_the_ruleset(rules_dir: Path, state_dir: Path) -> None:
    load_ruleset(rules_dir, state_dir)
    write(rules_dir / "a.rules", GOOD + SECOND)
    changed = load_ruleset(rules_dir, state_dir)
    assert (changed.from_cache, changed.errors) == (False, [])
    assert labels(changed) == ["first", "second"]
    assert load_ruleset(rules_dir, state_dir).from_cache is True

    write(rules_dir / "b.rules", 'rule "third"\non StartScript\n  log "third"\n')  # a new file
    added = load_ruleset(rules_dir, state_dir)
    assert (added.from_cache, labels(added)) == (False, ["first", "second", "third"])


def test_a_changed_template_file_rebuilds_the_ruleset(rules_dir: Path, state_dir: Path) -> None:
    templates = rules_dir / "templates"
    templates.mkdir()
    templates.chmod(0o755)
    write(templates / "body.j2", "old body {{ script }}")
    write(
        rules_dir / "a.rules",
        'target t = "json://localhost/x"\nrule "first"\non EndScript\n'
        '  notify t body file "templates/body.j2"\n',
    )
    first = load_ruleset(rules_dir, state_dir)
    assert first.errors == []
    assert "old body" in "".join(first.ruleset.template_files.values())
    write(templates / "body.j2", "new body {{ script }}")
    again = load_ruleset(rules_dir, state_dir)
    assert again.from_cache is False
    assert "new body" in "".join(again.ruleset.template_files.values())


def test_a_broken_edit_never_replaces_the_last_good_ruleset(
    rules_dir: Path, state_dir: Path
) -> None:
    write(rules_dir / "a.rules", GOOD + SECOND)
    assert labels(load_ruleset(rules_dir, state_dir)) == ["first", "second"]
    cache = (state_dir / CACHE_NAME).read_bytes()

    write(rules_dir / "a.rules", GOOD + BROKEN)
    broken = load_ruleset(rules_dir, state_dir)
    assert broken.stale is True
    assert broken.from_cache is False
    assert labels(broken) == ["first", "second"]  # the last good one, not half of the new one
    assert len(broken.errors) == 1
    assert broken.errors[0].startswith(f"{rules_dir / 'a.rules'}:5:")
    assert "EndScrip" in broken.errors[0]
    assert (state_dir / CACHE_NAME).read_bytes() == cache

    # Still broken on the next event: still the last good one, still reported.
    again = load_ruleset(rules_dir, state_dir)
    assert (again.stale, labels(again), again.errors) == (True, ["first", "second"], broken.errors)

    write(rules_dir / "a.rules", SECOND)  # fixed: the new ruleset takes over
    fixed = load_ruleset(rules_dir, state_dir)
    assert (fixed.stale, fixed.errors, labels(fixed)) == (False, [], ["second"])
    assert load_ruleset(rules_dir, state_dir).from_cache is True


def test_a_broken_first_load_gives_an_empty_ruleset_and_the_errors(
    rules_dir: Path, state_dir: Path
) -> None:
    write(rules_dir / "a.rules", BROKEN)
    loaded = load_ruleset(rules_dir, state_dir)
    assert loaded.stale is True
    assert loaded.ruleset.rules == [] and loaded.ruleset.targets == {}
    assert len(loaded.errors) == 1 and "EndScrip" in loaded.errors[0]
    assert not (state_dir / CACHE_NAME).exists()


def test_a_cached_ruleset_re2_cannot_run_is_checked_again(rules_dir: Path, state_dir: Path) -> None:
    """An older router checked regexes with Python's re and cached a lookahead;
    that cache is neither run nor kept as the last good ruleset."""
    from router import __version__
    from router.language.parser import parse_text
    from router.loader import _Cached, fingerprint, write_cache

    text = 'rule "old" on EndScript where script =~ "Daily(?=Backup)"\n  log "x"\n'
    path = write(rules_dir / "a.rules", text)
    rule_file, _ = parse_text(text, str(path))
    cached = _Cached(__version__, fingerprint(rules_dir), [rule_file], {}, {})
    write_cache(state_dir / CACHE_NAME, cached)
    loaded = load_ruleset(rules_dir, state_dir)
    assert (loaded.from_cache, loaded.stale, labels(loaded)) == (False, True, [])
    assert len(loaded.errors) == 1 and "RE2" in loaded.errors[0]


def test_a_missing_rules_dir_is_an_error_not_a_crash(tmp_path: Path, state_dir: Path) -> None:
    loaded = load_ruleset(tmp_path / "nowhere", state_dir)
    assert loaded.ruleset.rules == []
    assert loaded.errors == [f"rules directory {tmp_path / 'nowhere'} does not exist"]


def test_a_corrupt_cache_is_ignored_and_rewritten(rules_dir: Path, state_dir: Path) -> None:
    (state_dir / CACHE_NAME).write_bytes(b"not a pickle")
    loaded = load_ruleset(rules_dir, state_dir)
    assert (loaded.from_cache, loaded.errors, labels(loaded)) == (False, [], ["first"])
    assert load_ruleset(rules_dir, state_dir).from_cache is True


@posix_only
@pytest.mark.parametrize(
    ("which", "mode", "who"),
    [
        ("dir", 0o777, "any user"),
        ("dir", 0o775, "its group"),
        ("file", 0o666, "any user"),
        ("file", 0o664, "its group"),
    ],
)
def test_rules_writable_by_others_are_refused_and_the_last_good_stays(
    rules_dir: Path, state_dir: Path, which: str, mode: int, who: str
) -> None:
    assert labels(load_ruleset(rules_dir, state_dir)) == ["first"]
    write(rules_dir / "a.rules", GOOD + SECOND)  # a change that would otherwise load
    target = rules_dir if which == "dir" else rules_dir / "a.rules"
    target.chmod(mode)
    refused = load_ruleset(rules_dir, state_dir)
    assert refused.stale is True
    assert labels(refused) == ["first"]
    assert any(f"writable by {who}" in error for error in refused.errors), refused.errors

    target.chmod(0o755 if which == "dir" else 0o644)
    accepted = load_ruleset(rules_dir, state_dir)
    assert (accepted.stale, accepted.errors, labels(accepted)) == (False, [], ["first", "second"])


# ---------------------------------------------------------------------------
# The grammar cache: only in a private directory
# ---------------------------------------------------------------------------

GRAMMAR_CACHE = "grammar.lark-cache"
BUILD_PARSER = """
    import json, sys
    from pathlib import Path
    from router.language.grammar import GRAMMAR, lark_parser
    GRAMMAR.use_cache_dir(Path(sys.argv[-1]) if len(sys.argv) > 1 else None)
    lark_parser()
    print(json.dumps({}))
"""


def build_parser(directory: Path, tmpdir: Path) -> None:
    """Build the parser in a fresh process (it is built once per process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
    env["TMPDIR"] = str(tmpdir)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(BUILD_PARSER), str(directory)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def private_tmp(tmp_path: Path) -> Path:
    """The subprocess's TMPDIR, to see that nothing lands in the temp directory."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    return directory


@posix_only
def test_the_grammar_cache_is_written_in_a_private_directory(
    tmp_path: Path, private_tmp: Path
) -> None:
    private = tmp_path / "private"
    private.mkdir()
    private.chmod(0o700)
    build_parser(private, private_tmp)
    assert (private / GRAMMAR_CACHE).is_file()
    assert list(private_tmp.iterdir()) == []
    # The next process uses it as it is.
    before = (private / GRAMMAR_CACHE).stat().st_mtime_ns
    build_parser(private, private_tmp)
    assert (private / GRAMMAR_CACHE).stat().st_mtime_ns == before


@posix_only
@pytest.mark.parametrize("mode", [0o770, 0o707, 0o730, 0o777])
def test_the_grammar_cache_refuses_a_shared_directory(
    tmp_path: Path, private_tmp: Path, mode: int
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    build_parser(shared, private_tmp)
    assert list(shared.iterdir()) == []
    assert list(private_tmp.iterdir()) == []  # and not Lark's default in the temp directory


@posix_only
def test_the_grammar_cache_refuses_a_directory_owned_by_someone_else(
    tmp_path: Path, private_tmp: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    theirs.chmod(0o700)
    os.chown(theirs, 65534, 65534)  # nobody: root can still write there, but must not
    build_parser(theirs, private_tmp)
    assert list(theirs.iterdir()) == []


def test_use_cache_dir_keeps_only_a_private_directory(tmp_path: Path) -> None:
    from router.language.grammar import Grammar

    private = tmp_path / "private"
    private.mkdir()
    private.chmod(0o700)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    grammar = Grammar()
    grammar.use_cache_dir(private)
    assert grammar.cache_dir == private
    if os.name == "posix":
        grammar.use_cache_dir(shared)
        assert grammar.cache_dir is None
    grammar.use_cache_dir(tmp_path / "missing")
    assert grammar.cache_dir is None


# ---------------------------------------------------------------------------
# Parsed once: an edit re-parses the file that changed
# ---------------------------------------------------------------------------


def three_files(rules_dir: Path) -> list[Path]:
    return [
        write(rules_dir / f"{name}.rules", f'rule "{name}" on EndScript log "{name}"\n')
        for name in ("b", "c", "d")
    ]


def test_an_edit_re_parses_only_the_file_that_changed(rules_dir: Path, state_dir: Path) -> None:
    from router.loader import check_and_compile, parse_cache

    files = three_files(rules_dir)
    parsed = parse_cache(state_dir)
    assert check_and_compile(rules_dir, state_dir, parsed=parsed).ruleset is not None
    assert (parsed.parsed, parsed.reused) == (4, 0)
    write(files[0], 'rule "b2" on EndScript log "b2"\n')
    checked = check_and_compile(rules_dir, state_dir, parsed=parsed)
    assert (parsed.parsed, parsed.reused) == (1, 3)
    assert checked.ruleset is not None and "b2" in checked.ruleset.labels
    # Another process (a handler after the edit) reuses what is on disk.
    other = parse_cache(state_dir)
    check_and_compile(rules_dir, state_dir, parsed=other)
    assert (other.parsed, other.reused) == (0, 4)
    # A file that went away leaves nothing behind.
    files[1].unlink()
    check_and_compile(rules_dir, state_dir, parsed=other)
    assert len(list((state_dir / "parsed").glob("*.pickle"))) == 3


def test_a_parse_cache_another_user_could_write_is_not_read(
    rules_dir: Path, state_dir: Path
) -> None:
    """The parsed files are pickles: one that is not private to the router
    is parsed again, never loaded."""
    from router.loader import check_and_compile, parse_cache

    check_and_compile(rules_dir, state_dir)
    (planted,) = (state_dir / "parsed").glob("*.pickle")
    planted.chmod(0o666)
    parsed = parse_cache(state_dir)
    assert check_and_compile(rules_dir, state_dir, parsed=parsed).ruleset is not None
    assert (parsed.parsed, parsed.reused) == (1, 0)


def test_a_reload_keeps_the_compiled_rules_of_files_that_did_not_change(
    rules_dir: Path, state_dir: Path
) -> None:
    from router.loader import check_and_compile, parse_cache

    files = three_files(rules_dir)
    parsed = parse_cache(state_dir)
    before = check_and_compile(rules_dir, state_dir, parsed=parsed).ruleset.compile_all()
    write(files[0], 'rule "b" on EndScript log "b, edited"\n')
    after = check_and_compile(rules_dir, state_dir, parsed=parsed).ruleset
    after.compile_all(previous=before)
    old = {c.label: c for c in before.rules}
    new = {c.label: c for c in after.rules}
    kept = [label for label in new if new[label].test is old[label].test]
    assert kept == [label for label in new if label != "b"] and "c" in kept
    assert [c.position for c in after.rules] == list(range(len(after.rules)))


def test_a_handler_loads_only_its_events_rules_from_the_cache(
    rules_dir: Path, state_dir: Path
) -> None:
    write(
        rules_dir / "many.rules",
        'target ops = "json://localhost:1/"\n'
        'rule "ended" on EndScript log "x"\n'
        'rule "sources" on StartSource, EndSource log "x"\n'
        'rule "all" on any log "x"\n'
        'rule "digested" on StartSource notify ops digest 1h\n'
        'rule "expected" expect EndScript every 1d notify ops\n',
    )
    full = load_ruleset(rules_dir, state_dir)  # checks, and writes the cache
    assert not full.from_cache
    part = load_ruleset(rules_dir, state_dir, event=event_named("EndSource"))
    assert part.from_cache and part.ruleset.size == full.ruleset.size
    # Its event's rules and the any rules, in file order; the timers' rules.
    assert [c.label for c in part.ruleset.candidates("EndSource")] == ["sources", "all"]
    assert "ended" not in part.ruleset.labels and "ended" in full.ruleset.labels
    assert [c.label for c in part.ruleset.expects] == [c.label for c in full.ruleset.expects]
    assert part.ruleset.rule_named("digested") is not None
    # An alias, and an event no rule names: the any rules.
    alias = load_ruleset(rules_dir, state_dir, event=event_named("endscript"))
    assert "ended" in alias.ruleset.labels
    other = load_ruleset(rules_dir, state_dir, event=event_named("NoSuchEvent")).ruleset
    assert [c.label for c in other.candidates("NoSuchEvent")] == ["all"]
    # Files changed since: checked afresh, the whole ruleset.
    write(rules_dir / "more.rules", 'rule "more" on EndSource log "x"\n')
    fresh = load_ruleset(rules_dir, state_dir, event=event_named("EndSource"))
    assert not fresh.from_cache and "ended" in fresh.ruleset.labels


def test_a_recheck_reusing_unchanged_files_finds_what_a_fresh_check_finds(
    rules_dir: Path, state_dir: Path, tmp_path: Path
) -> None:
    """Files whose text and shared names did not change are not checked
    again; what their check found is the same as a fresh check's. Files
    whose check reads other files (a run program) are checked every time."""
    from router.checker import ParseCache, check_paths

    program = tmp_path / "freeze.sh"
    program.write_text("#!/bin/sh\n", encoding="utf-8")
    program.chmod(0o755)
    write(
        rules_dir / "t.rules", 'target ops = "json://localhost:1/"\ntarget spare = "json://x:1/"\n'
    )
    write(rules_dir / "w.rules", 'rule "w" on EndScript where nosuchfield == 1 notify ops\n')
    write(rules_dir / "r.rules", f'rule "r" on StartScript run "{program}"\n')
    edited = write(rules_dir / "e.rules", 'rule "e" on EndSource notify ops\n')

    def found(result) -> list[tuple[str, int, str]]:  # noqa: ANN001 - CheckResult
        return [(Path(d.path).name, d.line, d.code) for d in result.diagnostics]

    memo = ParseCache()
    first = found(check_paths([rules_dir], memo))
    assert ("w.rules", 1, "unknown-field") in first and ("t.rules", 2, "unused-target") in first
    kept = {Path(key.split("\0")[0]).name for key in memo.checks}
    assert {"t.rules", "w.rules", "e.rules"} <= kept and "r.rules" not in kept  # reads a program
    write(edited, 'rule "e" on EndSource notify spare\n')
    program.chmod(0o775)  # now group-writable: refused
    again = found(check_paths([rules_dir], memo))
    assert again == found(check_paths([rules_dir]))
    assert ("t.rules", 2, "unused-target") not in again and "w.rules" in str(again)
    assert any(name == "r.rules" and code == "insecure-permissions" for name, _, code in again)
