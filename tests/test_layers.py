"""The package's layers import one way only: entry points -> plugin shell -> sweep -> runs ->
engine, with no cycle, and the records layer loads neither Hydra nor TensorFlow.

Read from the source with `ast` (every import, inside functions too), so the test needs no
TensorFlow and fails on the edge itself, naming the file and line.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY_MODULES = {"__init__", "__main__", "api", "cli", "console", "quiet", "hydra_setup", "report"}
# Higher imports lower, never the other way round.
RANK = {"engine": 0, "runs": 1, "sweep": 2, "plugin": 3, "entry": 4}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer(module: str) -> str | None:
    """The layer of an attnlab module name, None for modules outside the layers."""
    parts = module.split(".")
    if parts[0] == "hydra_plugins" and len(parts) > 1 and parts[1] == "attnlab_sweeper":
        return "plugin"
    if parts[0] != "attnlab":
        return None
    if len(parts) == 1 or parts[1] in ENTRY_MODULES:
        return "entry"
    if parts[1] in ("engine", "runs", "sweep"):
        return parts[1]
    return None  # attnlab.conf (YAML only)


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every attnlab or plugin module this file imports, with its line, resolved to the
    longest existing module (`from attnlab.runs import records` -> attnlab.runs.records)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                known = candidate in MODULES
                found.append((candidate if known else node.module, node.lineno))
    return [(m, line) for m, line in found if layer(m) is not None]


SOURCES = sorted([*ROOT.glob("attnlab/**/*.py"), *ROOT.glob("hydra_plugins/**/*.py")])
MODULES = {module_name(p) for p in SOURCES}


def edges() -> list[tuple[str, str, str]]:
    """(importer, imported, where) for every import between the package's modules."""
    out = []
    for path in SOURCES:
        importer = module_name(path)
        for imported, line in imports_of(path):
            if imported != importer:
                out.append((importer, imported, f"{path.relative_to(ROOT)}:{line}"))
    return out


def test_every_module_is_in_a_layer():
    assert {m for m in MODULES if layer(m) is None} == set()


def test_imports_point_down_only():
    upward = [
        f"{where}: {importer} ({layer(importer)}) imports {imported} ({layer(imported)})"
        for importer, imported, where in edges()
        if RANK[str(layer(imported))] > RANK[str(layer(importer))]
    ]
    assert upward == []


def test_no_import_cycle():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for importer, imported, _ in edges():
        graph.setdefault(importer, set()).add(imported)
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_layer_rule_catches_an_upward_import(tmp_path):
    """The checker itself: a module of the engine importing the sweep is an upward edge."""
    assert RANK[str(layer("attnlab.sweep.jobs"))] > RANK[str(layer("attnlab.engine.data"))]
    assert layer("hydra_plugins.attnlab_sweeper.attnlab_sweeper") == "plugin"
    assert layer("attnlab.report") == "entry" and layer("attnlab.runs.report") == "runs"


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
@pytest.mark.parametrize(
    "module", ["attnlab.runs.records", "attnlab.runs.report", "attnlab.engine.config"]
)
def test_records_report_and_config_load_neither_hydra_nor_tensorflow(module):
    code = (
        f"import sys, {module}; "
        "heavy = ('hydra', 'omegaconf', 'tensorflow', 'keras'); "
        "bad = sorted(m for m in heavy if m in sys.modules); "
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == ""


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_importing_the_figures_leaves_the_matplotlib_backend_alone():
    code = (
        "import matplotlib; matplotlib.use('svg'); import attnlab.runs.plots; "
        "print(matplotlib.get_backend())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "svg"
