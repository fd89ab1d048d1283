"""CDS Hooks benchmark on whole patient charts (run on demand: `python -m benchmarks.bench_cds`).

Prints a table; asserts nothing; writes build/bench/cds.json. A real `bentoml serve` on loopback with a small simulated
model; one CDS Hooks call with a whole ~1.5 MB chart as prefetch (what some EHR sandboxes
send) beside the same patient's filtered prefetch (~20-40 KB, what the discovery document's
queries return): median and p99 over 200 sequential calls each, plus the in-process share of
the whole-chart call (JSON parsing and mapping). Goal: whole chart under 20 ms median on 2 cores.

The chart generator lives with the test fixtures (tests/fixtures/charts.py): run from a checkout.
It lives in the CLI package because it trains a model first (serving never imports training).
"""

from __future__ import annotations

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
from benchmarks.bench_http import free_port, wait_ready, wrk  # noqa: E402


def _timed(client: httpx.Client, url: str, payload: bytes, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.post(url, content=payload)
        times.append((time.perf_counter() - t0) * 1e3)
        if r.status_code != 200 or not r.json().get("cards"):
            raise RuntimeError(f"CDS call failed: {r.status_code} {r.text[:300]}")
    return times


def main(n: int = 200) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for tests.fixtures
    from ehr.fhir_map import map_chart
    from ehr.fhir_read import bundle_entries
    from feature_store.settings import TrackingSettings
    from feature_store.simulate import simulate_cohort
    from feature_store.units import warm
    from serving.import_model import import_model
    from tests.fixtures.charts import hook_request, prefetch_filtered, prefetch_whole, whole_chart
    from training.pipeline import run_training
    from training.settings import TrainSettings

    data = ROOT / "simulated-bench.parquet"
    simulate_cohort(1000, seed=5).to_parquet(data)
    tracking = TrackingSettings(tracking_uri=f"sqlite:///{ROOT / 'mlflow.db'}", artifact_root=ROOT / "artifacts")
    run_training(data, settings=TrainSettings(trials=2, n_bootstrap=50), tracking=tracking)
    model = import_model("champion", tracking)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PVERISK_SERVE_MODEL_TAG": str(model.tag),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    port = free_port()
    server = subprocess.Popen([str(bin_dir / "bentoml"), "serve", "serving.service:PVERisk", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", server)
        chart = whole_chart(1)
        whole = json.dumps(hook_request(chart, prefetch_whole(chart))).encode()
        filtered = json.dumps(hook_request(chart, prefetch_filtered(chart))).encode()
        url = f"http://127.0.0.1:{port}/cds-services/pve-progression-risk"
        with httpx.Client(headers={"content-type": "application/json"}, timeout=30) as client:
            _timed(client, url, whole, 20)  # warm-up
            _timed(client, url, filtered, 20)
            t_whole = _timed(client, url, whole, n)
            t_filtered = _timed(client, url, filtered, n)
        import shutil

        # wrk (C) as a second client, when installed: the Python client's own cost stays out
        by_wrk = {name: wrk(url, payload, 1, seconds=5) for name, payload in (("whole", whole), ("filtered", filtered))
                  } if shutil.which("wrk") else {}

        import orjson

        warm()
        parse, mapping, free = [], [], []
        for _ in range(50):
            gc.disable()  # as in the service while a chart is parsed and mapped
            t0 = time.perf_counter()
            body = orjson.loads(whole)
            t1 = time.perf_counter()
            pre = body["prefetch"]
            map_chart([(None, pre["patient"])] + bundle_entries(pre["conditions"]) + bundle_entries(pre["observations"]),
                      patient_id=chart.patient_id)
            t2 = time.perf_counter()
            del body, pre
            t3 = time.perf_counter()
            gc.enable()
            parse.append((t1 - t0) * 1e3)
            mapping.append((t2 - t1) * 1e3)
            free.append((t3 - t2) * 1e3)

        from benchmarks.bench_common import table, write_result

        rows: list[list[object]] = []
        for name, payload, times in (("whole chart", whole, t_whole), ("filtered", filtered, t_filtered)):
            label = f"{name} ({len(chart.bundle['entry'])} entries in the chart)" if name == "whole chart" else name
            size = f"{len(payload) / 1e6:.2f} MB" if name == "whole chart" else f"{len(payload) / 1e3:.0f} KB"
            rows.append([label, "httpx, sequential", n, size, round(statistics.median(times), 1),
                         round(float(np.percentile(times, 99)), 1)])
        for name, (rps, med, p99) in by_wrk.items():
            rows.append([name, "wrk, 1 connection, 5 s", round(rps * 5), "", round(med, 1), round(p99, 1)])
        calls = table("One CDS Hooks call: the whole chart as prefetch beside the filtered prefetch",
                      ["prefetch", "client", "calls", "size", "median ms", "p99 ms"], rows)
        share = table("In-process share of the whole-chart call (medians of 50)", ["step", "median ms"], [
            ["JSON parse", round(statistics.median(parse), 2)], ["mapping", round(statistics.median(mapping), 2)],
            ["freeing the parsed chart", round(statistics.median(free), 2)]])
        write_result("cds", "CDS Hooks on whole patient charts",
                     f"benchmarks/bench_cds.py: a real `bentoml serve` on loopback, {os.cpu_count()} cores, model "
                     f"{model.tag} (small simulated model). The Python client's own overhead is included in the httpx "
                     "rows; wrk rows (when wrk is installed) leave it out. Goal: whole chart under 20 ms median.",
                     [calls, share])
    finally:
        server.terminate()
        try:
            server.wait(60)  # a busy machine stops it slowly; the results are already written
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(15)


if __name__ == "__main__":
    main()
