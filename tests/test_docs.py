"""docs/ cannot drift from the code: every example in it runs here.

How examples are marked in docs/*.md (docs/README.md tells writers the same):

- ```rules: a rule file. It must check clean: no error, and no warning but
  those a machine that is not the admin's cannot avoid (ALLOWED_WARNINGS).
  A block whose first line is ``# file: NAME.rules`` is that file of the
  page's rules directory: the named blocks of a page so far are checked
  together, as one directory (a later block of the same name replaces the
  file). A block without that line is a file of its own, ``example.rules``.
- ```rules invalid: a rule file that must have errors (a console block
  after it shows what ``router check`` says about them). It is a file of
  its own, never part of the page's rules directory.
- ```replay and ```jinja, with a first line ``# file: NAME`` or
  ``{# file: NAME #}``: a replay file in the working directory, a template
  beside the rule files. Every later example of the page has them.
- ```console: commands run for real, one per ``$ `` line (``router check``,
  ``test``, ``replay`` or ``events``, optionally after ``NAME=value``
  assignments; ``router silence``; or ``echo $?``), against a site (tests/helpers.py's Site)
  whose rules directory holds the rules of the rules block before it. They
  run in the site's directory, which holds router.toml and rules/. The
  output shown must be the real output (stdout, then stderr), line by line,
  except that a line ``...`` stands for any number of lines and ``...``
  inside a line for any text. The site's directory reads as
  ``/etc/retro-router`` in the output, as on a Linux server.
- Any other block (```text, ```sh, ```toml, ...) is not run.

docs/events.md is also held to the event catalog (router/catalog.py): every
event, every field with its position and type, every intervention effect.
"""

from __future__ import annotations

import functools
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest
from helpers import DOCS, REPO, ROUTER, Block, Site, doc_blocks, run_process, write_rules

from router.catalog import ALIASES, BYTES_FIELD, CATALOG, DERIVED_FIELDS, HISTORY_FIELDS, FieldSpec
from router.checker import check_paths

#: Warnings a doc example may give on a machine that is not the admin's: its
#: environment variables, Apprise config files, programs and log directories
#: are not here, and a small example may declare a target or define it does
#: not use.
ALLOWED_WARNINGS = {
    "unset-env",
    "missing-config",
    "program-not-found",
    "missing-directory",
    "unused-target",
    "unused-define",
    "no-rules",  # a page may show a file of targets before the rules that use them
}
#: Block languages the pages may use; only the first four are run.
RUN = ("rules", "console", "replay", "jinja")
NOT_RUN = ("text", "sh", "toml", "powershell", "bat", "ini", "json", "xml")
#: ``router`` subcommands a console block may run (they change nothing but
#: the example's own site: ``silence`` keeps its silences there).
COMMANDS = ("check", "test", "replay", "events", "silence")
#: How the site's directory is shown in console output.
SITE_SHOWN_AS = "/etc/retro-router"
_MARKER = re.compile(r"^(?:#|\{#)\s*file:\s*(?P<name>\S+)")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

PAGES = sorted(path.name for path in DOCS.glob("*.md"))


# ---------------------------------------------------------------------------
# The examples of a page
# ---------------------------------------------------------------------------


@dataclass
class Example:
    """A block to run, with the files it runs with."""

    block: Block
    #: Rule files of the rules directory: name -> text.
    rules: dict[str, str]
    #: Other files, by path relative to the site's directory.
    files: dict[str, str] = field(default_factory=dict)


def file_marker(block: Block) -> Optional[str]:
    """The NAME of a first line ``# file: NAME`` (``{# file: NAME #}``), if any."""
    match = _MARKER.match(block.text)
    return match.group("name") if match else None


