"""Serving benchmark (run on demand: `make bench`). Prints a table and PASS/MISS per goal, writes
build/bench/serving.json; asserts nothing.

Side by side in one run, on loopback, with the same simulated model: our BentoML service with
monitoring on and the shadow challenger scoring every patient (full response: validation, scores,
explanations), the peer a user would otherwise pick (`mlflow models serve`, labels only), and
in-process XGBoost as the floor. Medians and p99 in milliseconds. The goals are the data below.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for _var in ("BENTOML_DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
    os.environ.setdefault(_var, "true")
ROOT = Path(tempfile.mkdtemp(prefix="pverisk-serve-bench-"))
os.environ["BENTOML_HOME"] = str(ROOT / "bentoml_home")

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.bench_http import concurrent, free_port, percentile, rss_mb, sequential, stop, wait_ready, wrk  # noqa: E402

OFFLINE_ROWS = 100_000
COLD_STARTS = 3  # alternating, after the other measurements
# Goals: ours against the peer (ratio of medians unless stated), checked below and printed PASS/MISS.
GOALS = {
    "single_median": ("single request median, at most this times the peer's", 0.4),
    "single_p99": ("single request p99, below the peer's (ratio below)", 1.0),
    "throughput_16": ("requests/s at concurrency 16, at least this times the peer's", 3.0),
    "batch_probabilities": ("a batch with output=probabilities, at most this times the peer's", 0.5),
    "batch_full": ("a batch with the full answer, at most this times the peer's", 1.5),
    "cold_start": ("cold start to ready, at most this times the peer's", 1.0),
    "idle_memory": ("idle memory (process tree RSS), at most this times the peer's", 1.0),
    "score_seconds": (f"`pverisk score` of {OFFLINE_ROWS:,} patients with explanations, seconds below", 5.0),
}


def _offline_scoring(bin_dir: Path, env: dict[str, str], tag: str, runs: int = 3) -> dict[bool, list[tuple[float, float]]]:
    """`pverisk score` on a simulated cohort Parquet, run as a user runs it (the CLI, a new process
    each time, after the servers have stopped): the seconds it prints for validating, scoring and
    writing, and with reading the model and the file."""
    import re

    from feature_store.simulate import simulate_cohort

    data = ROOT / f"simulated-score-{OFFLINE_ROWS}.parquet"
    simulate_cohort(OFFLINE_ROWS, seed=12).to_parquet(data)
    out: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(runs):
        for explain in (True, False):
            done = subprocess.run([str(bin_dir / "pverisk"), "score", "--data", str(data), "--out",
                                   str(ROOT / "scores.parquet"), "--model-tag", tag,
                                   "--explain" if explain else "--no-explain"],
                                  env={**env, "COLUMNS": "300"}, capture_output=True, text=True, check=True)
            found = re.search(r"in ([\d.]+) s \(.*?; ([\d.]+) s with reading", done.stdout, re.S)
            if found is None:
                raise RuntimeError(f"unexpected `pverisk score` output:\n{done.stdout}\n{done.stderr}")
            out[explain].append((float(found.group(1)), float(found.group(2))))
    return out


def _interleaved(cases: dict[str, tuple[str, bytes, str]], repeats: int) -> dict[str, list[float]]:
    """Each case `repeats` times, taking turns (ours, peer, ours, ...), so a change in the shared
    machine's load falls on every side alike. A case: (url, body, content type); ms per request."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    with httpx.Client(timeout=120) as client:
        for name, (url, body, ctype) in cases.items():  # warm-up
            client.post(url, content=body, headers={"content-type": ctype}).raise_for_status()
        for _ in range(repeats):
            for name, (url, body, ctype) in cases.items():
                t0 = time.perf_counter()
                r = client.post(url, content=body, headers={"content-type": ctype})
                times[name].append((time.perf_counter() - t0) * 1e3)
                r.raise_for_status()
    return times


