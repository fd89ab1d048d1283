"""The rooms and what each may import (README, Layout): checked on the source, every import statement
(module level and inside functions), so the layout cannot drift back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from feature_store.settings import project_root

# room -> the rooms it may import (besides itself)
MAY_IMPORT = {
    "feature_store": set(),
    "model_runtime": {"feature_store"},
    "monitoring": {"feature_store", "model_runtime"},
    "ehr": {"feature_store", "model_runtime"},
    "training": {"feature_store", "model_runtime", "monitoring"},
    "serving": {"feature_store", "model_runtime", "monitoring", "ehr"},
    "pverisk": {"feature_store", "model_runtime", "monitoring", "ehr", "training", "serving"},
}
ROOMS = set(MAY_IMPORT) | {"benchmarks"}
MAX_LINES = 500


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def _product_files() -> list[Path]:
    root = project_root()
    return sorted(p for room in MAY_IMPORT for p in (root / room).rglob("*.py"))


@pytest.mark.parametrize("room", sorted(MAY_IMPORT))
def test_room_imports_only_rooms_below_it(room: str) -> None:
    bad = []
    for path in sorted((project_root() / room).rglob("*.py")):
        for line, module in _imports(path):
            top = module.split(".")[0]
            if top in ROOMS and top != room and top not in MAY_IMPORT[room]:
                bad.append(f"{path.relative_to(project_root())}:{line} imports {module}")
    assert not bad, "\n".join(bad)


def test_no_product_file_is_over_the_size_limit() -> None:
    big = [f"{p.relative_to(project_root())}: {n} lines" for p in _product_files()
           if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not big, "split by responsibility:\n" + "\n".join(big)


def test_the_checks_see_every_room() -> None:
    # a room renamed or added without updating MAY_IMPORT would be checked by nothing
    root = project_root()
    packages = {p.parent.name for p in root.glob("*/__init__.py")}
    assert packages - {"tests"} == ROOMS
