"""Serving faults against a real `bentoml serve` on 127.0.0.1.

- The model in the BentoML store is missing or corrupt at start: the service refuses to start
  (non-zero exit, no port left half-open) and its output says why and what to do.
- A worker is killed with SIGKILL under load: the service recovers (a new worker takes its place),
  and only the requests in flight on the killed worker fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Callable

import httpx
import psutil
import pytest

from feature_store import contract as c
from tests.service.conftest import bento_server

pytestmark = pytest.mark.slow


def _store_copy(tmp: Path, tag: str) -> tuple[Path, Path]:
    """A private copy of the session's BentoML store (home, model directory) to break at will."""
    home = tmp / "home"
    shutil.copytree(Path(os.environ["BENTOML_HOME"]) / "models", home / "models", symlinks=False)
    name, version = tag.split(":")
    return home, home / "models" / name / version


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])


def _xgboost_file(model_dir: Path) -> Path:
    return next((model_dir / "mlflow_model").glob("model.*[!d]"))  # model.json / model.ubj, not MLmodel


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "model directory deleted": (lambda d: shutil.rmtree(d), "not in the BentoML store"),
    "MLmodel file missing": (lambda d: (d / "mlflow_model" / "MLmodel").unlink(), "MLmodel"),
    "MLmodel file garbage": (lambda d: (d / "mlflow_model" / "MLmodel").write_text("flavors: [\x00{{"), "MLmodel"),
    "XGBoost model file truncated": (lambda d: _truncate(_xgboost_file(d)), "XGBoost model file"),
    "XGBoost model file missing": (lambda d: _xgboost_file(d).unlink(), "XGBoost model file"),
    "BentoML model.yaml garbage": (lambda d: (d / "model.yaml").write_text("::: not yaml {"), "model.yaml"),
}


def _copy_as(home: Path, model_dir: Path, version: str) -> Path:
    """Another version of the model in the same store copy (its own directory and model.yaml)."""
    target = model_dir.parent / version
    shutil.copytree(model_dir, target)
    yaml_file = target / "model.yaml"
    yaml_file.write_text(yaml_file.read_text().replace(f"version: {model_dir.name}\n", f"version: {version}\n", 1))
    return target


CHECK = """
import json, sys
from serving.model_check import ModelCorrupt, check_stored_model
from serving.import_model import ModelNotFound
out = {}
for tag in sys.argv[1:]:
    try:
        check_stored_model(tag)
        out[tag] = "ok"
    except (ModelCorrupt, ModelNotFound) as exc:
        out[tag] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def test_every_broken_model_is_named_with_its_cause(imported, tmp_path):
    """Each damage, in one store copy, through the check the service runs at start (in a fresh
    process: the session's BentoML store is fixed at import); the intact copy passes."""
    import subprocess
    import sys

    from tests.servers import offline_env

    model, _ = imported
    name, version = str(model.tag).split(":")
    home, model_dir = _store_copy(tmp_path, str(model.tag))
    tags = {}
    for i, (fault, (breaks, _)) in enumerate(CORRUPTIONS.items()):
        broken = _copy_as(home, model_dir, f"{version}broken{i}")
        breaks(broken)
        tags[fault] = f"{name}:{broken.name}"
    out = subprocess.run([sys.executable, "-c", CHECK, str(model.tag), *tags.values()], capture_output=True,
                         text=True, env=offline_env(BENTOML_HOME=str(home)), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found[str(model.tag)] == "ok", found  # the positive control: the copy itself is sound
    for fault, tag in tags.items():
        says = CORRUPTIONS[fault][1]
        assert found[tag] != "ok" and tag in found[tag] and says in found[tag], (fault, found[tag])
        assert "pverisk import-model" in found[tag], (fault, found[tag])


@pytest.mark.parametrize("fault", ["model directory deleted", "XGBoost model file truncated"])
def test_service_refuses_to_start_on_a_broken_model(imported, tmp_path, fault):
    """The real `bentoml serve` exits non-zero and its output says why: a missing model, and a
    damaged model file (which used to leave a listening server, never ready)."""
    model, _ = imported
    tag = str(model.tag)
    home, model_dir = _store_copy(tmp_path, tag)
    breaks, says = CORRUPTIONS[fault]
    breaks(model_dir)
    with bento_server(tmp_path, tag, wait_ready=False, BENTOML_HOME=str(home)) as s:
        try:
            code = s.proc.wait(timeout=120)  # a bound on a hang, not a speed check
        except Exception:
            pytest.fail(f"the service kept running on a broken model ({fault}):\n{s.log_text()[-3000:]}")
        out = s.log_text()
    assert code != 0, out[-3000:]
    assert tag in out and says in out, f"{fault}: the output does not say why:\n{out[-3000:]}"
    assert "pverisk import-model" in out, f"{fault}: the output does not say what to do:\n{out[-3000:]}"


def _workers(server_pid: int) -> list[psutil.Process]:
    """The live worker processes of a `bentoml serve` (a killed one is a zombie until reaped)."""
    found = []
    for p in psutil.Process(server_pid).children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "_bentoml_impl.worker.service" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            pass
    return found


def _wait_all_ready(url: str, streak: int = 40) -> None:
    """/readyz is answered by whichever worker accepts the connection: 200 on `streak` fresh
    connections in a row means every worker has loaded the model (a bound, not a speed check)."""
    ok, deadline = 0, time.monotonic() + 120
    while ok < streak and time.monotonic() < deadline:
        ok = ok + 1 if httpx.get(f"{url}/readyz", timeout=10).status_code == 200 else 0
        if not ok:
            time.sleep(0.2)
    assert ok >= streak, "the workers never all became ready"


async def _hammer(url: str, body: bytes, stop: asyncio.Event, concurrency: int, outcomes: list[tuple[float, str]]
                  ) -> None:
    """Concurrent clients, each on its own keep-alive connection, until `stop`; records (time, outcome)."""
    async def client() -> None:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=1)) as http:
            while not stop.is_set():
                try:
                    r = await http.post(url, content=body, headers={"content-type": "application/json"})
                    ok = r.status_code == 200 and 0 <= r.json()["probability"] <= 1
                    outcomes.append((time.monotonic(), "ok" if ok else f"HTTP {r.status_code}"))
                except httpx.HTTPError as exc:
                    outcomes.append((time.monotonic(), type(exc).__name__))

    await asyncio.gather(*(client() for _ in range(concurrency)))