@functools.cache
def page_examples(page: str) -> tuple[Example, ...]:
    """The page's rules and console blocks, each with the files the page has
    given it so far (see the module's docstring)."""
    examples: list[Example] = []
    named: dict[str, str] = {}
    current: dict[str, str] = {}
    files: dict[str, str] = {}
    for block in doc_blocks(page):
        name = file_marker(block)
        if block.lang == "rules":
            if block.info[1:] == ("invalid",):
                current = {name or "example.rules": block.text}
            elif name is not None:
                named[name] = block.text
                current = dict(named)
            else:
                current = {"example.rules": block.text}
            examples.append(Example(block, dict(current), dict(files)))
        elif block.lang in ("replay", "jinja") and name is not None:
            files[("rules/" if block.lang == "jinja" else "") + name] = block.text
        elif block.lang == "console":
            examples.append(Example(block, dict(current), dict(files)))
    return tuple(examples)


def examples_of(lang: str) -> list[pytest.param]:
    return [
        pytest.param(example, id=example.block.name)
        for page in PAGES
        for example in page_examples(page)
        if example.block.lang == lang
    ]


def build_site(example: Example, root: Path) -> Site:
    """A router installation holding the example's rule files and others."""
    site = Site(root)
    for name, text in example.rules.items():
        write_rules(site.rules / name, text)
    for path, text in example.files.items():
        write_rules(site.root / path, text)
    return site


# ---------------------------------------------------------------------------
# Console blocks
# ---------------------------------------------------------------------------


def console_commands(text: str) -> list[tuple[str, list[str]]]:
    """(command, the output shown after it) for each ``$ `` line."""
    commands: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands:
            commands[-1][1].append(line)
        elif line.strip():
            raise AssertionError(f"console output before any command: {line!r}")
    return commands


def line_matches(shown: str, real: str) -> bool:
    if "..." not in shown:
        return shown == real
    pattern = ".*".join(re.escape(part) for part in shown.split("..."))
    return re.fullmatch(pattern, real) is not None


def output_matches(shown: list[str], real: list[str]) -> bool:
    """Whether ``real`` is what ``shown`` says, with its ``...`` lines and parts."""
    shown, real = _trimmed(shown), _trimmed(real)

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(shown):
            return j == len(real)
        if shown[i] == "...":
            return match(i + 1, j) or (j < len(real) and match(i, j + 1))
        return j < len(real) and line_matches(shown[i], real[j]) and match(i + 1, j + 1)

    return match(0, 0)


