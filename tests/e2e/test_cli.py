"""The `pverisk` commands run as commands: train (with --eval-data, --time-budget, --data-kind real),
models, promote, import-model and serve --model-tag, in one store, in this order.

Training here is the only one of the module: a real-kind cohort through the real command line.
The tests share it (module scope) and run in file order.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from feature_store import contract as c
from feature_store.settings import project_root
from feature_store.simulate import simulate_cohort
from pverisk.cli import app
from model_runtime.scoring import REAL_NOTICE
from tests.servers import free_port, offline_env, stop, wait_http

pytestmark = pytest.mark.slow
runner = CliRunner()
NAME = "pve-progression-risk"
# Small budgets through the environment, as a deployment would set them (the options are tested).
FAST_TRAINING = {"PVERISK_TRAIN_N_BOOTSTRAP": "50", "PVERISK_TRAIN_MAX_ROUNDS": "150",
                 "PVERISK_TRAIN_CV_FOLDS": "3", "PVERISK_TRAIN_EARLY_STOPPING_ROUNDS": "20"}
TRIALS = 200  # far more than a 1-second budget allows: the budget, not the count, ends tuning


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cli-store")
    env = {"PVERISK_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "PVERISK_ARTIFACT_ROOT": str(root / "artifacts"),
           **FAST_TRAINING}
    previous = mlflow.get_tracking_uri()
    yield {"root": root, "env": env, "uri": env["PVERISK_TRACKING_URI"], "client": MlflowClient(env["PVERISK_TRACKING_URI"])}
    mlflow.set_tracking_uri(previous)  # the command set the process-wide URI


@pytest.fixture(scope="module")
def real_cohorts(tmp_path_factory) -> tuple[Path, Path]:
    """Two 'sites' as an import would give them: no simulator oracle column."""
    d = tmp_path_factory.mktemp("real")
    paths = d / "site-a.parquet", d / "site-b.parquet"
    for path, (n, seed) in zip(paths, ((500, 21), (300, 22))):
        simulate_cohort(n, seed=seed).drop(columns=[c.TRUE_PROBABILITY]).to_parquet(path, index=False)
    return paths


def cli(args: list[str], env: dict[str, str]) -> Any:
    res = runner.invoke(app, args, env=env)
    return res


def test_train_refuses_an_invalid_file_and_writes_nothing(tmp_path):
    df = simulate_cohort(60, seed=1)
    df.loc[3, "age_years"] = 150
    bad = tmp_path / "bad.parquet"
    df.to_parquet(bad)
    env = {"PVERISK_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PVERISK_ARTIFACT_ROOT": str(tmp_path / "a")}
    res = cli(["train", "--data", str(bad)], env)
    assert res.exit_code == 1, (res.output, res.exception)
    assert "nothing was written to MLflow" in " ".join(res.stderr.split()) and "age_years" in res.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_train_with_eval_data_time_budget_and_real_data(store, real_cohorts):
    train, evaluation = real_cohorts
    res = cli(["train", "--data", str(train), "--eval-data", str(evaluation), "--trials", str(TRIALS),
               "--time-budget", "1", "--seed", "3", "--data-kind", "real"], store["env"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert f"{NAME} v1 -> " in res.stdout and "AUROC (95% CI)" in res.stdout
    assert "oracle" not in res.stdout  # no oracle for real data
    client = store["client"]
    decision = client.get_model_version(NAME, "1").tags["gate_decision"]
    # A time budget makes the trial count machine-dependent, so the gate may go either way here;
    # whichever it is, the CLI says it, and later steps need a champion: a human promotes it.
    assert f"{NAME} v1 -> {decision}" in res.stdout and f"gate: {decision}:" in " ".join(res.stdout.split())
    if decision != "champion":
        promoted = cli(["promote", "1", "--alias", "champion", "--reason", "CLI test needs a champion"], store["env"])
        assert promoted.exit_code == 0, promoted.output
    mv = client.get_model_version_by_alias(NAME, "champion")
    assert str(mv.version) == "1" and mv.tags["data_kind"] == "real"
    assert "SIMULATED" not in mv.description
    run = client.get_run(mv.run_id)
    assert run.data.tags["data_kind"] == "real" and run.data.tags["simulated"] == "false"
    params = run.data.params
    # neither file states its site: a separate file, not shown to be external (a registry's own later patients
    # used to be called "external evaluation")
    assert params["evaluation_design"].startswith("separate evaluation file site-b") and params["n_eval"] == "300"
    assert "not shown to be external" in params["evaluation_design"]
    assert params["seed"] == "3" and float(params["time_budget_s"]) == 1.0 and params["trials"] == str(TRIALS)
    trials = client.search_runs([run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{mv.run_id}'")
    assert 1 <= len(trials) < TRIALS, "the time budget ended tuning"
    assert not any(k.startswith("oracle_") for k in run.data.metrics)
    mlflow.set_tracking_uri(store["uri"])
    card = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/model_card/model_card.json")
    assert card["data"]["kind"] == "real" and card["data"]["simulated"] is False
    assert card["data"]["note"].startswith("Real cohort") and card["data"]["dataset"] == "site-a"


def test_models_lists_the_version(store):
    res = cli(["models"], store["env"])
    assert res.exit_code == 0, (res.output, res.exception)
    row = next(line for line in res.stdout.splitlines() if "champion" in line)
    assert "1" in row and "real" in row


def test_promote_moves_the_alias_and_refuses_a_missing_version(store):
    res = cli(["promote", "1", "--alias", "challenger", "--reason", "tumour board review", "--by", "dr-b"],
              store["env"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert "is now 'challenger'" in res.stdout
    assert str(store["client"].get_model_version_by_alias(NAME, "challenger").version) == "1"
    res = cli(["promote", "99", "--reason", "typo"], store["env"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), (res.output, res.exception)
    assert "99" in res.stderr
    assert str(store["client"].get_model_version_by_alias(NAME, "champion").version) == "1"


def _command(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pverisk", *args], cwd=project_root(), env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_model_then_serve_model_tag_serves_the_real_data_model(store, tmp_path):
    # Own BentoML store: the session's store already holds a v1 from another registry.
    env = offline_env(BENTOML_HOME=str(tmp_path / "bentoml_home"), **{k: v for k, v in store["env"].items()})
    env.pop("PVERISK_SERVE_MODEL_TAG", None)
    missing = _command(["import-model", "--alias", "no-such-alias"], env)
    assert missing.returncode == 1 and "has alias 'no-such-alias'" in " ".join(missing.stderr.split())
    done = _command(["import-model", "--alias", "champion"], env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    tag = f"{NAME}:v1"
    assert f"imported {tag}" in done.stdout and "data real" in done.stdout

    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "pverisk", "serve", "--port", str(port), "--model-tag", tag],
                                cwd=project_root(), env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            try:
                wait_http(f"{url}/readyz", proc, timeout=120)
            except (RuntimeError, TimeoutError) as exc:
                raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from None
            info = httpx.get(f"{url}/v1/model").json()
            assert info["model"]["bento_tag"] == tag and info["data_kind"] == "real"
            assert info["notice"] == REAL_NOTICE and info["model_card"]["data"]["simulated"] is False
            answer = httpx.post(f"{url}/v1/predict", json=c.example_record()).json()
            assert answer["data_kind"] == "real" and answer["notice"] == REAL_NOTICE
            assert "SIMULATED" not in answer["notice"]
        finally:
            stop(proc)
