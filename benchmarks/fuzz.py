"""Schema fuzzing of a running service with schemathesis: every operation in its live OpenAPI
document (/docs.json), so routes added later are fuzzed without a change here.

One deterministic run (`--generation-deterministic`: the same cases every time) of the examples,
coverage (boundaries, wrong types, missing fields) and fuzzing phases, with the checks that the
service answers no 5xx, only documented status codes and content types, bodies that conform to
the documented schema, and 4xx for schema-violating requests. Used by tests/service/test_fuzz.py
(about 100 cases per operation) and `python -m benchmarks.bench_fuzz` (1,000 or more).

Not checked: `positive_data_acceptance` (a schema-valid body must get a 2xx). Some schema-valid
bodies are refused on purpose, for reasons JSON Schema cannot state: a coarse input that
contradicts its fine source (400), a CDS Hooks call with neither prefetch nor FHIR server (412), a
FHIR Bundle without a patient (422). Explicit tests cover those.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
          "missing_required_header", "unsupported_method", "ignored_auth")
SCHEMA_CHECKS = ("response_schema_conformance", "status_code_conformance", "content_type_conformance")


@dataclass
class OperationResult:
    label: str
    cases: int = 0
    statuses: Counter = field(default_factory=Counter)
    failed_checks: Counter = field(default_factory=Counter)

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s >= 500)

    @property
    def schema_failures(self) -> int:
        return sum(self.failed_checks[c] for c in SCHEMA_CHECKS)


@dataclass
class FuzzRun:
    operations: dict[str, OperationResult]
    seconds: float
    exit_code: int
    output: str
    report: dict[str, Any]

    @property
    def failures(self) -> list[dict[str, Any]]:
        return list(self.report.get("failures") or [])

    def table(self) -> list[list[Any]]:
        return [[op.label, op.cases, op.server_errors, op.schema_failures,
                 sum(op.failed_checks.values()) - op.schema_failures,
                 ", ".join(f"{s}: {n}" for s, n in sorted(op.statuses.items()))]
                for op in sorted(self.operations.values(), key=lambda o: o.label)]


def _schemathesis() -> str:
    return str(Path(sys.executable).parent / "schemathesis")


def run_fuzz(base_url: str, max_examples: int, report_dir: Path, headers: dict[str, str] | None = None,
             timeout_s: float = 3600) -> FuzzRun:
    """Run schemathesis against `base_url`; counts per operation from its NDJSON event report."""
    report_dir = report_dir.resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    ndjson, report = report_dir / "events.ndjson", report_dir / "report.json"
    cmd = [_schemathesis(), "run", f"{base_url}/docs.json", "--url", base_url,
           "--max-examples", str(max_examples), "--generation-deterministic",
           "--checks", ",".join(CHECKS), "--workers", "1", "--continue-on-failure", "--no-color",
           "--request-timeout", "30", "--report", "ndjson,json",
           "--report-ndjson-path", str(ndjson), "--report-json-path", str(report)]
    for name, value in (headers or {}).items():
        cmd += ["--header", f"{name}: {value}"]
    t0 = time.perf_counter()
    # in the report folder: schemathesis keeps a cache of crashes in its working directory
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=report_dir)
    seconds = time.perf_counter() - t0
    return FuzzRun(operations=_per_operation(ndjson), seconds=seconds, exit_code=proc.returncode,
                   output=proc.stdout + proc.stderr,
                   report=json.loads(report.read_text()) if report.exists() else {})


def _per_operation(ndjson: Path) -> dict[str, OperationResult]:
    ops: dict[str, OperationResult] = defaultdict(lambda: OperationResult(""))
    if not ndjson.exists():
        return {}
    with ndjson.open() as fh:
        for line in fh:
            if '"ScenarioFinished"' not in line[:40]:
                continue
            recorder = json.loads(line)["ScenarioFinished"].get("recorder") or {}
            label = recorder.get("label", "?")
            op = ops[label]
            op.label = label
            for interaction in (recorder.get("interactions") or {}).values():
                response = interaction.get("response") or {}
                op.cases += 1
                if "status_code" in response:
                    op.statuses[int(response["status_code"])] += 1
            for checks in (recorder.get("checks") or {}).values():
                for check in checks:
                    if check.get("status") == "failure":
                        op.failed_checks[check["name"]] += 1
    return dict(ops)
