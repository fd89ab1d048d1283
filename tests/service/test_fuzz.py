"""Schema fuzzing of the live service (schemathesis, deterministic, about 100 cases per operation):
every operation in its /docs.json, so routes added later are fuzzed too. No 5xx; every answer has
a documented status, content type and body shape; schema-violating requests get a 4xx."""

import httpx
import pytest

from benchmarks.fuzz import run_fuzz

pytestmark = pytest.mark.slow


def test_every_documented_operation_survives_the_fuzzer(server, tmp_path):
    spec = httpx.get(f"{server.url}/docs.json", timeout=30).json()
    documented = {f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops}
    run = run_fuzz(server.url, 100, tmp_path / "fuzz")
    table = "\n".join(f"{row[0]:<50} cases={row[1]:<5} 5xx={row[2]} schema={row[3]} other={row[4]}  [{row[5]}]"
                      for row in run.table())
    print(f"\nschemathesis: {sum(op.cases for op in run.operations.values())} cases in {run.seconds:.0f} s\n{table}")
    assert documented <= set(run.operations), (documented - set(run.operations), run.output[-3000:])
    assert all(run.operations[label].cases >= 10 for label in documented if label.startswith("POST")), table
    assert sum(op.server_errors for op in run.operations.values()) == 0, run.output[-8000:]
    assert not run.failures and run.exit_code == 0, run.output[-8000:]
