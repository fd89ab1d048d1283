"""The benchmark results interface and BENCHMARKS.md rendering (no benchmark is run)."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_report
from benchmarks.bench_common import table, write_result


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("PVERISK_BENCH_DIR", str(tmp_path / "bench"))
    return tmp_path / "bench"


def test_write_result_follows_the_interface(results):
    path = write_result("load", "Load", "what was measured",
                        [table("t", ["a", "b"], [["x", 1.5], ["y", None]])], ["a note"], show=False)
    data = json.loads(path.read_text())
    assert path == results / "load.json"
    assert data == {"title": "Load", "description": "what was measured",
                    "tables": [{"caption": "t", "columns": ["a", "b"], "rows": [["x", 1.5], ["y", None]]}],
                    "notes": ["a note"]}
    assert bench_report.check(data) == []


def test_a_ragged_table_is_refused():
    with pytest.raises(ValueError, match="2 columns"):
        table("t", ["a", "b"], [["only one"]])


def test_report_orders_results_and_describes_the_machine(results):
    for name in ("training", "zz_other", "serving", "load"):
        write_result(name, f"Title {name}", "d", [table("c", ["k"], [[name]])], show=False)
    (results / "broken.json").write_text(json.dumps({"title": "no tables"}))
    text = bench_report.render(results)
    order = [text.index(f"## Title {n}") for n in ("serving", "load", "training", "zz_other")]
    assert order == sorted(order), "results not in the stable order"
    for fact in ("| CPU |", "| RAM |", "| OS |", "| Python |", "xgboost", "| Rendered |", "make bench"):
        assert fact in text, fact
    assert "broken.json does not follow the results interface" in text
    assert "| k |" in text and "| serving |" in text


def test_report_without_results_says_how_to_get_them(tmp_path):
    assert "Run `make bench`" in bench_report.render(tmp_path / "none")
