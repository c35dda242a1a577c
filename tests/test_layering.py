"""The design's arrows: models <- runtime <- face/swap/blend/enhance/gpu/video <- pipeline; nothing
below imports anything above it (relative imports, read from the source without importing it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "swapline"

#: the engine's layers, bottom up; top-level helpers (config, errors, formats, ...) are below all
LAYERS: dict[str, int] = {
    "models": 0, "runtime": 1,
    "face": 2, "swap": 2, "blend": 2, "enhance": 2, "gpu": 2, "video": 2,
    "pipeline": 3,
}
#: front ends and the job core: never imported by the engine
FRONT_ENDS = {"cli", "commands", "cli_models", "cli_jobs", "cli_serve", "cli_live", "cli_batch", "server", "bench",
              "live", "distributed"}
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
