"""Load benchmark (run on demand: `make bench`; `python -m benchmarks.bench_load [--soak-minutes 10]`).

Prints tables, asserts nothing, writes build/bench/load.json. Locust, headless, on loopback against
a real `bentoml serve` with a small simulated model (default service configuration):
  - concurrency 32 for 60 s, closed loop (each user sends its next request when the last answered):
    nine single-patient calls to one batch of 20; p50/p95/p99 and throughput; every response checked
    against the answer the service's own scoring code gives in-process (see load_locustfile.py);
  - a soak at a moderate load (default 8 users, 10 minutes) sampling the resident memory of the whole
    server process tree every few seconds: start, end, maximum and the slope after the first minute.
The load generator shares the machine's cores with the server: the throughput is the pair's.
It lives in the CLI package because it trains a model first (serving never imports training).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

for _var in ("BENTOML_DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
    os.environ.setdefault(_var, "true")

import numpy as np  # noqa: E402

from benchmarks.bench_http import free_port, rss_mb, wait_ready  # noqa: E402

LOCUSTFILE = Path(__file__).with_name("load_locustfile.py")
BIN = Path(sys.executable).parent


def write_cases(model_dir: Path, labels: dict[str, str], out: Path, n_patients: int = 200, batch_size: int = 20,
                seed: int = 31) -> dict[str, int]:
    """Request bodies for simulated patients with the expected (probability, risk band) of each,
    computed in-process by the service's scoring code on the same model files. Returns counts."""
    from feature_store import contract as c
    from feature_store.simulate import simulate_cohort
    from model_runtime.scoring import ModelIdentity, RiskModel, served_inputs

    served = served_inputs(model_dir)
    identity = ModelIdentity(labels.get("registered_model", "?"), labels.get("version", "?"),
                             labels.get("alias", "?"), labels.get("data_kind", "unknown"), "")
    risk = RiskModel.from_mlflow_dir(model_dir, identity)
    cohort = simulate_cohort(n_patients, seed=seed)
    names = [f for f in c.feature_names() if f in served.used]
    records = json.loads(cohort[names].to_json(orient="records"))  # NaN/NA -> null
    records = [{k: v for k, v in r.items() if v is not None} for r in records]
    expected = [[r["probability"], r["risk_band"]] for r in (risk.score_record(p) for p in records)]
    single = [{"body": json.dumps(p), "expected": [e]} for p, e in zip(records, expected)]
    batch = [{"body": json.dumps({"patients": records[i:i + batch_size]}), "expected": expected[i:i + batch_size]}
             for i in range(0, len(records) - batch_size + 1, batch_size)]
    out.write_text(json.dumps({"single": single, "batch": batch, "data_kind": identity.data_kind}))
    return {"patients": len(records), "batches": len(batch), "batch_size": batch_size}


@dataclass
class LoadResult:
    users: int
    seconds: float
    counts: dict[str, int]
    failures: dict[str, int]
    times_ms: dict[str, list[float]]
    failure_messages: dict[str, int]
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MB)
    exit_code: int = 0
    log: str = ""

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def percentile(self, q: float, name: str | None = None) -> float:
        times = self.times_ms[name] if name else [t for ts in self.times_ms.values() for t in ts]
        return float(np.percentile(times, q)) if times else float("nan")