def _in_process(fn: Any, repeats: int) -> list[float]:
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _models() -> tuple[Any, Any, str, Any]:
    """The model `make demo` trains (default search: explanation cost grows with trees) as champion and
    a smaller one as the shadow challenger, both imported into the bench's store."""
    from mlflow.tracking import MlflowClient

    from feature_store.settings import TrackingSettings
    from feature_store.simulate import simulate_cohort
    from serving.import_model import import_model
    from training.pipeline import run_training
    from training.registry import promote
    from training.settings import TrainSettings

    tracking = TrackingSettings(tracking_uri=f"sqlite:///{ROOT / 'mlflow.db'}", artifact_root=ROOT / "artifacts")
    runs = []
    for seed, settings in ((5, TrainSettings(n_bootstrap=100)), (6, TrainSettings(trials=2, n_bootstrap=50, seed=6))):
        data = ROOT / f"simulated-bench-{seed}.parquet"
        simulate_cohort(2000, seed=seed).to_parquet(data)
        runs.append(run_training(data, settings=settings, tracking=tracking))
    client = MlflowClient(tracking.tracking_uri)
    promote(client, tracking.registered_model, runs[0].version, "champion", "benchmark", "bench")
    promote(client, tracking.registered_model, runs[1].version, "challenger", "benchmark", "bench")
    return runs[0], import_model("champion", tracking), str(import_model("challenger", tracking).tag), tracking


