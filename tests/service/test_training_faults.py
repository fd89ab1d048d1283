"""Training faults against a real `mlflow server` on 127.0.0.1 (and the local SQLite store).

- The tracking server stops in the middle of a training run: the run fails with a clear message,
  no version is registered, no alias moves, and a rerun succeeds once the server is back.
- Two training runs finish at the same time: exactly one champion, and every version's recorded
  gate decision agrees with the aliases.
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import fast_settings, local_tracking
from tests.servers import free_port, kill_tree, mlflow_server_process
from training.settings import TrackingSettings

pytestmark = pytest.mark.slow


def test_tracking_server_stops_mid_run(tmp_path, cohort_file, monkeypatch):
    from training.pipeline import run_training
    from training.tracking import TrackingUnavailable

    # MLflow retries a refused call 7 times over about four minutes by default (a short server
    # restart is survived); here one quick retry, so the failure shows at once.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    port = free_port()
    settings = fast_settings(trials=1, n_bootstrap=20)
    seen: list[str] = []
    with mlflow_server_process(tmp_path, port) as (url, proc):
        tracking = TrackingSettings(tracking_uri=url)
        client = MlflowClient(url)

        def kill_when_tuning(msg: str) -> None:
            # Deterministic: "tuning" is announced once the run exists on the server and has logged
            # its parameters, dataset inputs and patient-key record.
            seen.append(msg)
            if msg.startswith("tuning"):
                runs = client.search_runs([client.get_experiment_by_name(tracking.experiment).experiment_id])
                assert runs and runs[0].data.params, "the run should have logged something before the kill"
                kill_tree(proc)

        with pytest.raises(TrackingUnavailable) as failed:
            run_training(cohort_file, settings=settings, tracking=tracking, progress=kill_when_tuning)
    message = str(failed.value)
    assert url in message and "nothing was registered" in message, message
    assert "rerun" in message.lower() and "tuning" in message, message
    assert any(m.startswith("tuning") for m in seen)

    with mlflow_server_process(tmp_path, port) as (url, _):
        client = MlflowClient(url)
        assert client.search_model_versions(f"name='{tracking.registered_model}'") == [], "a version was registered"
        assert not client.search_registered_models() or not any(
            m.aliases for m in client.search_registered_models()), "an alias was set"
        # the rerun, in the same process (no run left active by the failure), succeeds
        result = run_training(cohort_file, settings=settings, tracking=tracking)
        mv = client.get_model_version_by_alias(tracking.registered_model, result.alias)
        assert str(mv.version) == result.version == "1"


def _finish(uri: str, run_id: str, auroc: float, barrier: Any, queue: Any) -> None:
    """One training run's last step (gate and registration), started together with the other's."""
    import os

    for var in ("BENTOML_DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
        os.environ[var] = "true"
    import numpy as np
    import pandas as pd

    from feature_store import contract as c
    from training import registry
    from training.settings import TrainSettings

    import mlflow

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    metrics = {"auroc": auroc, "auroc_ci_low": auroc - 0.05, "auroc_ci_high": auroc + 0.05, "brier": 0.15,
               "calibration_slope": 1.0, "calibration_intercept": 0.0}
    frame = pd.DataFrame({c.OUTCOME: [0, 1] * 50})
    barrier.wait(timeout=120)
    try:
        decision, version = registry.gate_and_register(
            client, "pve-progression-risk", metrics, frame, np.full(100, 0.3), [f"k{i}" for i in range(100)],
            set(), TrainSettings(), f"runs:/{run_id}/model", None, run_id, {"run_id": run_id}, "test version")
        queue.put((run_id, decision.alias, version))
    except BaseException as exc:  # reported to the test, not lost in the child
        queue.put((run_id, f"error: {type(exc).__name__}: {exc}", None))


def _race(uri: str, tracking: TrackingSettings) -> list[tuple[str, str, str]]:
    import mlflow

    mlflow.set_tracking_uri(uri)
    from training.tracking import configure_tracking

    configure_tracking(tracking)
    run_ids = []
    for i in range(2):
        with mlflow.start_run(run_name=f"race-{i}") as run:
            mlflow.log_dict({"n": i}, "model/placeholder.json")
            run_ids.append(run.info.run_id)
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_finish, args=(uri, rid, 0.80 + i / 100, barrier, queue))
             for i, rid in enumerate(run_ids)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    assert not [r for r in results if r[1].startswith("error")], results
    return results


def _check_one_champion(uri: str, name: str, results: list[tuple[str, str, str]]) -> None:
    client = MlflowClient(uri)
    aliases = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
    decided = {version: alias for _, alias, version in results}
    champions = [v for v, a in decided.items() if a == "champion"]
    assert len(champions) == 1, f"both runs decided champion: {results}"
    assert aliases.get("champion") == champions[0], (aliases, results)
    for v, alias in decided.items():
        tags = client.get_model_version(name, v).tags
        assert tags["gate_decision"] == alias, (v, tags)
        assert aliases.get(alias) in (v, None) or alias != "champion"
    loser = next(v for v, a in decided.items() if a != "champion")
    reason = client.get_model_version(name, loser).tags["gate_reason"]
    assert f"v{champions[0]}" in reason, f"the second run was not compared with the first: {reason}"
    assert not [m for m in client.search_registered_models() if m.name != name], "a lock was left behind"


def test_two_runs_finishing_together_sqlite(tmp_path):
    tracking = local_tracking(tmp_path)
    results = _race(tracking.tracking_uri, tracking)
    _check_one_champion(tracking.tracking_uri, tracking.registered_model, results)


def test_two_runs_finishing_together_tracking_server(tmp_path):
    with mlflow_server_process(tmp_path) as (url, _):
        tracking = TrackingSettings(tracking_uri=url)
        results = _race(url, tracking)
        _check_one_champion(url, tracking.registered_model, results)