def run_locust(url: str, cases: Path, users: int, seconds: int, workdir: Path, server_pid: int | None = None,
               sample_every: float = 5.0) -> LoadResult:
    """Locust headless in a subprocess (it monkey-patches the standard library), bounded in users and
    time; the server's memory sampled meanwhile when `server_pid` is given."""
    workdir.mkdir(parents=True, exist_ok=True)
    timings = workdir / f"timings-{users}u-{seconds}s.json"
    cmd = [str(BIN / "locust"), "-f", str(LOCUSTFILE), "--headless", "--users", str(users), "--spawn-rate",
           str(users), "--run-time", f"{seconds}s", "--host", url, "--only-summary", "--stop-timeout", "30",
           "--loglevel", "WARNING", "--exit-code-on-error", "0"]
    env = {**os.environ, "PVERISK_LOAD_CASES": str(cases), "PVERISK_LOAD_TIMINGS": str(timings),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    samples: list[tuple[float, float]] = []
    done = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter() - t0, rss_mb(server_pid)))  # type: ignore[arg-type]
            done.wait(sample_every)

    sampler = threading.Thread(target=sample, daemon=True) if server_pid else None
    if sampler:
        sampler.start()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    finally:
        done.set()
        if sampler:
            sampler.join()
    if server_pid:
        samples.append((time.perf_counter() - t0, rss_mb(server_pid)))
    if not timings.exists():
        raise RuntimeError(f"locust wrote no timings (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    raw = json.loads(timings.read_text())
    # counted by the locustfile's own request listener: every request it timed, none twice
    counts = {name: len(times) for name, times in raw["times_ms"].items()}
    return LoadResult(users, raw["seconds"], counts, raw["failed"], raw["times_ms"], raw["failures"], samples,
                      proc.returncode, proc.stdout[-5000:] + proc.stderr[-5000:])


def memory_trend(samples: list[tuple[float, float]], warmup_s: float = 60.0) -> dict[str, float]:
    """Start (first sample after the warm-up), end, maximum and least-squares slope (MB per minute)
    of the samples after the warm-up: the allocator's arenas fill during the first minute."""
    after = [(t, m) for t, m in samples if t >= warmup_s and not np.isnan(m)] or samples
    t = np.array([s[0] for s in after]) / 60.0
    m = np.array([s[1] for s in after])
    slope = float(np.polyfit(t, m, 1)[0]) if len(after) >= 3 else float("nan")
    return {"first": samples[0][1], "start": float(m[0]), "end": float(m[-1]), "max": float(max(s[1] for s in samples)),
            "slope_mb_per_min": slope, "samples": len(samples)}


def _load_rows(r: LoadResult, batch_size: int) -> list[list[Any]]:
    rows = []
    for name, label in (("single", "POST /v1/predict (1 patient)"),
                        ("batch", f"POST /v1/predict/batch ({batch_size} patients)"), (None, "all requests")):
        count = r.counts.get(name, 0) if name else r.total
        fails = r.failures.get(name, 0) if name else r.failed
        rows.append([label, count, fails, round(r.percentile(50, name), 1), round(r.percentile(95, name), 1),
                     round(r.percentile(99, name), 1), round(count / r.seconds, 1)])
    return rows


def main(users: int = 32, seconds: int = 60, soak_minutes: float = 10.0, soak_users: int = 8) -> None:
    root = Path(tempfile.mkdtemp(prefix="pverisk-load-bench-"))
    os.environ["BENTOML_HOME"] = str(root / "bentoml_home")  # a throw-away store, before bentoml is imported
    import bentoml

    from feature_store.settings import TrackingSettings
    from feature_store.simulate import simulate_cohort
    from benchmarks.bench_common import table, write_result
    from serving.import_model import import_model
    from training.pipeline import run_training
    from training.settings import TrainSettings

    data = root / "simulated-bench.parquet"
    simulate_cohort(1000, seed=5).to_parquet(data)
    tracking = TrackingSettings(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=root / "artifacts")
    run_training(data, settings=TrainSettings(trials=2, n_bootstrap=50), tracking=tracking)
    model = import_model("champion", tracking)
    stored = bentoml.models.get(model.tag)
    cases = root / "cases.json"
    shape = write_cases(Path(stored.path_of("mlflow_model")), dict(stored.info.labels), cases)

    port = free_port()
    env = {**os.environ, "PVERISK_SERVE_MODEL_TAG": str(model.tag), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    log = open(root / "server.log", "w")
    server = subprocess.Popen([str(BIN / "bentoml"), "serve", "serving.service:PVERisk", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/readyz", server, log=root / "server.log")
        idle = rss_mb(server.pid)
        load_before = os.getloadavg()
        run_locust(url, cases, 4, 5, root / "warmup")
        load = run_locust(url, cases, users, seconds, root / "load", server.pid, sample_every=5)
        soak = run_locust(url, cases, soak_users, int(soak_minutes * 60), root / "soak", server.pid,
                          sample_every=5) if soak_minutes > 0 else None
    finally:
        server.terminate()
        try:
            server.wait(60)  # a busy machine stops it slowly
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(15)
        log.close()

    tables = [table(f"Concurrency {users} for {seconds} s (closed loop; {load.seconds:.0f} s measured)",
                    ["requests", "count", "errors", "p50 ms", "p95 ms", "p99 ms", "throughput req/s"],
                    _load_rows(load, shape["batch_size"]))]
    load_mem = memory_trend(load.rss, warmup_s=0)
    notes = [f"Server: `bentoml serve serving.service:PVERisk`, default configuration (1 worker), model {model.tag} "
             f"trained on 1,000 simulated patients; idle memory of its process tree {idle:.0f} MB, "
             f"{load_mem['max']:.0f} MB at most under concurrency {users}.",
             f"Every response is checked: HTTP 200 and exactly the probability and risk band that the service's "
             f"scoring code gives in-process for that patient ({shape['patients']} simulated patients, "
             f"{shape['batches']} batches); anything else counts as an error.",
             f"Locust (FastHttpUser, one process) runs on the same {os.cpu_count()} cores as the server; load average "
             f"{load_before[0]:.1f} before the run, {os.getloadavg()[0]:.1f} after (other work on the machine "
             "inflates the latencies)."]
    if load.failure_messages:
        notes.append("Errors seen: " + "; ".join(f"{k} (x{v})" for k, v in load.failure_messages.items()))
    if soak:
        trend = memory_trend(soak.rss)
        tables.append(table(f"Soak: {soak_users} users for {soak_minutes:g} minutes, server memory (process tree RSS)",
                            ["requests", "errors", "throughput req/s", "RSS at 0 s MB", "RSS at 1 min MB",
                             "RSS at end MB", "max MB", "slope after 1 min MB/min", "samples"],
                            [[soak.total, soak.failed, round(soak.total / soak.seconds, 1), round(trend["first"], 1),
                              round(trend["start"], 1), round(trend["end"], 1), round(trend["max"], 1),
                              round(trend["slope_mb_per_min"], 3), trend["samples"]]]))
        per_minute: list[list[Any]] = []
        for t, m in soak.rss:  # the first sample of each minute, and the last
            if not per_minute or int(t // 60) != int(float(per_minute[-1][0])) or t == soak.rss[-1][0]:
                per_minute.append([f"{t / 60:.1f}", round(m, 1)])
        tables.append(table("Soak: server memory by minute", ["minutes", "RSS MB"], per_minute))
        notes.append("Flat memory means a slope near 0 MB/min after the first minute (the allocator's arenas and "
                     "caches fill during it); the slope is a least-squares fit over samples every 5 s.")
        if soak.failure_messages:
            notes.append("Soak errors: " + "; ".join(f"{k} (x{v})" for k, v in soak.failure_messages.items()))
    write_result("load", "Load (Locust) and memory soak",
                 f"benchmarks/bench_load.py: Locust headless on 127.0.0.1 against a real `bentoml serve`; nine single-"
                 f"patient calls to one batch of {shape['batch_size']}; every response checked for correctness.",
                 tables, notes)


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--soak-minutes", type=float, default=10.0)
    p.add_argument("--soak-users", type=int, default=8)
    return p.parse_args()


if __name__ == "__main__":
    a = _args()
    main(a.users, a.seconds, a.soak_minutes, a.soak_users)