class Servers:
    """Ours and the peer on loopback, with the same environment."""

    def __init__(self, env: dict[str, str], peer_model: str) -> None:
        self.env, self.peer_model = env, peer_model
        self.bin = Path(sys.executable).parent

    def ours(self, workers: int = 1) -> tuple[subprocess.Popen, str, float]:
        port = free_port()
        env = {**self.env, **({"BENTOML_CONFIG_OPTIONS": f"services.pve_progression_risk.workers={workers}"}
                              if workers > 1 else {})}
        proc = subprocess.Popen([str(self.bin / "bentoml"), "serve", "serving.service:PVERisk", "--host", "127.0.0.1",
                                 "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ready = wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        if workers > 1:  # /readyz answers once one worker is ready: give the others their start-up
            time.sleep(5)
        return proc, f"http://127.0.0.1:{port}", ready

    def peer(self, workers: int = 1) -> tuple[subprocess.Popen, str, float]:
        port = free_port()
        proc = subprocess.Popen([str(self.bin / "mlflow"), "models", "serve", "-m", self.peer_model, "--env-manager",
                                 "local", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
                                env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ready = wait_ready(f"http://127.0.0.1:{port}/health", proc)
        return proc, f"http://127.0.0.1:{port}", ready


def _single(ours_url: str, ours_body: bytes, peer_url: str, peer_body: bytes) -> dict[str, float]:
    """Concurrency 1 and 16, ours then the peer: wrk when installed (its own overhead is far below a
    Python client's), else httpx (which inflates both sides alike)."""
    import shutil

    sequential(ours_url, ours_body, 200)  # warm-up
    sequential(peer_url, peer_body, 200)
    out: dict[str, float] = {}
    for side, url, body in (("ours", ours_url, ours_body), ("peer", peer_url, peer_body)):
        if shutil.which("wrk"):
            _, out[f"{side}_1_med"], out[f"{side}_1_p99"] = wrk(url, body, 1)
            out[f"{side}_rps"], out[f"{side}_16_med"], out[f"{side}_16_p99"] = wrk(url, body, 16)
        else:
            t1 = sequential(url, body, 1000)
            out[f"{side}_1_med"], out[f"{side}_1_p99"] = statistics.median(t1), percentile(t1, 99)
            out[f"{side}_rps"], t16 = asyncio.run(concurrent(url, body, 16, 2000))
            out[f"{side}_16_med"], out[f"{side}_16_p99"] = statistics.median(t16), percentile(t16, 99)
    return out


def _batches(base: str, peer_url: str, risk: Any, repeats: int) -> tuple[dict, dict, dict]:
    """Every batch form at 1,000 and 10,000 patients, interleaved with the peer; in-process floors."""
    import io
    import json

    import pyarrow as pa

    from feature_store import contract as c
    from feature_store.encoding import encode_array
    from feature_store.simulate import simulate_cohort

    features = c.fine_feature_names()
    cohort = simulate_cohort(10_000, seed=9)[features]
    records = json.loads(cohort.to_json(orient="records"))  # NaN/NA -> null
    column_lists = {k: json.loads(cohort[k].to_json(orient="values")) for k in features}
    batch: dict[int, dict[str, list[float]]] = {}
    in_process: dict[int, dict[str, list[float]]] = {}
    sizes: dict[int, dict[str, int]] = {}
    json_t, arrow_t = "application/json", "application/vnd.apache.arrow.stream"
    for n in (1000, 10_000):
        Xn = encode_array(cohort.iloc[:n])
        table = pa.Table.from_pandas(cohort.iloc[:n], preserve_index=False)
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        first = {k: v[:n] for k, v in column_lists.items()}
        cases = {
            "peer": (peer_url, json.dumps({"dataframe_split": {
                "columns": c.model_columns(), "data": np.where(np.isnan(Xn), None, Xn).tolist()}}).encode(), json_t),
            "records, probabilities": (f"{base}/v1/predict/batch", json.dumps(
                {"patients": records[:n], "output": "probabilities"}).encode(), json_t),
            "records, full": (f"{base}/v1/predict/batch", json.dumps({"patients": records[:n]}).encode(), json_t),
            "JSON columns, probabilities": (f"{base}/v1/predict/columns", json.dumps(
                {"columns": first, "output": "probabilities"}).encode(), json_t),
            "JSON columns, full": (f"{base}/v1/predict/columns", json.dumps({"columns": first}).encode(), json_t),
            "Arrow, probabilities": (f"{base}/v1/predict/columns?output=probabilities", sink.getvalue(), arrow_t),
            "Arrow, full": (f"{base}/v1/predict/columns", sink.getvalue(), arrow_t),
        }
        sizes[n] = {k: len(v[1]) for k, v in cases.items()}
        batch[n] = _interleaved(cases, repeats)
        X32 = Xn.astype(np.float32)
        frame_cols = {k: cohort[k].iloc[:n].to_numpy() for k in features}
        in_process[n] = {
            "XGBoost inplace_predict": _in_process(lambda: risk.booster.inplace_predict(X32), repeats),
            "RiskModel.score_arrays, probabilities": _in_process(
                lambda: risk.score_arrays(frame_cols, n, explain=False), repeats),
            "RiskModel.score_arrays, full": _in_process(lambda: risk.score_arrays(frame_cols, n), repeats),
        }
    return batch, in_process, sizes


def _two_workers(servers: Servers, ours_body: bytes, peer_body: bytes) -> dict[str, float]:
    ours, ours_base, _ = servers.ours(workers=2)
    peer = None
    try:
        peer, peer_base, _ = servers.peer(workers=2)
        return _single(f"{ours_base}/v1/predict", ours_body, f"{peer_base}/invocations", peer_body)
    finally:
        for proc in (ours, peer):
            if proc is not None:
                stop(proc)


def _cold_starts(servers: Servers) -> tuple[list[float], list[float]]:
    ours, peer = [], []
    for _ in range(COLD_STARTS):
        for side, start, out in (("ours", servers.ours, ours), ("peer", servers.peer, peer)):
            proc, _, ready = start()
            out.append(ready)
            stop(proc)
    return ours, peer


def main(repeats: int = 15) -> dict[str, Any]:
    import json

    from feature_store import contract as c
    from feature_store.encoding import encode_array
    from model_runtime.scoring import ModelIdentity, RiskModel

    load_start = os.getloadavg()[0]
    result, model, challenger, tracking = _models()
    env = {**os.environ, "PVERISK_SERVE_MODEL_TAG": str(model.tag), "PVERISK_SERVE_MAX_BATCH": "10000",
           "PVERISK_SERVE_MAX_BODY_BYTES": "50000000", "MLFLOW_TRACKING_URI": tracking.tracking_uri,
           # monitoring on (its default) and the shadow challenger scoring every patient
           "PVERISK_MONITOR_SHADOW": "true", "PVERISK_MONITOR_CHALLENGER_TAG": challenger,
           "PVERISK_MONITOR_STORE": str(ROOT / "predictions.db")}
    bin_dir = Path(sys.executable).parent
    # Run outside `uv run`, the venv's bin is not on PATH and `mlflow models serve` cannot find uvicorn.
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    servers = Servers(env, f"models:/{result.registered_model}/{result.version}")

    patient = c.example_record()
    ours_single = json.dumps(patient).encode()
    X1 = encode_array({k: [v] for k, v in patient.items()})
    peer_single = json.dumps({"dataframe_split": {"columns": c.model_columns(), "data": X1.tolist()}}).encode()
    identity = ModelIdentity("bench", "1", "champion", "simulated", str(model.tag))
    risk = RiskModel.from_mlflow_dir(model.path_of("mlflow_model"), identity)
    ours, base, _ = servers.ours()
    peer: subprocess.Popen | None = None
    try:
        peer, peer_base, _ = servers.peer()
        time.sleep(2)
        mem = {"ours": rss_mb(ours), "peer": rss_mb(peer)}
        single = _single(f"{base}/v1/predict", ours_single, f"{peer_base}/invocations", peer_single)
        batch, in_process, sizes = _batches(base, f"{peer_base}/invocations", risk, repeats)
        floor_full = _in_process(lambda: risk.score_record(patient), 2000)
        floor_xgb = _in_process(lambda: risk.booster.inplace_predict(X1), 2000)
    finally:
        for proc in (ours, peer):
            if proc is not None:
                stop(proc)
    two = _two_workers(servers, ours_single, peer_single)
    cold = _cold_starts(servers)
    offline = _offline_scoring(bin_dir, env, str(model.tag))
    load_end = os.getloadavg()[0]
    rows, goals = _rows(single, batch, in_process, floor_full, floor_xgb, mem, cold, offline)
    rows += _two_worker_rows(single, two)
    columns = ["measure", "ours (BentoML)", "peer: mlflow models serve", "peer: in-process XGBoost",
               "ratio ours/mlflow", "goal", "check"]
    notes = _notes(risk, model, repeats, sizes, single, two, load_start, load_end)
    out = {"title": "Serving speed and memory against the peers",
           "description": "Our BentoML service (monitoring on, the shadow challenger scoring every patient) against "
                          "`mlflow models serve` and in-process XGBoost on the same model and patients, measured side "
                          "by side in one run (python -m benchmarks.bench_serving).",
           "tables": [{"caption": "Medians, p99 and ratios (ms unless stated)", "columns": columns, "rows": rows}],
           "notes": notes}
    _report(out, goals)
    return out


def _rows(single: dict[str, float], batch: dict, in_process: dict, floor_full: list[float], floor_xgb: list[float],
          mem: dict[str, float], cold: tuple[list[float], list[float]], offline: dict) -> tuple[list, list]:
    med = statistics.median
    rows: list[list[Any]] = []
    goals: list[tuple[str, bool]] = []

    def goal(key: str, ratio: float, lower_is_better: bool = True, strict: bool = False) -> tuple[str, str]:
        what, limit = GOALS[key]
        ok = (ratio < limit if strict else ratio <= limit) if lower_is_better else ratio >= limit
        goals.append((f"{what} ({limit:g}): {ratio:.2f}", ok))
        return (f"{'<' if strict else '<='} {limit:g}x peer" if lower_is_better else f">= {limit:g}x peer"), _verdict(ok)

    s = single
    rows.append(["single request, concurrency 1 (median / p99 ms)", f"{s['ours_1_med']:.2f} / {s['ours_1_p99']:.2f}",
                 f"{s['peer_1_med']:.2f} / {s['peer_1_p99']:.2f}", f"{med(floor_xgb):.3f}",
                 round(s["ours_1_med"] / s["peer_1_med"], 2), *goal("single_median", s["ours_1_med"] / s["peer_1_med"])])
    rows.append(["single request, concurrency 1, p99 (ms)", f"{s['ours_1_p99']:.2f}", f"{s['peer_1_p99']:.2f}", "",
                 round(s["ours_1_p99"] / s["peer_1_p99"], 2),
                 *goal("single_p99", s["ours_1_p99"] / s["peer_1_p99"], strict=True)])
    rows.append(["concurrency 16 (requests/s)", round(s["ours_rps"]), round(s["peer_rps"]), "",
                 round(s["ours_rps"] / s["peer_rps"], 2),
                 *goal("throughput_16", s["ours_rps"] / s["peer_rps"], lower_is_better=False)])
    rows.append(["concurrency 16 (median / p99 ms)", f"{s['ours_16_med']:.2f} / {s['ours_16_p99']:.2f}",
                 f"{s['peer_16_med']:.2f} / {s['peer_16_p99']:.2f}", "", round(s["ours_16_med"] / s["peer_16_med"], 2),
                 "", ""])
    for n in batch:
        peer_t = batch[n]["peer"]
        xgb_t = in_process[n]["XGBoost inplace_predict"]
        for name, t in batch[n].items():
            if name == "peer":
                continue
            key = "batch_probabilities" if "probabilities" in name else "batch_full"
            rows.append([f"batch {n:,}, {name} (median / p99 ms)", f"{med(t):.1f} / {percentile(t, 99):.1f}",
                         f"{med(peer_t):.1f} / {percentile(peer_t, 99):.1f}", f"{med(xgb_t):.2f}",
                         round(med(t) / med(peer_t), 2), *goal(key, med(t) / med(peer_t))])
            goals[-1] = (f"batch {n:,} {name}: " + goals[-1][0], goals[-1][1])
        for name, t in in_process[n].items():
            if name != "XGBoost inplace_predict":
                rows.append([f"batch {n:,}, in-process {name} (median ms)", f"{med(t):.2f}", "", f"{med(xgb_t):.2f}",
                             "", "", ""])
    rows.append(["in-process, one patient, full response (median ms)", f"{med(floor_full):.3f}", "",
                 f"{med(floor_xgb):.3f}", "", "", ""])
    ours_cold, peer_cold = cold
    rows.append([f"cold start to ready (median of {len(ours_cold)} s; each)", f"{med(ours_cold):.2f}; "
                 + ", ".join(f"{x:.2f}" for x in ours_cold), f"{med(peer_cold):.2f}; "
                 + ", ".join(f"{x:.2f}" for x in peer_cold), "", round(med(ours_cold) / med(peer_cold), 2),
                 *goal("cold_start", med(ours_cold) / med(peer_cold))])
    rows.append(["idle memory, process tree RSS (MB)", round(mem["ours"]), round(mem["peer"]), "",
                 round(mem["ours"] / mem["peer"], 2), *goal("idle_memory", mem["ours"] / mem["peer"])])
    for explain, runs in offline.items():
        secs = [r[0] for r in runs]
        label = "with explanations" if explain else "probabilities only"
        ok = med(secs) < GOALS["score_seconds"][1]
        rows.append([f"`pverisk score`, {OFFLINE_ROWS:,} patients {label} (median s; patients/s; s with start-up)",
                     f"{med(secs):.2f}; {OFFLINE_ROWS / med(secs):,.0f}; {med([r[1] for r in runs]):.2f}", "", "", "",
                     f"< {GOALS['score_seconds'][1]:g} s" if explain else "", _verdict(ok) if explain else ""])
        if explain:
            goals.append((f"{GOALS['score_seconds'][0]} ({GOALS['score_seconds'][1]:g}): {med(secs):.2f}", ok))
    return rows, goals


def _two_worker_rows(one: dict[str, float], two: dict[str, float]) -> list[list[Any]]:
    """Both sides with two workers on the same two cores (reported, not a goal)."""
    return [
        ["--workers 2: single request, concurrency 1 (median / p99 ms)", f"{two['ours_1_med']:.2f} / {two['ours_1_p99']:.2f}",
         f"{two['peer_1_med']:.2f} / {two['peer_1_p99']:.2f}", "", round(two["ours_1_med"] / two["peer_1_med"], 2), "", ""],
        ["--workers 2: concurrency 16 (requests/s; change from 1 worker)",
         f"{two['ours_rps']:.0f} ({two['ours_rps'] / one['ours_rps'] - 1:+.0%})",
         f"{two['peer_rps']:.0f} ({two['peer_rps'] / one['peer_rps'] - 1:+.0%})", "",
         round(two["ours_rps"] / two["peer_rps"], 2), "", ""],
        ["--workers 2: concurrency 16 (median / p99 ms)", f"{two['ours_16_med']:.2f} / {two['ours_16_p99']:.2f}",
         f"{two['peer_16_med']:.2f} / {two['peer_16_p99']:.2f}", "", round(two["ours_16_med"] / two["peer_16_med"], 2),
         "", ""],
    ]


def _notes(risk: Any, model: Any, repeats: int, sizes: dict, one: dict, two: dict, load_start: float,
           load_end: float) -> list[str]:
    import shutil

    trees = risk.booster.num_boosted_rounds()
    return [
        f"{os.cpu_count()} cores (load average {load_start:.1f} at the start, {load_end:.1f} at the end), loopback, "
        f"model {model.tag} ({trees} trees: `make demo`'s default search on 2,000 simulated patients); the shadow "
        "challenger (a smaller model) scores every patient after the answer, and the outcome link stores every "
        "prediction (monitoring/monitor.py: per interval, on a background thread); explanations are XGBoost's SHAP "
        "values remembered per tree pattern, so the first batch with unseen patterns pays XGBoost's pred_contribs "
        "and the measured (warm) rounds mostly do not; requests take turns across the forms and the peer "
        f"({repeats} rounds after a warm-up), so load from other processes falls on all alike; p99 of {repeats} is "
        "close to the maximum.",
        "mlflow models serve: JSON dataframe_split of the already encoded model matrix, labels only. In-process "
        "XGBoost: booster.inplace_predict on the same encoded matrix (no HTTP, no validation).",
        "Ours: `records` is POST /v1/predict/batch (one JSON object per patient); `JSON columns` and `Arrow` are "
        "POST /v1/predict/columns; `probabilities` is output=probabilities (probability and band), `full` adds "
        "clinical scores, every feature's SHAP contribution, top factors and missing inputs.",
        f"single and concurrency-16 cells: {'wrk, 10 s each' if shutil.which('wrk') else 'Python httpx client'}.",
        "--workers 2 (ours: services.pve_progression_risk.workers=2; the peer: --workers 2), same two cores: "
        f"throughput at concurrency 16 goes from {one['ours_rps']:.0f} to {two['ours_rps']:.0f} requests/s for ours "
        f"and from {one['peer_rps']:.0f} to {two['peer_rps']:.0f} for the peer. One worker already keeps a core busy "
        "with Python and the load generator takes the other, so a second worker mostly shares the same cores (and "
        "each worker keeps its own model, monitor thread and drift window, summed at scrape time).",
        "cold start: `bentoml serve` / `mlflow models serve` started to /readyz (/health) answering 200, alternating, "
        "after the other measurements.",
        "request bytes (1k / 10k): " + "; ".join(f"{k} {sizes[1000][k]:,} / {sizes[10_000][k]:,}" for k in sizes[1000]),
    ]


def _report(out: dict[str, Any], goals: list[tuple[str, bool]]) -> None:
    from benchmarks.bench_common import write_result

    write_result("serving", out["title"], out["description"], out["tables"], out["notes"])
    for name, ok in goals:
        print(f"{_verdict(ok)}  {name}")


if __name__ == "__main__":
    main()
