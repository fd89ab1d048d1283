"""Serving benchmark (run on demand: `make bench`). Prints a table; asserts nothing.

It lives in the CLI package because it trains a model first (serving never imports training).

Side by side in one run, on loopback, with the same small simulated model:
our BentoML service (full response: validation, scores, explanations), the peer a
user would otherwise pick (`mlflow models serve`, labels only), and in-process
XGBoost as the floor. Medians and p99 in milliseconds.
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

for _var in ("BENTOML_DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
    os.environ.setdefault(_var, "true")
ROOT = Path(tempfile.mkdtemp(prefix="pverisk-serve-bench-"))
os.environ["BENTOML_HOME"] = str(ROOT / "bentoml_home")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, timeout: float = 180) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode})")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


def _rss_mb(proc: subprocess.Popen) -> float:
    p = psutil.Process(proc.pid)
    return sum(x.memory_info().rss for x in [p, *p.children(recursive=True)]) / 2**20


def _sequential(url: str, payload: bytes, n: int) -> list[float]:
    times = []
    with httpx.Client(headers={"content-type": "application/json"}) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            r = client.post(url, content=payload)
            times.append((time.perf_counter() - t0) * 1e3)
            r.raise_for_status()
    return times


async def _concurrent(url: str, payload: bytes, concurrency: int, total: int) -> tuple[float, list[float]]:
    times: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers={"content-type": "application/json"}, limits=limits, timeout=30) as client:
        remaining = total

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                r = await client.post(url, content=payload)
                times.append((time.perf_counter() - t0) * 1e3)
                r.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - t0), times


def _wrk(url: str, payload: bytes, connections: int, seconds: int = 10) -> tuple[float, float, float]:
    """(requests/s, median ms, p99 ms) from wrk: a C load generator whose own overhead is far
    below a Python client's, so the numbers are the servers', not the client's."""
    import re
    import shutil

    work = Path(tempfile.mkdtemp(prefix="wrk-"))
    (work / "body.json").write_bytes(payload)
    (work / "post.lua").write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{work / "body.json"}", "rb")\nwrk.body = f:read("*a")\nf:close()\n')
    threads = min(2, connections)
    out = subprocess.run([shutil.which("wrk") or "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(work / "post.lua"), url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rps, ms("50%"), ms("99%")


def _row(name: str, ours: str, peer: str, floor: str = "") -> None:
    print(f"| {name} | {ours} | {peer} | {floor} |")


def _p(times: list[float], q: float) -> float:
    return float(np.percentile(times, q))


def main(n_single: int = 1000, n_concurrent: int = 2000) -> None:
    import json

    from feature_store import contract as c
    from feature_store.settings import TrackingSettings
    from feature_store.simulate import simulate_cohort
    from serving.import_model import import_model
    from serving.predict import ModelIdentity, RiskModel
    from training.pipeline import run_training
    from training.settings import TrainSettings

    data = ROOT / "simulated-bench.parquet"
    simulate_cohort(2000, seed=5).to_parquet(data)
    tracking = TrackingSettings(tracking_uri=f"sqlite:///{ROOT / 'mlflow.db'}", artifact_root=ROOT / "artifacts")
    result = run_training(data, settings=TrainSettings(trials=4, n_bootstrap=100), tracking=tracking)
    model = import_model("champion", tracking)
    env = {**os.environ, "PVERISK_SERVE_MODEL_TAG": str(model.tag), "PVERISK_SERVE_MAX_BATCH": "10000",
           "PVERISK_SERVE_MAX_BODY_BYTES": "50000000", "MLFLOW_TRACKING_URI": tracking.tracking_uri}
    bin_dir = Path(sys.executable).parent
    # Run outside `uv run`, the venv's bin is not on PATH and `mlflow models serve` cannot find uvicorn.
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"

    ours_port, peer_port = _free_port(), _free_port()
    ours = subprocess.Popen([str(bin_dir / "bentoml"), "serve", "serving.service:PVERisk", "--host", "127.0.0.1",
                             "--port", str(ours_port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ours_ready = _wait(f"http://127.0.0.1:{ours_port}/readyz", ours)
    peer = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m",
                             f"models:/{result.registered_model}/{result.version}", "--env-manager", "local",
                             "--host", "127.0.0.1", "--port", str(peer_port), "--workers", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peer_ready = _wait(f"http://127.0.0.1:{peer_port}/health", peer)
    time.sleep(2)
    ours_mem, peer_mem = _rss_mb(ours), _rss_mb(peer)
    try:
        patient = c.example_record()
        ours_single = json.dumps(patient).encode()
        X = c.encode_array({k: [v] for k, v in patient.items()})
        cols = c.model_columns()
        peer_single = json.dumps({"dataframe_split": {"columns": cols, "data": X.tolist()}}).encode()
        ours_url, peer_url = f"http://127.0.0.1:{ours_port}/v1/predict", f"http://127.0.0.1:{peer_port}/invocations"
        _sequential(ours_url, ours_single, 200)  # warm-up
        _sequential(peer_url, peer_single, 200)
        import shutil

        use_wrk = shutil.which("wrk") is not None
        if use_wrk:
            o1_rps, o1_med, o1_p99 = _wrk(ours_url, ours_single, 1)
            p1_rps, p1_med, p1_p99 = _wrk(peer_url, peer_single, 1)
            o_rps, o16_med, o16_p99 = _wrk(ours_url, ours_single, 16)
            p_rps, p16_med, p16_p99 = _wrk(peer_url, peer_single, 16)
        else:  # Python client: its own overhead inflates both sides alike
            o1, p1 = _sequential(ours_url, ours_single, n_single), _sequential(peer_url, peer_single, n_single)
            o1_med, o1_p99, p1_med, p1_p99 = statistics.median(o1), _p(o1, 99), statistics.median(p1), _p(p1, 99)
            o_rps, o16 = asyncio.run(_concurrent(ours_url, ours_single, 16, n_concurrent))
            p_rps, p16 = asyncio.run(_concurrent(peer_url, peer_single, 16, n_concurrent))
            o16_med, o16_p99, p16_med, p16_p99 = statistics.median(o16), _p(o16, 99), statistics.median(p16), _p(p16, 99)

        cohort = simulate_cohort(10_000, seed=9)
        records = json.loads(cohort[c.fine_feature_names()].to_json(orient="records"))  # NaN/NA -> null
        batch = {}
        for n in (1000, 10_000):
            ob = json.dumps({"patients": records[:n]}).encode()
            Xn = c.encode_array(cohort.iloc[:n])
            pb = json.dumps({"dataframe_split": {"columns": cols, "data": np.where(np.isnan(Xn), None, Xn).tolist()}}
                            ).encode()
            burl = f"http://127.0.0.1:{ours_port}/v1/predict/batch"
            batch[n] = (statistics.median(_sequential(burl, ob, 7)), statistics.median(_sequential(peer_url, pb, 7)))

        identity = ModelIdentity("bench", "1", "champion", "simulated", str(model.tag))
        risk = RiskModel.from_mlflow_dir(model.path_of("mlflow_model"), identity)
        floor_full, floor_xgb = [], []
        for _ in range(2000):
            t = time.perf_counter()
            risk.score_record(patient)
            floor_full.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            risk.booster.inplace_predict(X)
            floor_xgb.append((time.perf_counter() - t) * 1e3)

        print(f"\nServing benchmark, {os.cpu_count()} cores, loopback, model {model.tag} "
              f"(peer: mlflow models serve, 1 worker, returns labels only); load generator: "
              f"{'wrk, 10 s per cell' if use_wrk else 'Python httpx'}\n")
        print("| measure | ours (BentoML, full response) | peer (mlflow models serve) | in-process floor |")
        print("|---|---|---|---|")
        _row("single request, concurrency 1: median / p99 ms", f"{o1_med:.2f} / {o1_p99:.2f}",
             f"{p1_med:.2f} / {p1_p99:.2f}",
             f"{statistics.median(floor_full):.3f} (full) / {statistics.median(floor_xgb):.3f} (XGBoost)")
        _row("concurrency 16: requests/s", f"{o_rps:.0f}", f"{p_rps:.0f}", f"ratio ours/peer {o_rps / p_rps:.2f}x")
        _row("concurrency 16: median / p99 ms", f"{o16_med:.2f} / {o16_p99:.2f}", f"{p16_med:.2f} / {p16_p99:.2f}")
        for n, (ob_ms, pb_ms) in batch.items():
            _row(f"batch of {n:,}: median ms", f"{ob_ms:.1f}", f"{pb_ms:.1f}", f"ratio ours/peer {ob_ms / pb_ms:.2f}")
        _row("cold start to ready: s", f"{ours_ready:.2f}", f"{peer_ready:.2f}")
        _row("idle memory (process tree RSS): MB", f"{ours_mem:.0f}", f"{peer_mem:.0f}")
    finally:
        for p in (ours, peer):
            p.terminate()
            p.wait(15)


if __name__ == "__main__":
    main()