def test_worker_killed_under_load_recovers(imported, tmp_path):
    model, _ = imported
    concurrency = 8
    options = "services.pve_progression_risk.workers=2"
    with bento_server(tmp_path, str(model.tag), BENTOML_CONFIG_OPTIONS=options) as s:
        workers = _workers(s.proc.pid)
        assert len(workers) == 2, [w.cmdline() for w in workers]
        _wait_all_ready(s.url)
        body = json.dumps(c.example_record()).encode()
        outcomes: list[tuple[float, str]] = []
        killed: dict[str, float] = {}

        async def scenario() -> None:
            stop = asyncio.Event()
            load = asyncio.create_task(_hammer(f"{s.url}/v1/predict", body, stop, concurrency, outcomes))
            while sum(1 for _, o in outcomes if o == "ok") < 200:  # both workers busy
                await asyncio.sleep(0.05)
            victim = workers[0]
            killed["at"] = time.monotonic()
            os.kill(victim.pid, signal.SIGKILL)
            # until a new worker replaced it, then a stretch of load on the recovered pair
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                now = [w.pid for w in _workers(s.proc.pid)]
                if len(now) == 2 and victim.pid not in now:
                    break
                await asyncio.sleep(0.2)
            killed["replaced"] = time.monotonic()
            await asyncio.to_thread(_wait_all_ready, s.url)
            mark = len(outcomes)
            while len(outcomes) < mark + 300:
                await asyncio.sleep(0.05)
            killed["after"] = mark
            stop.set()
            await load

        asyncio.run(scenario())
        assert s.proc.poll() is None, "the server died with its worker"
        now = _workers(s.proc.pid)
        assert len(now) == 2 and workers[0].pid not in {w.pid for w in now}, "the killed worker was not replaced"
        failed = [o for t, o in outcomes if o != "ok"]
        print(f"{len(outcomes)} requests, failures: {failed}; replaced after {killed['replaced'] - killed['at']:.1f} s")
        before = [o for t, o in outcomes if t < killed["at"]]
        after = [o for _, o in outcomes[int(killed["after"]):]]
        assert all(o == "ok" for o in before), f"failures before the kill: {[o for o in before if o != 'ok']}"
        # only what was in flight: at most one request per client connection fails
        assert len(failed) <= concurrency, f"{len(failed)} failures for {concurrency} connections: {failed}"
        assert after and all(o == "ok" for o in after), f"not recovered: {after[:20]}"
        assert workers[1].is_running(), "the other worker was disturbed"
