"""Load smoke test: Locust against the session's real `bentoml serve`, bounded in users and time.

Zero errors, and every response correct: the locustfile counts a response as a success only when
it is a 200 carrying exactly the probability and risk band the service's scoring code gives
in-process for that patient. No timing assertions (speed lives in `make bench`: benchmarks/bench_load.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import bentoml
import pytest

from benchmarks.bench_load import run_locust, write_cases

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cases(imported, tmp_path_factory) -> Path:
    model, _ = imported
    stored = bentoml.models.get(model.tag)
    out = tmp_path_factory.mktemp("load") / "cases.json"
    write_cases(Path(stored.path_of("mlflow_model")), dict(stored.info.labels), out, n_patients=100, batch_size=10)
    return out


def test_load_smoke_zero_errors_every_answer_correct(server, cases, tmp_path):
    result = run_locust(server.url, cases, users=8, seconds=10, workdir=tmp_path, server_pid=server.proc.pid,
                        sample_every=2)
    assert result.total > 0 and result.counts.get("single") and result.counts.get("batch"), result.log
    assert result.failed == 0, f"{result.failed} of {result.total} responses failed: {result.failure_messages}"
    # Locust's own summary agrees with the locustfile's count: no request went unrecorded
    assert f"{result.total}" in result.log and " 0(0.00%)" in result.log, result.log
    assert result.rss and all(mb > 0 for _, mb in result.rss)
    assert server.proc.poll() is None


def test_load_counts_a_wrong_answer_as_an_error(server, cases, tmp_path):
    """The check can fail: one expected probability off by 0.01 shows as failures under load."""
    data = json.loads(cases.read_text())
    for case in data["single"]:
        case["expected"][0][0] += 0.01
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(data))
    result = run_locust(server.url, wrong, users=2, seconds=3, workdir=tmp_path)
    assert result.failures.get("single", 0) == result.counts.get("single", 0) > 0
    assert any("probability" in m for m in result.failure_messages), result.failure_messages
