"""``router check`` as an admin or a CI job runs it: a real subprocess on real
files. Exit status, both output formats, where it looks when given no path,
the order it loads a directory in, and that it never prints a secret."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Optional

import pytest
from helpers import router_command

SECRET = "hunter2"
CLEAN = 'target ops = "json://localhost:9/"\non EndScript where errors > 0\n  notify ops\n'
WARNS = 'define big = errors > 5\non EndScript\n  log "x"\n'  # unused define
BROKEN = 'on EndScrip\n  log "x"\n'  # unknown event


def run_check(
    *args: str,
    cwd: Path,
    env: Optional[dict[str, str]] = None,
) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
    base.update(env or {})
    return subprocess.run(
        [*router_command(), "check", *args],
        cwd=cwd,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o755)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
    return path


# ---------------------------------------------------------------------------
# Exit status
# ---------------------------------------------------------------------------


def test_clean_file_exits_0(tmp_path: Path) -> None:
    write(tmp_path / "ok.rules", CLEAN)
    proc = run_check("ok.rules", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error" not in proc.stdout.replace("0 error(s)", "")
    assert "1 file(s), 1 rule(s): 0 error(s), 0 warning(s)" in proc.stdout


def test_warnings_only_exit_0(tmp_path: Path) -> None:
    write(tmp_path / "w.rules", WARNS)
    proc = run_check("w.rules", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "w.rules:1:8: warning: define 'big' is never used" in proc.stdout
    assert "0 error(s), 1 warning(s)" in proc.stderr


def test_errors_exit_1(tmp_path: Path) -> None:
    write(tmp_path / "bad.rules", BROKEN)
    proc = run_check("bad.rules", cwd=tmp_path)
    assert proc.returncode == 1
    assert "bad.rules:1:4: error: unknown event 'EndScrip' (did you mean 'EndScript'?)" in (
        proc.stdout
    )
    assert "1 error(s)" in proc.stderr


def test_strict_makes_warnings_fail(tmp_path: Path) -> None:
    write(tmp_path / "w.rules", WARNS)
    write(tmp_path / "ok.rules", CLEAN)
    assert run_check("--strict", "w.rules", cwd=tmp_path).returncode == 1
    assert run_check("w.rules", "--strict", "--format", "json", cwd=tmp_path).returncode == 1
    assert run_check("--strict", "ok.rules", cwd=tmp_path).returncode == 0


def test_nonexistent_path_exits_2(tmp_path: Path) -> None:
    write(tmp_path / "ok.rules", CLEAN)
    proc = run_check("ok.rules", "missing.rules", cwd=tmp_path)
    assert proc.returncode == 2
    assert "missing.rules" in proc.stderr
    assert "no such file or directory" in proc.stderr


@pytest.mark.parametrize(
    "args",
    [["--bogus"], ["--format", "yaml"], ["--strict=yes"]],
    ids=["unknown-flag", "unknown-format", "flag-with-value"],
)
def test_bad_usage_exits_2(tmp_path: Path, args: list[str]) -> None:
    write(tmp_path / "ok.rules", CLEAN)
    proc = run_check(*args, "ok.rules", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "usage:" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------
# JSON output
# ---------------------------------------------------------------------------


def test_json_output_is_an_array_of_problems(tmp_path: Path) -> None:
    write(
        tmp_path / "mixed.rules",
        'define big = errors > 5\non EndScript where script_name == "x"\n  stop\n',
    )
    proc = run_check("--format", "json", "mixed.rules", cwd=tmp_path)
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)
    assert isinstance(problems, list) and len(problems) == 2
    for problem in problems:
        assert set(problem) == {
            "path",
            "line",
            "column",
            "end",
            "severity",
            "code",
            "message",
            "hint",
        }
        assert set(problem["end"]) == {"line", "column"}
    by_code = {p["code"]: p for p in problems}
    field = by_code["unknown-field"]
    assert (field["path"], field["line"], field["column"]) == ("mixed.rules", 2, 20)
    assert field["end"] == {"line": 2, "column": 31}
    assert field["severity"] == "error"
    assert "did you mean 'script'?" in field["message"]
    assert isinstance(field["hint"], str)
    unused = by_code["unused-define"]
    assert (unused["severity"], unused["line"], unused["column"]) == ("warning", 1, 8)
    assert unused["hint"] is None


def test_json_output_when_clean_is_an_empty_array(tmp_path: Path) -> None:
    write(tmp_path / "ok.rules", CLEAN)
    proc = run_check("--format", "json", "ok.rules", cwd=tmp_path)
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == []


# ---------------------------------------------------------------------------
# Where it looks without a path, and in what order
# ---------------------------------------------------------------------------


def test_no_path_checks_router_rules_dir(tmp_path: Path) -> None:
    rules = tmp_path / "somewhere" / "rules"
    write(rules / "bad.rules", BROKEN)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    write(elsewhere / "decoy.rules", CLEAN)  # the working directory is not looked at
    proc = run_check(cwd=elsewhere, env={"ROUTER_RULES_DIR": str(rules)})
    assert proc.returncode == 1
    assert f"{rules.resolve() / 'bad.rules'}:1:4: error: unknown event" in proc.stdout
    assert "decoy" not in proc.stdout + proc.stderr


def test_no_path_checks_rules_dir_of_router_toml(tmp_path: Path) -> None:
    config_dir = tmp_path / "etc"
    write(config_dir / "router.toml", 'rules_dir = "my-rules"\n')
    write(config_dir / "my-rules" / "bad.rules", BROKEN)
    elsewhere = tmp_path / "cwd"
    write(elsewhere / "my-rules" / "decoy.rules", CLEAN)  # relative to the toml, not the cwd
    proc = run_check(cwd=elsewhere, env={"ROUTER_CONFIG": str(config_dir / "router.toml")})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    expected = config_dir.resolve() / "my-rules" / "bad.rules"
    assert f"{expected}:1:4: error: unknown event" in proc.stdout
    assert "decoy" not in proc.stdout + proc.stderr


def test_router_rules_dir_overrides_the_toml(tmp_path: Path) -> None:
    write(tmp_path / "etc" / "router.toml", 'rules_dir = "my-rules"\n')
    write(tmp_path / "etc" / "my-rules" / "bad.rules", BROKEN)
    write(tmp_path / "override" / "ok.rules", CLEAN)
    proc = run_check(
        cwd=tmp_path,
        env={
            "ROUTER_CONFIG": str(tmp_path / "etc" / "router.toml"),
            "ROUTER_RULES_DIR": str(tmp_path / "override"),
        },
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 file(s), 1 rule(s)" in proc.stdout


def test_no_path_and_missing_rules_dir_exits_2(tmp_path: Path) -> None:
    proc = run_check(cwd=tmp_path, env={"ROUTER_RULES_DIR": str(tmp_path / "nope")})
    assert proc.returncode == 2
    assert "nope" in proc.stderr


def test_directory_loads_in_file_name_order(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    # Written out of order; only *.rules files count.
    write(rules / "b.rules", 'target ops = "json://localhost:10/"\non StartApp\n  notify ops\n')
    write(rules / "a.rules", 'target ops = "json://localhost:9/"\non EndApp\n  notify ops\n')
    write(rules / "10-first.rules", BROKEN)
    write(rules / "notes.txt", BROKEN)
    write(rules / "c.rules.bak", BROKEN)
    proc = run_check("rules", cwd=tmp_path)
    assert proc.returncode == 1
    heads = [line for line in proc.stdout.splitlines() if ": error: " in line]
    assert heads == [
        "rules/10-first.rules:1:4: error: unknown event 'EndScrip' (did you mean 'EndScript'?)",
        # a.rules loads before b.rules, so b's target is the duplicate.
        "rules/b.rules:1:8: error: 'ops' is already defined at rules/a.rules:1:8",
    ]
    assert "3 file(s), 3 rule(s)" in proc.stderr


def test_several_paths_are_all_checked(tmp_path: Path) -> None:
    write(tmp_path / "one.rules", BROKEN)
    write(tmp_path / "two" / "two.rules", 'on EndScript where scrpt == "x"\n  stop\n')
    proc = run_check("one.rules", "two", cwd=tmp_path)
    assert proc.returncode == 1
    assert "one.rules:1:4: error: unknown event" in proc.stdout
    assert "two/two.rules:1:20: error: unknown field 'scrpt'" in proc.stdout


# ---------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------


def test_no_secret_in_any_output(tmp_path: Path) -> None:
    write(
        tmp_path / "secrets.rules",
        # An unused target (its line is printed under the warning), a URL
        # Apprise does not know, a URL with a secret query value, and an
        # env() variable holding a bad URL with a password.
        f'target mail = "mailto://backup:{SECRET}@example.com"\n'
        f'target odd = "foo://admin:{SECRET}@host/path"\n'
        f'target hook = "json://localhost:9/?+X-Token={SECRET}"\n'
        'target fromenv = env("RR_CLI_SECRET_URL")\n'
        "on EndScript\n"
        "  notify odd, fromenv, hook\n",
    )
    env = {"RR_CLI_SECRET_URL": f"foo://root:{SECRET}@mail.example.com"}
    outputs = []
    for args in (
        ["secrets.rules"],
        ["--strict", "secrets.rules"],
        ["--format", "json", "secrets.rules"],
    ):
        proc = run_check(*args, cwd=tmp_path, env=env)
        assert proc.returncode == 1
        outputs.append(proc.stdout + proc.stderr)
    text_output, _, json_output = outputs
    # The problems are reported...
    assert "secrets.rules:1:8: warning: target 'mail' is never notified" in text_output
    assert "secrets.rules:2:14: error: 'foo://****'" in text_output
    assert "RR_CLI_SECRET_URL holds 'foo://****'" in text_output
    assert {p["code"] for p in json.loads(json_output)} == {"unused-target", "bad-url"}
    # ...and the password is in none of it.
    for output in outputs:
        assert SECRET not in output
    # The masked source lines are still there, with the carets under them.
    assert '    target mail = "mailto://backup:****@example.com/"' in text_output
