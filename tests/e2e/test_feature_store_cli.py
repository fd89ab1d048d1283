"""`pverisk features ingest` then `pverisk train --entities` through the real command line, on an
entity table written by hand (pandas, no metadata), as a data scientist would: every patient keeps
the sources that were fresh at the decision (a stale lab blanks only the labs), and the model still
says which population and outcome it learned (the ingested cohort's study design)."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from feature_store import contract as c
from feature_store.simulate import simulate_cohort, write_cohort
from pverisk.cli import app

pytestmark = pytest.mark.slow
FAST = {"PVERISK_TRAIN_N_BOOTSTRAP": "30", "PVERISK_TRAIN_MAX_ROUNDS": "100", "PVERISK_TRAIN_CV_FOLDS": "3",
        "PVERISK_TRAIN_EARLY_STOPPING_ROUNDS": "20", "PVERISK_TRAIN_TRIALS": "2"}


def test_ingest_then_train_on_a_hand_written_entity_table(tmp_path):
    env = {"PVERISK_FEAST_REPO_DIR": str(tmp_path / "feast"), "PVERISK_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}",
           "PVERISK_ARTIFACT_ROOT": str(tmp_path / "artifacts"), **FAST}
    cohort = tmp_path / "cohort.parquet"
    write_cohort(simulate_cohort(400, seed=31), cohort)
    runner = CliRunner()
    res = runner.invoke(app, ["features", "ingest", "--data", str(cohort)], env=env)
    assert res.exit_code == 0, res.output
    entities = pd.read_parquet(cohort)[[c.PATIENT_ID, c.EVENT_TIMESTAMP, c.OUTCOME]]
    entities.to_parquet(tmp_path / "entities.parquet", index=False)  # no pverisk metadata
    table = tmp_path / "pit.parquet"
    res = runner.invoke(app, ["features", "training-set", "--entities", str(tmp_path / "entities.parquet"),
                              "--out", str(table)], env=env)
    assert res.exit_code == 0, res.output
    pit = pd.read_parquet(table)
    assert len(pit) == 400 and pit["age_years"].notna().all()  # stale labs (~5%) never blank the record
    stale_labs = pit["cea_ng_ml"].isna() & pd.read_parquet(cohort)["cea_ng_ml"].notna()
    assert 0 < stale_labs.sum() < 60 and pit.loc[stale_labs, "n_liver_metastases"].notna().all()
    res = runner.invoke(app, ["train", "--entities", str(tmp_path / "entities.parquet")], env=env)
    assert res.exit_code == 0, res.output
    client = MlflowClient(env["PVERISK_TRACKING_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    run = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)  # the training run, not a trial
    assert run.data.tags.get("study_population"), run.data.tags  # the ingested cohort's design, kept
    assert run.data.tags["data_kind"] == "simulated"
