"""Schema fuzzing at depth: at least 1,000 cases per operation of the live OpenAPI document against a
real `bentoml serve` with a freshly trained small model. Prints a table and writes
build/bench/fuzz.json (the shared benchmark interface).

    uv run python -m benchmarks.bench_fuzz [--examples 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.bench_http import free_port, stop, wait_ready
from benchmarks.fuzz import CHECKS, run_fuzz

COLUMNS = ["operation", "cases", "5xx", "schema-conformance failures", "other check failures", "statuses"]


def _serve(home: Path, tag: str, port: int) -> tuple[subprocess.Popen, Path]:
    log = home / "server.log"
    env = {**os.environ, "BENTOML_HOME": str(home), "PVERISK_SERVE_MODEL_TAG": tag, "BENTOML_DO_NOT_TRACK": "true",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "bentoml"), "serve", "serving.service:PVERisk",
                             "--host", "127.0.0.1", "--port", str(port)], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).resolve().parent.parent)
    return proc, log


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="fuzzing-phase cases per operation")
    parser.add_argument("--out", type=Path, default=Path("build/bench/fuzz.json"))
    args = parser.parse_args(argv)
    for var in ("BENTOML_DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
        os.environ[var] = "true"
    console = Console()
    with tempfile.TemporaryDirectory(prefix="pverisk-fuzz-") as tmp:
        root = Path(tmp)
        os.environ["BENTOML_HOME"] = str(root / "bentoml")
        from feature_store.settings import TrackingSettings
        from feature_store.simulate import simulate_cohort
        from serving.import_model import import_model
        from training.pipeline import run_training
        from training.settings import TrainSettings

        console.print("training a small model for the fuzz target ...")
        simulate_cohort(800, seed=11).to_parquet(root / "cohort.parquet", index=False)
        tracking = TrackingSettings(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=root / "artifacts")
        run_training(root / "cohort.parquet", tracking=tracking,
                     settings=TrainSettings(trials=2, n_bootstrap=50, max_rounds=150, cv_folds=3))
        tag = str(import_model("champion", tracking).tag)
        port = free_port()
        proc, log = _serve(root / "bentoml", tag, port)
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", proc, timeout=180, log=log)
            console.print(f"fuzzing every operation, {args.examples} fuzzing cases each ...")
            run = run_fuzz(f"http://127.0.0.1:{port}", args.examples, root / "fuzz")
        finally:
            stop(proc)
    rows = run.table()
    table = Table(title=f"Schema fuzzing (schemathesis, deterministic): {run.seconds:.0f} s")
    for col in COLUMNS:
        table.add_column(col)
    for row in rows:
        table.add_row(*[str(x) for x in row])
    console.print(table)
    total = sum(r[1] for r in rows)
    result = {
        "title": "Schema fuzzing",
        "description": "schemathesis against the live OpenAPI document of a real `bentoml serve` (small model "
                       "trained on simulated data): examples, coverage and fuzzing phases, deterministic "
                       f"generation, up to {args.examples} fuzzing cases per operation, 1 worker.",
        "tables": [{"caption": f"Cases per operation ({total} in {run.seconds:.0f} s)", "columns": COLUMNS,
                    "rows": rows}],
        "notes": [f"checks: {', '.join(CHECKS)}",
                  f"failures: {json.dumps(run.failures) if run.failures else 'none'}",
                  f"schemathesis exit code {run.exit_code}"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {args.out}")
    if run.failures or any(r[2] for r in rows):
        console.print(run.output[-6000:])
    return result


if __name__ == "__main__":
    main()
