"""CDS Hooks benchmark on whole patient charts (run on demand: `python -m benchmarks.bench_cds`).

Prints tables; asserts nothing; writes build/bench/cds.json. A real `bentoml serve` on loopback with a small
simulated model; one CDS Hooks call with a whole chart of ~1.5 MB and of ~4 MB (years of encounters,
claims, vital signs and labs, stale labs, another patient's resources, malformed members) sent as EHR
sandboxes send it: the whole chart under each of the three core prefetch keys (the real-chart trial's
shape), beside the filtered prefetch the discovery document asks for. Median and p99 over sequential
calls, plus the in-process share of the whole-chart call. Goals: 1.5 MB whole chart under 15 ms median,
4 MB under 40 ms.

`--baseline REF` serves a git ref of this checkout (exported with `git archive`, same model, same venv)
beside the working tree, and alternates calls between the two: before and after, side by side in one
run on the same machine load (the load average is recorded).

The chart generator lives with the test fixtures (tests/fixtures/charts.py): run from a checkout. It
trains a model first (serving never imports training).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _var in ("BENTOML_DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
    os.environ.setdefault(_var, "true")
ROOT = Path(tempfile.mkdtemp(prefix="pverisk-cds-bench-"))
os.environ["BENTOML_HOME"] = str(ROOT / "bentoml_home")

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import bench_serving  # noqa: E402,F401  (sets BENTOML_HOME to its temporary root)
from benchmarks.bench_http import free_port, wait_ready  # noqa: E402

CHECKOUT = Path(__file__).resolve().parents[1]
# (label, years of history, visits a year): about 1.5 MB and 4 MB of chart JSON
SIZES = (("1.5 MB", 5.4, 16), ("4 MB", 13.4, 18))
GOALS_MS = {"1.5 MB": 15.0, "4 MB": 40.0}


def _post(client: httpx.Client, url: str, payload: bytes) -> float:
    t0 = time.perf_counter()
    r = client.post(url, content=payload)
    took = (time.perf_counter() - t0) * 1e3
    if r.status_code != 200 or not r.json().get("cards"):
        raise RuntimeError(f"CDS call failed: {r.status_code} {r.text[:300]}")
    return took


def _serve(code_dir: Path, tag: str) -> tuple[subprocess.Popen, str]:
    """`bentoml serve` of the code in `code_dir` (the checkout or an exported ref) with the venv of this run."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PVERISK_SERVE_MODEL_TAG": tag, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(code_dir), "PVERISK_MONITOR_STORE": str(ROOT / f"pred-{code_dir.name}.db")}
    port = free_port()
    proc = subprocess.Popen([str(bin_dir / "bentoml"), "serve", "serving.service:PVERisk", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=code_dir, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/readyz", proc)
    return proc, f"{url}/cds-services/pve-progression-risk"


def _export(ref: str) -> Path:
    out = ROOT / f"baseline-{ref.replace('/', '_')}"
    out.mkdir()
    archive = subprocess.run(["git", "-C", str(CHECKOUT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def _bodies() -> list[tuple[str, str, bytes, str]]:
    """(size label, shape, body, patient id) for each chart size and prefetch shape."""
    from tests.fixtures.charts import hook_request, prefetch_filtered, whole_chart

    out = []
    for label, years, visits in SIZES:
        chart = whole_chart(1, years=years, visits_per_year=visits, malformed=20)
        size = len(json.dumps(chart.bundle)) / 1e6
        every_key = {"patient": chart.bundle, "conditions": chart.bundle, "observations": chart.bundle}
        out.append((f"{label} ({size:.2f} MB, {len(chart.bundle['entry'])} entries)", "whole chart under each of 3 keys",
                    json.dumps(hook_request(chart, every_key)).encode(), chart.patient_id))
        out.append((f"{label} ({size:.2f} MB)", "filtered prefetch",
                    json.dumps(hook_request(chart, prefetch_filtered(chart))).encode(), chart.patient_id))
    return out


def _in_process(bodies: list[tuple[str, str, bytes, str]], n: int = 30) -> list[list[object]]:
    """Medians of reading the body and mapping the chart in this process (the working tree's code)."""
    from ehr.cds import _read_request
    from ehr.cds_gather import gather
    from ehr.fhir_map import map_chart
    from ehr.settings import EhrSettings
    from feature_store.units import warm

    warm()
    rows: list[list[object]] = []
    for label, shape, body, pid in bodies:
        if not shape.startswith("whole"):
            continue
        read, mapping, free = [], [], []
        for _ in range(n):
            gc.disable()  # as in the service while a chart is read and mapped
            t0 = time.perf_counter()
            req, prefetch = _read_request(body)
            entries = gather(req, EhrSettings(), [], None, prefetch)
            t1 = time.perf_counter()
            map_chart(entries, patient_id=pid)
            t2 = time.perf_counter()
            del req, prefetch, entries
            t3 = time.perf_counter()
            gc.enable()
            read.append((t1 - t0) * 1e3)
            mapping.append((t2 - t1) * 1e3)
            free.append((t3 - t2) * 1e3)
        rows.append([label, round(statistics.median(read), 2), round(statistics.median(mapping), 2),
                     round(statistics.median(free), 2)])
    return rows


def _train() -> str:
    from feature_store.settings import TrackingSettings
    from feature_store.simulate import simulate_cohort
    from serving.import_model import import_model
    from training.pipeline import run_training
    from training.settings import TrainSettings

    data = ROOT / "simulated-bench.parquet"
    simulate_cohort(1000, seed=5).to_parquet(data)
    tracking = TrackingSettings(tracking_uri=f"sqlite:///{ROOT / 'mlflow.db'}", artifact_root=ROOT / "artifacts")
    run_training(data, settings=TrainSettings(trials=2, n_bootstrap=50), tracking=tracking)
    return str(import_model("champion", tracking).tag)


def main(n: int = 100, baseline: str | None = None) -> None:
    sys.path.insert(0, str(CHECKOUT))  # the checkout, for tests.fixtures
    tag = _train()
    bodies = _bodies()
    servers = {"after": _serve(CHECKOUT, tag)}
    if baseline:
        servers["before"] = _serve(_export(baseline), tag)
    load_start = os.getloadavg()
    times: dict[tuple[str, str, str], list[float]] = {}
    try:
        with httpx.Client(headers={"content-type": "application/json"}, timeout=60) as client:
            for label, shape, body, _ in bodies:
                for _ in range(10):  # warm-up
                    for _, url in servers.values():
                        _post(client, url, body)
                for _ in range(n):  # alternating: both see the same machine load
                    for version, (_, url) in servers.items():
                        times.setdefault((label, shape, version), []).append(_post(client, url, body))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            try:
                proc.wait(60)  # a busy machine stops it slowly; the results are in memory
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(15)
    load_end = os.getloadavg()
    _report(bodies, times, baseline, tag, n, load_start, load_end, _in_process(bodies))


def _report(bodies: list[tuple[str, str, bytes, str]], times: dict[tuple[str, str, str], list[float]],
            baseline: str | None, tag: str, n: int, load_start: tuple[float, ...], load_end: tuple[float, ...],
            share_rows: list[list[object]]) -> None:
    from benchmarks.bench_common import table, write_result

    rows: list[list[object]] = []
    for label, shape, body, _ in bodies:
        after = times[(label, shape, "after")]
        med = statistics.median(after)
        goal = GOALS_MS.get(label.split(" (")[0]) if shape.startswith("whole") else None
        row: list[object] = [label, shape, f"{len(body) / 1e6:.2f} MB"]
        if baseline:
            before = times[(label, shape, "before")]
            row += [round(statistics.median(before), 1), round(float(np.percentile(before, 99)), 1)]
        row += [round(med, 1), round(float(np.percentile(after, 99)), 1)]
        if baseline:
            row.append(f"{statistics.median(times[(label, shape, 'before')]) / med:.2f}x")
        row.append("-" if goal is None else f"{'PASS' if med < goal else 'MISS'} (< {goal:.0f} ms)")
        rows.append(row)
    cols = ["chart", "prefetch", "body"] + (["before median ms", "before p99 ms"] if baseline else []) + [
        "median ms", "p99 ms"] + (["before / after"] if baseline else []) + ["goal"]
    calls = table(f"One CDS Hooks call, httpx sequential, {n} calls each"
                  + (f", alternating with the baseline ({baseline})" if baseline else ""), cols, rows)
    share = table("In-process share of the whole-chart call (the working tree; medians of 30)",
                  ["chart", "reading the body (prefetch to resources) ms", "mapping ms",
                   "freeing ms"], share_rows)
    notes = [f"Load average (1, 5, 15 min) at the start {', '.join(f'{x:.2f}' for x in load_start)}, at the end "
             f"{', '.join(f'{x:.2f}' for x in load_end)}, on {os.cpu_count()} cores: on a busy machine compare the "
             "before and after columns (measured alternately), not the absolute numbers."]
    write_result("cds", "CDS Hooks on whole patient charts",
                 f"benchmarks/bench_cds.py: a real `bentoml serve` on loopback, {os.cpu_count()} cores, model {tag} "
                 "(small simulated model); the Python client's own overhead is included. Whole charts of about 1.5 "
                 "and 4 MB (stale labs, another patient's resources, malformed members) under each of the three "
                 "core prefetch keys. Goals: 1.5 MB under 15 ms median, 4 MB under 40 ms."
                 + (f" `before`: git ref {baseline} served beside the working tree." if baseline else ""),
                 [calls, share], notes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="timed calls per chart, prefetch shape and version")
    parser.add_argument("--baseline", default=None, help="a git ref to serve beside the working tree (before/after)")
    args = parser.parse_args()
    main(args.calls, args.baseline)
