"""The mutation list (mutation/modules.py) still points at the code that decides.

A split into named steps once moved the gate's comparison with the champion into a private helper that
the registry's function list did not name, so `make mutation` silently stopped scoring it. These checks
fail on that: every listed file, test and function exists, and a private helper called by a listed
function is listed too.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _targets() -> tuple:
    spec = importlib.util.spec_from_file_location("mutation_modules", ROOT / "mutation" / "modules.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module.TARGETS


TARGETS = _targets()


def _top_level_functions(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _private_helpers_called(fn: ast.AST, defined: dict[str, ast.FunctionDef]) -> set[str]:
    return {n.func.id for n in ast.walk(fn)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            and n.func.id.startswith("_") and n.func.id in defined}


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.path)
def test_target_files_and_tests_exist(target) -> None:
    assert (ROOT / target.path).is_file(), target.path
    for test in target.tests:
        assert (ROOT / test.split("::")[0]).is_file(), f"{target.path}: test {test} is gone"


@pytest.mark.parametrize("target", [t for t in TARGETS if t.functions], ids=lambda t: t.path)
def test_listed_functions_exist_and_cover_their_private_helpers(target) -> None:
    defined = _top_level_functions(ROOT / target.path)
    missing = [f for f in target.functions if f not in defined]
    assert not missing, f"{target.path}: listed functions not defined at top level: {missing}"
    unlisted = set()
    for name in target.functions:
        unlisted |= _private_helpers_called(defined[name], defined) - set(target.functions)
    assert not unlisted, (f"{target.path}: {sorted(unlisted)} called by a listed function but not scored; "
                          "add to `functions` in mutation/modules.py")


def test_the_check_sees_a_helper_left_out() -> None:
    """The helper check on the registry's real code: without the comparison listed, it is reported."""
    defined = _top_level_functions(ROOT / "training" / "registry.py")
    assert "_compare_with_champion" in _private_helpers_called(defined["gate"], defined)
