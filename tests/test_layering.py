"""The design's arrows: models <- runtime <- face/video <- blend <- swap/enhance <- gpu <- pipeline;
nothing below imports anything above it, and no module of swapline imports itself back through
others (imports read from the source without importing it)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

PACKAGE = Path(__file__).resolve().parents[1] / "swapline"

#: the engine's layers, bottom up; top-level helpers (config, errors, formats, ...) are below all
LAYERS: dict[str, int] = {
    "models": 0, "runtime": 1,
    "face": 2, "video": 2,
    "blend": 3,
    "swap": 4, "enhance": 4,
    "gpu": 5,
    "pipeline": 6,
}
#: front ends and the job core: never imported by the engine
FRONT_ENDS = {"cli", "server", "bench", "live", "distributed"}
ABOVE = {"api", "jobs", *FRONT_ENDS}


def _imports(path: Path) -> list[tuple[str, int]]:
    """``(first package under swapline, line)`` of every relative import in ``path``."""
    rel = path.relative_to(PACKAGE).parts
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = list(rel[:-1])
            if node.level > 1:
                base = base[: len(base) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            if target:
                out.append((target[0], node.lineno))
            else:  # "from .. import x"
                out.extend((alias.name, node.lineno) for alias in node.names)
    return out


ENGINE_FILES = sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] in LAYERS)


@pytest.mark.parametrize("path", ENGINE_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_below_imports_above(path: Path) -> None:
    layer = LAYERS[path.relative_to(PACKAGE).parts[0]]
    for target, line in _imports(path):
        assert target not in ABOVE, f"{path.relative_to(PACKAGE)}:{line} imports {target}"
        if target in LAYERS:
            assert LAYERS[target] <= layer, f"{path.relative_to(PACKAGE)}:{line} imports {target} (above it)"


JOB_CORE_FILES = sorted((PACKAGE / "jobs").rglob("*.py"))


@pytest.mark.parametrize("path", JOB_CORE_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_job_core_imports_no_front_end(path: Path) -> None:
    for target, line in _imports(path):
        assert target not in FRONT_ENDS, f"{path.relative_to(PACKAGE)}:{line} imports the front end {target}"


def _module_name(path: Path) -> str:
    parts = ["swapline", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return inside


def _import_graph() -> dict[str, set[str]]:
    """``{module: modules of swapline it imports}``, counting every import statement (inside
    functions too, where an import can hide a cycle), but not those for annotations only."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}

    def known(name: str) -> str | None:  # the module a dotted name lives in
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_nodes(tree)
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
                target = ".".join(p for p in (base, node.module or "") if p)
                names = [f"{target}.{alias.name}" for alias in node.names] + [target]
            else:
                continue
            found = [known(n) for n in names if n.startswith("swapline")]
            hit = next((f for f in found if f), None)  # the imported module, or the one holding the name
            if hit and hit != module:
                targets.add(hit)
        graph[module] = targets
    return graph


def test_no_import_cycles() -> None:
    graph = _import_graph()
    names = sorted(graph)
    index = {n: i for i, n in enumerate(names)}
    rows = [index[a] for a in names for _ in graph[a]]
    cols = [index[b] for a in names for b in sorted(graph[a])]
    adjacency = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(names), len(names)))
    _, labels = connected_components(adjacency, directed=True, connection="strong")
    groups = [[n for n in names if labels[index[n]] == label] for label in set(labels.tolist())]
    cycles = sorted(" <-> ".join(g) for g in groups if len(g) > 1)
    assert not cycles, cycles


def test_the_cycle_check_sees_a_cycle_hidden_in_a_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "swapline"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub.b import thing\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def thing():\n    from ..a import other\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import thing\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    graph = _import_graph()
    assert graph["swapline.a"] == {"swapline.sub.b"} and graph["swapline.sub.b"] == {"swapline.a"}
    assert graph["swapline.c"] == set()  # an import for annotations only is no arrow
    with pytest.raises(AssertionError, match="swapline.a <-> swapline.sub.b"):
        test_no_import_cycles()
