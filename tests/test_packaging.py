"""Packaging: the grammar travels with the code, from a checkout and in a wheel.

These tests build a real wheel from a copy of this checkout, install it into
a scratch directory and run it from there in fresh interpreters, so a broken
``package-dir`` / ``package-data`` mapping fails here rather than on an
admin's machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DIST_NAME = "retro-router"

VALID_RULES = textwrap.dedent(
    """\
    target ops = "json://localhost:9/"

    rule "script failed"
    on EndScript where errors > 0
      notify ops title "{{ script }} failed" body "{{ errors }} errors"

    on any
      log "{{ received }} {{ event }} {{ args | join(' ') }}"
    """
)

# `where` with no condition: the syntax error is at `log`, line 2 column 3.
BROKEN_RULES = 'on EndScript where\n  log "x"\n'

# Left out of the copy the wheel is built from: caches, earlier builds, venvs.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv*",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
)


def test_grammar_found_from_checkout() -> None:
    import router
    from router.language.grammar import grammar_path, lark_parser

    router_dir = Path(router.__file__).resolve().parent
    if router_dir != REPO_ROOT / "router":
        pytest.skip(f"router is imported from {router_dir}, not from this checkout")
    path = grammar_path()
    assert path.is_file()
    assert path.resolve() == (REPO_ROOT / "grammar" / "rules.lark").resolve()
    # And the parser built from it accepts the shipped default rules.
    lark_parser().parse(
        (REPO_ROOT / "rules" / "default.rules").read_text(encoding="utf-8"), start="start"
    )


def test_console_scripts_declared() -> None:
    dist = metadata.distribution(DIST_NAME)
    scripts = {ep.name: ep for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts["router"].value == "router.cli:main"
    assert scripts["retroeventhandler"].value == "router.handler:run"
    for entry_point in scripts.values():
        assert callable(entry_point.load())


def test_console_script_runs() -> None:
    """The installed `router` script starts and answers --version."""
    script = Path(sysconfig.get_path("scripts")) / ("router.exe" if os.name == "nt" else "router")
    if not script.exists():
        pytest.skip(f"retro-router is not installed into this interpreter's scripts ({script})")
    done = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "retro-router" in done.stdout


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A wheel built from a copy of this checkout, installed with --target."""
    try:
        import setuptools  # noqa: F401
    except ImportError:  # pragma: no cover - the test extra installs it
        pytest.skip("setuptools is not installed (pip install -e '.[test]' brings it)")
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    shutil.copytree(REPO_ROOT, source, ignore=_NOT_SOURCE)
    wheels = base / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("retro_router-*.whl")
    site = base / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index"]
        + ["--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return {"base": base, "wheel": wheel, "site": site}


def _run_from_site(installed: dict[str, Path], *args: str) -> subprocess.CompletedProcess:
    """Run this interpreter with only the installed wheel in front, outside the repo."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(installed["site"])
    env.pop("ROUTER_CONFIG", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=str(installed["base"]),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_wheel_contains_grammar_and_entry_points(installed_wheel: dict[str, Path]) -> None:
    with zipfile.ZipFile(installed_wheel["wheel"]) as archive:
        names = set(archive.namelist())
        (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_text = archive.read(entry_points).decode("utf-8")
    assert "router/grammar/rules.lark" in names
    assert "router/__init__.py" in names
    assert "router/language/parser.py" in names
    assert not any(n.startswith("grammar/") for n in names), "grammar/ must not be top-level"
    assert "router = router.cli:main" in entry_text
    assert "retroeventhandler = router.handler:run" in entry_text


def test_wheel_parses_with_its_own_grammar(installed_wheel: dict[str, Path]) -> None:
    rules = installed_wheel["base"] / "valid.rules"
    rules.write_text(VALID_RULES, encoding="utf-8")
    program = textwrap.dedent(
        f"""\
        import sys
        from pathlib import Path
        import router
        from router.language.grammar import grammar_path
        from router.language.parser import parse_file
        site = Path({str(installed_wheel["site"])!r}).resolve()
        assert site in Path(router.__file__).resolve().parents, router.__file__
        rule_file, diagnostics = parse_file(Path({str(rules)!r}))
        assert not diagnostics, diagnostics
        assert len(rule_file.statements) == 3, rule_file.statements
        print(grammar_path().resolve())
        """
    )
    done = _run_from_site(installed_wheel, "-c", program)
    assert done.returncode == 0, done.stdout + done.stderr
    grammar = Path(done.stdout.strip().splitlines()[-1])
    assert grammar == installed_wheel["site"].resolve() / "router" / "grammar" / "rules.lark"
    assert REPO_ROOT not in grammar.parents


def test_wheel_router_check(installed_wheel: dict[str, Path]) -> None:
    good = installed_wheel["base"] / "good.rules"
    good.write_text(VALID_RULES, encoding="utf-8")
    bad = installed_wheel["base"] / "bad.rules"
    bad.write_text(BROKEN_RULES, encoding="utf-8")

    done = _run_from_site(installed_wheel, "-m", "router.cli", "check", str(good))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 error(s)" in done.stdout

    done = _run_from_site(installed_wheel, "-m", "router.cli", "check", str(bad))
    assert done.returncode == 1, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "bad.rules:2:3: error" in output
    assert "error" in output


@pytest.fixture(scope="module")
def fresh_venv(installed_wheel: dict[str, Path]) -> Path:
    """A new virtual environment outside the checkout with the wheel installed
    the normal way (not editable, dependencies from the package index)."""
    venv = installed_wheel["base"] / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(installed_wheel["wheel"])],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return venv


@pytest.mark.config_discovery
@pytest.mark.skipif(os.name != "posix", reason="the venv's bin/ layout and Unix sockets")
def test_a_normal_install_works_as_retrospect_runs_it(fresh_venv: Path, tmp_path: Path) -> None:
    """pip install of the wheel, `router init`, then the handler started as
    Retrospect starts it: a bare environment, an unknown working directory,
    router.toml found beside the handler; inline, and with `router serve`."""
    from helpers import run_process, wait_until

    bin_dir = fresh_venv / "bin"
    site = tmp_path / "site"
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    nowhere = Path("/")
    written = tmp_path / "Retrospect" / "RetroEventHandler"  # router init --handler's
    init = run_process(
        [bin_dir / "router", "init", "--config", bin_dir / "router.toml"]
        + ["--rules-dir", site / "rules", "--state-dir", site / "state", "--handler", written],
        cwd=nowhere,
        env=bare,
    )
    assert init.code == 0, init.err
    assert written.read_text().startswith(f"#!{bin_dir / 'python'}") and os.access(written, os.X_OK)
    (site / "rules" / "site.rules").write_text(
        'on StartScript where script == "Nightly"\n  abort "not tonight"\n', encoding="utf-8"
    )
    check = run_process([bin_dir / "router", "check"], cwd=nowhere, env=bare)
    assert check.code == 0, check.out + check.err
    assert "2 file(s), 11 rule(s): 0 error(s)" in check.out + check.err
    assert str(REPO_ROOT) not in check.out + check.err  # nothing read from the checkout

    file = tmp_path / "intervention"
    file.write_text("")
    inline = run_process(
        [bin_dir / "retroeventhandler", "StartScript", "Nightly", "2/10/2017 15:39", file],
        cwd=nowhere,
        env=bare,
    )
    assert (inline.code, file.read_text()) == (1, "not tonight\n"), inline.err
    file.write_text("")
    inline = run_process(
        [written, "StartScript", "Nightly", "2/10/2017 15:39", file], cwd=nowhere, env=bare
    )
    assert (inline.code, file.read_text()) == (1, "not tonight\n"), inline.err

    service = subprocess.Popen(
        [str(bin_dir / "router"), "serve"], cwd=nowhere, env=bare, stderr=subprocess.PIPE
    )
    try:
        wait_until(lambda: (site / "state" / "router.sock").exists(), "the service's socket")
        for handler in (bin_dir / "retroeventhandler", written):
            served = run_process(
                [handler, "EndScript", "Nightly", "0", "0", "successful"], cwd=nowhere, env=bare
            )
            assert (served.code, served.err) == (0, "")
    finally:
        service.terminate()
        service.wait(timeout=60)
    history = run_process(
        [bin_dir / "router", "history", "--format", "json"], cwd=nowhere, env=bare
    )
    import json

    entries = json.loads(history.out)
    assert [(e["event"], e["fields"]["script"]) for e in reversed(entries)] == [
        ("StartScript", "Nightly"),
        ("StartScript", "Nightly"),
        ("EndScript", "Nightly"),
        ("EndScript", "Nightly"),
    ]
    events_log = (site / "state" / "events.log").read_text()
    assert events_log.count("\n") == 4  # the default rules logged each


def test_the_wheel_carries_the_default_rules_and_the_config_template(
    installed_wheel: dict[str, Path],
) -> None:
    with zipfile.ZipFile(installed_wheel["wheel"]) as archive:
        names = set(archive.namelist())
    assert "router/rules/default.rules" in names
    assert "router/data/router.toml" in names
    package = REPO_ROOT / "router"
    checkout = {
        "router/" + path.relative_to(package).as_posix()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert checkout - names == set(), "files of the package missing from the wheel"
    assert not any(n.startswith("rules/") for n in names)
