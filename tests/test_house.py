"""The house: stages one way, no import cycle, no room too big.

Read from the code's own imports (module level, inside functions, and under
TYPE_CHECKING alike), so the layout ARCHITECTURE.md describes cannot drift
from the code without a test saying so.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "router"

#: The stages, lowest first: a module imports only from its own stage or
#: earlier ones (ARCHITECTURE.md). A new module must be placed here.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            "router",
            "router.units",
            "router.bulk",
            "router.suggest",
            "router.trust",
            "router.locations",
            "router.commandline",
            "router.config",
            "router.schedules",
            "router.exposition",
        ),
    ),
    ("events", ("router.events", "router.catalog", "router.runs")),
    ("local steps", ("router.actions", "router.steps")),
    ("destinations", ("router.urls", "router.notifiers")),
    ("language", ("router.language",)),
    ("engine", ("router.engine",)),
    ("templates", ("router.template_limits", "router.templates", "router.rendering")),
    ("checker", ("router.checker",)),
    ("loading", ("router.loader", "router.watch")),
    ("store", ("router.store",)),
    ("delivery", ("router.delivery", "router.spool", "router.forwarding")),
    (
        "dispatch",
        (
            "router.dispatch",
            "router.timers",
            "router.explain",
            "router.silencing",
            "router.status",
        ),
    ),
    (
        "entry points",
        (
            "router.service",
            "router.handler",
            "router.cli",
            "router.init",
            "router.completion",
        ),
    ),
)
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 300
#: Data tables may be longer than a module of code.
DATA_TABLES: frozenset[str] = frozenset({"router.catalog"})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path) -> Iterator[str]:
    """The router modules ``name`` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for candidate in candidates:
            # The module itself if it is one (``from router.store import journal``),
            # else the nearest enclosing module (``from router.store import Store``).
            while candidate and candidate not in MODULES:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name and not name.startswith(candidate + "."):
                yield candidate


EDGES = {name: set(imported(name, path)) for name, path in MODULES.items()}


def stage_of(name: str) -> int:
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(STAGES):
        for prefix in prefixes:
            # "router" (the package itself) places no module but itself.
            inside = name.startswith(prefix + ".") and prefix != "router"
            if (name == prefix or inside) and len(prefix) > best:
                best, rank = len(prefix), index
    return rank


def test_every_module_has_a_stage() -> None:
    unplaced = sorted(name for name in MODULES if stage_of(name) < 0)
    assert unplaced == [], "place these modules in STAGES (and in ARCHITECTURE.md)"


def test_no_module_imports_a_later_stage() -> None:
    upward = sorted(
        f"{a} ({STAGES[stage_of(a)][0]}) imports {b} ({STAGES[stage_of(b)][0]})"
        for a, targets in EDGES.items()
        for b in targets
        if stage_of(b) > stage_of(a) >= 0
    )
    assert upward == []


def test_no_import_cycle() -> None:
    cycles = strongly_connected(EDGES)
    assert cycles == []


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: Tarjan's components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_rooms_are_not_too_big(name: str) -> None:
    text = MODULES[name].read_text(encoding="utf-8")
    lines = len(text.splitlines())
    if name not in DATA_TABLES:
        assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines: split it"
    big = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES
    ]
    assert big == []


def test_the_check_finds_a_cycle() -> None:
    """The cycle finder itself: a loop through three modules is one cycle."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(edges) == [["a", "b", "c"]]


def test_architecture_md_names_every_stage_and_room() -> None:
    """ARCHITECTURE.md's table and the stages here are one plan."""
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    missing = []
    for stage, prefixes in STAGES:
        if f"| {stage} |" not in text:
            missing.append(f"stage {stage}")
        for prefix in prefixes:
            if prefix == "router":
                continue
            short = prefix.split(".", 1)[1]
            is_package = (PACKAGE / short.replace(".", "/") / "__init__.py").is_file()
            if f"`{short}/`" not in text if is_package else f"`{short}`" not in text:
                missing.append(prefix)
    assert missing == []