def _trimmed(lines: list[str]) -> tuple[str, ...]:
    lines = [line.rstrip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    return tuple(lines)


def run_command(site: Site, command: str, last_status: int) -> tuple[int, list[str]]:
    """Run one console command in ``site``: (exit status, output lines)."""
    words = shlex.split(command)
    assignments = {}
    while words and _ASSIGNMENT.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        assignments[name] = value
    if words == ["echo", "$?"]:
        return last_status, [str(last_status)]
    assert words[:1] == ["router"] and words[1:2] and words[1] in COMMANDS, (
        f"a console block may run router {', '.join(COMMANDS)} or echo $?, not: {command}"
    )
    done = run_process(
        [*ROUTER, *words[1:]], cwd=site.root, env={**site.env, **assignments}, timeout=120
    )
    output = done.out + done.err
    for shown in {str(site.root.resolve()), str(site.root)}:
        output = output.replace(shown, SITE_SHOWN_AS)
    return done.code, output.splitlines()


# ---------------------------------------------------------------------------
# The examples
# ---------------------------------------------------------------------------


def test_the_pages_exist_and_have_examples() -> None:
    assert {"README.md", "rules.md", "events.md", "operating.md", "design.md"} <= set(PAGES)
    assert len(examples_of("rules")) >= 20
    assert len(examples_of("console")) >= 10


@pytest.mark.parametrize("page", PAGES)
def test_every_block_is_marked(page: str) -> None:
    """Each block says what it is, so no rule example escapes the tests."""
    for block in doc_blocks(page):
        assert block.lang in RUN + NOT_RUN, f"{block.name}: block without a known language"
        if block.lang in ("rules", "console"):
            assert block.info[1:] in ((), ("invalid",)) and (
                block.lang == "rules" or len(block.info) == 1
            ), f"{block.name}: unknown marks {block.info}"
        if block.lang in ("replay", "jinja"):
            assert file_marker(block), f"{block.name}: its first line must name its file"
        if block.lang == "console":
            assert console_commands(block.text), f"{block.name}: no `$ ` command"


@pytest.mark.parametrize("example", examples_of("rules"))
def test_rules_example_checks_clean(example: Example, tmp_path: Path) -> None:
    site = build_site(example, tmp_path)
    result = check_paths([site.rules])
    problems = [f"{d.path}:{d.line}:{d.column}: {d.code}: {d.message}" for d in result.diagnostics]
    if example.block.info[1:] == ("invalid",):
        assert result.errors, f"{example.block.name} is marked invalid but checks clean"
        return
    bad = [
        text
        for d, text in zip(result.diagnostics, problems)
        if d.is_error or d.code not in ALLOWED_WARNINGS
    ]
    assert bad == [], f"{example.block.name}:\n" + "\n".join(bad)


@pytest.mark.parametrize("example", examples_of("console"))
def test_console_example_prints_what_it_shows(example: Example, tmp_path: Path) -> None:
    site = build_site(example, tmp_path)
    status = 0
    for command, shown in console_commands(example.block.text):
        status, real = run_command(site, command, status)
        assert output_matches(shown, real), (
            f"{example.block.name}: $ {command}\n--- the page shows:\n"
            + "\n".join(shown)
            + "\n--- the command printed:\n"
            + "\n".join(real)
        )


def test_output_matching() -> None:
    assert output_matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert output_matches(["a", "...", "b"], ["a", "b", ""])
    assert output_matches(["x: ... s", "..."], ["x: 12 s", "more"])
    assert not output_matches(["a", "c"], ["a", "b", "c"])
    assert not output_matches(["a"], ["a", "b"])
    assert not output_matches(["x: ... s"], ["y: 1 s"])


def test_console_commands_are_split_at_their_prompts() -> None:
    text = "$ router check a.rules\nok\n$ echo $?\n0\n"
    assert console_commands(text) == [("router check a.rules", ["ok"]), ("echo $?", ["0"])]


# ---------------------------------------------------------------------------
# docs/events.md against the catalog
# ---------------------------------------------------------------------------


def type_label(spec: FieldSpec) -> str:
    """A field's type as ``router events`` shows it."""
    return f"duration ({spec.unit})" if spec.unit else spec.type


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``text`` (header and rule rows skipped)."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        rows.append([cell.strip().strip("`") for cell in line.strip().strip("|").split("|")])
    return [row for row in rows if row and row[0] not in ("#", "field")]


def event_sections() -> dict[str, str]:
    """docs/events.md's section of each event, by its ``### N. Name`` heading."""
    text = (DOCS / "events.md").read_text(encoding="utf-8")
    parts = re.split(r"^### (\d+)\. (\w+)\n", text, flags=re.M)
    return {parts[i + 1]: parts[i + 2].split("\n## ")[0] for i in range(1, len(parts) - 1, 3)}


def expected_rows(spec) -> str:
    """The table an event's section must have, as Markdown (shown on failure)."""
    return "\n".join(
        f"| {i} | `{f.name}` | {type_label(f)} | ... |" for i, f in enumerate(spec.fields, 1)
    )


@pytest.mark.parametrize("spec", CATALOG, ids=lambda spec: spec.name)
def test_events_md_has_every_event_field_position_and_type(spec) -> None:
    sections = event_sections()
    assert spec.name in sections, f"docs/events.md has no '### {spec.number}. {spec.name}'"
    section = sections[spec.name]
    rows = [row[:3] for row in table_rows(section)]
    wanted = [[str(i), f.name, type_label(f)] for i, f in enumerate(spec.fields, 1)]
    assert rows == wanted, f"{spec.name}'s table should read:\n{expected_rows(spec)}"
    if spec.intervention is None:
        assert "passes no intervention file" in section
    else:
        assert f"abort: {spec.intervention}" in " ".join(section.replace("*", "").split())
    for alias, target in ALIASES.items():
        if target == spec.name:
            assert f"`{alias}`" in section


def test_events_md_numbers_the_events_as_the_catalog_does() -> None:
    assert list(event_sections()) == [spec.name for spec in CATALOG]
    text = (DOCS / "events.md").read_text(encoding="utf-8")
    for spec in CATALOG:
        assert f"### {spec.number}. {spec.name}\n" in text


def test_events_md_overview_lists_every_event_with_its_arguments() -> None:
    text = (DOCS / "events.md").read_text(encoding="utf-8")
    overview = text.split("## The events at a glance", 1)[1].split("\n## ", 1)[0]
    rows = {row[1]: row for row in table_rows(overview)}
    for spec in CATALOG:
        assert spec.name in rows, f"the overview has no row for {spec.name}"
        number, _, arguments, effect = rows[spec.name][:4]
        assert number == str(spec.number)
        assert [a.strip(" `[]") for a in arguments.split(",")] == list(spec.field_names)
        assert effect == (spec.intervention or "no intervention file")


def test_events_md_has_every_derived_and_history_field() -> None:
    text = (DOCS / "events.md").read_text(encoding="utf-8")
    derived = text.split("## Fields every event has", 1)[1].split("\n## ", 1)[0]
    rows = {row[0]: row[1] for row in table_rows(derived)}
    for spec in (*DERIVED_FIELDS, BYTES_FIELD, *HISTORY_FIELDS):
        assert rows.get(spec.name) == spec.type, f"{spec.name} ({spec.type}) is missing"
    assert "previous.FIELD" in rows


# ---------------------------------------------------------------------------
# docs/operating.md's router.toml
# ---------------------------------------------------------------------------


def test_operating_md_router_toml_loads_with_every_key(tmp_path: Path) -> None:
    from helpers import every_config_key, toml_keys

    from router import config

    [block] = [b for b in doc_blocks("operating.md", "toml") if "rules_dir" in b.text]
    assert toml_keys(block.text) == every_config_key()
    loaded = config.load(str(write_rules(tmp_path / "router.toml", block.text)))
    assert loaded.warnings == []
    assert loaded.delivery == config.Delivery.defaults()  # the defaults, as it says
    assert loaded.run_env == ("ORACLE_HOME",) and len(loaded.admin) == 1


# ---------------------------------------------------------------------------
# Links, and nothing outside the project
# ---------------------------------------------------------------------------

#: The project's text files (the handler script has no suffix).
TEXT_SUFFIXES = {".py", ".md", ".rules", ".lark", ".toml", ".example", ".j2", ".service", ""}
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize(
    "path", [*(DOCS / p for p in PAGES), REPO / "README.md", REPO / "SECURITY.md"], ids=str
)
def test_relative_links_lead_somewhere(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for match in _LINK.finditer(text):
        target = match.group("target")
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.name}: link to {target}: no such file"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{path.name}: link to {target}: no such heading"


def test_nothing_points_at_documents_outside_the_project() -> None:
    """The project's documents are docs/: no file names the specifications
    it was written from, which live outside it."""
    names = [f"{stem}.md" for stem in ("DESIGN", "LANGUAGE", "EVENTS")] + ["shared" + "/spec"]
    pattern = re.compile("|".join(re.escape(name) for name in names))
    offenders = []
    for path in sorted(REPO.rglob("*")):
        parts = path.relative_to(REPO).parts
        if not path.is_file() or parts[0].startswith(".") or "egg-info" in parts[0]:
            continue
        if path.suffix not in TEXT_SUFFIXES:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in pattern.finditer(text)]
    assert offenders == []
