"""Import rules, checked over every module of the package by reading its source.

Data flows one way: sources -> ingest -> store -> analyze. So:
- no import circles anywhere;
- `analyze/` never imports `ingest/` (not even through another module);
- `store/` imports neither `ingest/` nor `analyze/`, nor any front end or the Lab;
- only the Lab (LAB_MODULES, and the HTTP client, its twin: MAY_IMPORT_BOTH) imports both
  `ingest/` and `analyze/`: the CLI and the service reach them through the Lab, and use
  the package's own names (embedlab.IngestError) and the results' own renderings.

An import counts wherever it is written (at the top of a module or inside a function),
except under `if TYPE_CHECKING:` (annotations only, never run). `import a.b.c` is an
edge to `a.b.c`; `from a.b import c` is an edge to `a.b.c` when that is a module, else to
`a.b`. The parent packages Python runs on the way are not counted as edges.

`python tests/test_imports.py` prints the circles found (and the other rules broken).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "embedlab"
# the folders installed as embedlab.<name> (pyproject's [tool.setuptools] packages)
SUBPACKAGES = ("store", "ingest", "analyze", "service", "web")

# The Lab: lab.py and the use-case modules it is made of (Inputs, BatchUseCases). They wire
# ingest/ and analyze/ together, and so may import both. So may the HTTP client: it is the
# Lab's twin over `embedlab serve` (the service's Lab does the work) and rebuilds the same
# results and errors (Analysis, Comparison, IngestReport, IngestError...) from JSON.
LAB_MODULES = frozenset(
    {
        f"{PACKAGE}.lab",
        f"{PACKAGE}.lab_batches",
        f"{PACKAGE}.lab_naming",
        f"{PACKAGE}.lab_lookups",
        f"{PACKAGE}.inputs",
    }
)
MAY_IMPORT_BOTH = LAB_MODULES | {f"{PACKAGE}.client"}
# What store/ must never reach, directly or through another module.
STORE_FORBIDDEN = (
    f"{PACKAGE}.ingest",
    f"{PACKAGE}.analyze",
    f"{PACKAGE}.service",
    f"{PACKAGE}.lab",
    f"{PACKAGE}.lab_batches",
    f"{PACKAGE}.lab_naming",
    f"{PACKAGE}.inputs",
    f"{PACKAGE}.cli",
    f"{PACKAGE}.cli_batches",
    f"{PACKAGE}.cli_update",
    f"{PACKAGE}.client",
)


def module_files() -> dict[str, Path]:
    """Every module of the package by its dotted name (tests/, bench/, docs/ are not in it)."""
    files: dict[str, Path] = {}
    folders = [(ROOT, PACKAGE)] + [(ROOT / sub, f"{PACKAGE}.{sub}") for sub in SUBPACKAGES]
    for folder, prefix in folders:
        for path in sorted(folder.glob("*.py")):
            name = prefix if path.stem == "__init__" else f"{prefix}.{path.stem}"
            files[name] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: all of them but those under TYPE_CHECKING."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the `else:` of `if TYPE_CHECKING:` does run
            continue
        stack.extend(ast.iter_child_nodes(node))


def _base(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name `from <level dots><target> import ...` means inside `module`."""
    if level == 0:
        return target or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    if level > 1:
        parts = parts[: -(level - 1)]
    return ".".join(parts + ([target] if target else []))


def imports_of(module: str, path: Path, known: Iterable[str]) -> set[str]:
    """The package's own modules that `module` imports (see the module docstring)."""
    known = set(known)
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def add(name: str) -> None:
        # the longest prefix of `name` that is one of the package's modules
        parts = name.split(".")
        while parts:
            candidate = ".".join(parts)
            if candidate in known:
                found.add(candidate)
                return
            parts.pop()

    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    add(alias.name)
            continue
        base = _base(module, is_package, node.level, node.module)
        if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
            continue
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            add(submodule if submodule in known else base)
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, files) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:  # iterative, so a deep graph cannot hit the recursion limit
        nonlocal counter
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
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

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(found)


def cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One circle through the component's first module, as a -> b -> ... -> a."""
    members = set(component)
    start = component[0]
    # breadth-first from start back to start, inside the component
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [start]
                    while node != start:
                        path.append(node)
                        node = previous[node]
                    return [start, *reversed(path[1:]), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return component  # not reached: a component of two or more has a circle


def describe_cycles(graph: dict[str, set[str]]) -> list[str]:
    def short(name: str) -> str:
        return name.removeprefix(PACKAGE + ".")

    lines = []
    for component in cycles(graph):
        circle = " -> ".join(short(m) for m in cycle_path(graph, component))
        lines.append(f"{circle}  (component: {', '.join(short(m) for m in component)})")
    return lines


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module `start` imports, directly or not, mapped to the module importing it."""
    seen: dict[str, str] = {}
    frontier = [start]
    while frontier:
        node = frontier.pop()
        for child in sorted(graph[node]):
            if child not in seen and child != start:
                seen[child] = node
                frontier.append(child)
    return seen


def chain(graph: dict[str, set[str]], start: str, target: str) -> str:
    via = reachable(graph, start)
    path = [target]
    while path[-1] != start:
        path.append(via[path[-1]])
    return " -> ".join(reversed(path))


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def broken_rules(graph: dict[str, set[str]]) -> list[str]:
    """Every import rule broken, one line each (the circles are reported apart)."""
    problems = []
    ingest, analyze, store = (f"{PACKAGE}.{p}" for p in ("ingest", "analyze", "store"))
    for module in sorted(graph):
        if in_package(module, analyze):
            for target in sorted(reachable(graph, module)):
                if in_package(target, ingest):
                    problems.append(f"analyze imports ingest: {chain(graph, module, target)}")
                    break
        if in_package(module, store):
            for target in sorted(reachable(graph, module)):
                if any(in_package(target, bad) for bad in STORE_FORBIDDEN):
                    problems.append(f"store imports {target}: {chain(graph, module, target)}")
                    break
        direct = graph[module]
        if (
            module not in MAY_IMPORT_BOTH
            and any(in_package(m, ingest) for m in direct)
            and any(in_package(m, analyze) for m in direct)
        ):
            both = sorted(m for m in direct if in_package(m, ingest) or in_package(m, analyze))
            problems.append(f"{module} imports both ingest and analyze: {', '.join(both)}")
    return problems


# --- the rules ----------------------------------------------------------------------


def test_every_module_is_read():
    graph = import_graph()
    for name in (
        f"{PACKAGE}",
        f"{PACKAGE}.lab",
        f"{PACKAGE}.cli",
        f"{PACKAGE}.store.chroma_store",
        f"{PACKAGE}.ingest.pipeline",
        f"{PACKAGE}.analyze.run",
        f"{PACKAGE}.service.app",
    ):
        assert name in graph
    assert not any(".tests" in m or ".bench" in m for m in graph)
    # the reader resolves relative imports and the ones inside functions
    assert f"{PACKAGE}.analyze.select" in graph[f"{PACKAGE}.analyze.run"]
    assert f"{PACKAGE}.store.neighbours" in graph[f"{PACKAGE}.analyze.describe"]


def test_the_reader_finds_each_kind_of_import(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "import embedlab.store.keys\n"
        "from . import plots\n"
        "from .. import errors\n"
        "from ..store import Space\n"
        "if TYPE_CHECKING:\n"
        "    from ..ingest import pipeline\n"
        "else:\n"
        "    from .select import Corpus\n"
        "def later():\n"
        "    from .reduce import reduce_2d\n"
    )
    known = {
        "embedlab",
        "embedlab.errors",
        "embedlab.store",
        "embedlab.store.keys",
        "embedlab.ingest.pipeline",
        "embedlab.analyze",
        "embedlab.analyze.plots",
        "embedlab.analyze.select",
        "embedlab.analyze.reduce",
    }
    assert imports_of("embedlab.analyze.mod", source, known) == {
        "embedlab.store.keys",
        "embedlab.analyze.plots",
        "embedlab.errors",
        "embedlab.store",
        "embedlab.analyze.select",
        "embedlab.analyze.reduce",
    }


def test_cycle_finder_reports_each_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d", "a"}, "f": set()}
    assert cycles(graph) == [["a", "b", "c"], ["d", "e"]]
    assert cycle_path(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    found = describe_cycles(import_graph())
    assert not found, "import circles:\n" + "\n".join(found)


def test_analyze_never_imports_ingest_and_store_imports_neither():
    graph = import_graph()
    problems = [p for p in broken_rules(graph) if not p.endswith("both ingest and analyze")]
    problems = [p for p in problems if p.startswith(("analyze", "store"))]
    assert not problems, "\n".join(problems)


def test_only_the_lab_imports_both_ingest_and_analyze():
    problems = [p for p in broken_rules(import_graph()) if "imports both" in p]
    assert not problems, "\n".join(problems)


def test_importing_every_analyze_module_runs_no_ingest_module():
    """What the reading above says, checked by running it: every analyze module imported
    (tests/test_analyze.py checks run, select and plots the same way)."""
    import subprocess

    names = sorted(m for m in module_files() if in_package(m, f"{PACKAGE}.analyze"))
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('embedlab.ingest')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("module", ["lab", "lab_batches", "inputs"])
def test_the_lab_modules_exist(module):
    assert f"{PACKAGE}.{module}" in module_files()


if __name__ == "__main__":
    graph = import_graph()
    circles = describe_cycles(graph)
    print(f"{len(circles)} import circle(s)")
    for line in circles:
        print("  " + line)
    others = broken_rules(graph)
    print(f"{len(others)} other rule(s) broken")
    for line in others:
        print("  " + line)
    sys.exit(1 if circles or others else 0)
