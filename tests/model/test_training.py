"""Training pipeline: what gets logged, the leakage guard, validation before MLflow, reproducibility."""

import re
import subprocess

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from feature_store import contract as c
from feature_store.settings import project_root
from feature_store.simulate import simulate_cohort
from feature_store.validate import CohortValidationError
from tests.conftest import fast_settings, local_tracking
from training.pipeline import run_training
from training.prepare import SmallSampleWarning
from training.registry import load_registered, predict_registered


def test_signature_matches_the_contract(trained):
    result, tracking = trained
    mlflow.set_tracking_uri(tracking.tracking_uri)
    info = mlflow.models.get_model_info(f"models:/{result.registered_model}/{result.version}")
    assert info.signature is not None and info.signature.inputs is not None
    assert info.signature.inputs.input_names() == c.model_columns()
    assert {s.type.name for s in info.signature.inputs.inputs} == {"double"}


def test_run_logs_tags_dataset_artifacts_and_card(trained):
    result, tracking = trained
    client = MlflowClient(tracking.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["data_kind"] == "simulated"
    assert "simulated" in run.data.tags["dataset_name"]
    assert run.data.tags["feature_contract_version"] == c.CONTRACT_VERSION
    # the commit the model was trained from, not a placeholder
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True).stdout
    assert re.fullmatch(r"[0-9a-f]{40}", run.data.tags["git_commit"]), run.data.tags["git_commit"]
    assert run.data.tags["git_commit"] == head.strip()
    assert run.data.params["calibration"] in ("isotonic", "sigmoid")
    for k in ("eval_auroc", "eval_auroc_ci_low", "eval_brier", "eval_calibration_slope", "oracle_auroc",
              "baseline_logistic_regression_auroc", "baseline_fong_crs_auroc"):
        assert k in run.data.metrics, k
    inputs = run.inputs.dataset_inputs
    assert {i.dataset.name for i in inputs} and all("simulated" in i.dataset.name for i in inputs)
    assert all(any(t.key == "content_hash" for t in i.tags) for i in inputs)
    arts = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert arts == {"plots/roc.png", "plots/calibration.png", "plots/decision_curve.png", "plots/shap_summary.png"}
    card = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/model_card/model_card.json")
    assert card["data"]["simulated"] is True and "Research use only" in card["intended_use"]["notice"]
    mv = client.get_model_version(result.registered_model, result.version)
    assert mv.description.startswith("# Model card") and "SIMULATED" in mv.description
    assert mv.tags["data_kind"] == "simulated"
    nested = client.search_runs([run.info.experiment_id],
                                filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert len(nested) == 2  # one per tuning trial


def test_model_metadata_carries_calibration_and_features(trained):
    result, tracking = trained
    mlflow.set_tracking_uri(tracking.tracking_uri)
    model, meta = load_registered(f"models:/{result.registered_model}@champion")
    assert meta["features"] == c.fine_feature_names() and meta["columns"] == c.model_columns()
    assert meta["data_kind"] == "simulated"
    p = predict_registered(model, meta, simulate_cohort(50, seed=99))
    assert ((p >= 0) & (p <= 1)).all()


def test_leaking_feature_refused_before_mlflow(tmp_path, cohort_file):
    tracking = local_tracking(tmp_path)
    with pytest.raises(c.LeakageError, match="degree_hypertrophy_pp"):
        run_training(cohort_file, settings=fast_settings(), tracking=tracking,
                     features=c.feature_names() + ["degree_hypertrophy_pp"])
    assert not (tmp_path / "mlflow.db").exists()


def test_invalid_training_file_lists_every_problem_and_writes_nothing(tmp_path):
    df = simulate_cohort(100, seed=1)
    df.loc[3, "age_years"] = 150
    df.loc[7, "n_liver_metastases"] = 0
    df["sex"] = df["sex"].astype(object)
    df.loc[7, "sex"] = "x"
    df = df.drop(columns=["largest_metastasis_cm"])
    bad = tmp_path / "bad.parquet"
    df.to_parquet(bad)
    tracking = local_tracking(tmp_path)
    with pytest.raises(CohortValidationError) as exc:
        run_training(bad, settings=fast_settings(), tracking=tracking)
    found = {(p.row, p.column) for p in exc.value.problems}
    # a column the cohort lacks is not a problem (a cohort's features are what it recorded)
    assert found == {(4, "age_years"), (8, "n_liver_metastases"), (8, "sex")}
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "artifacts").exists()


def test_same_data_seed_config_same_model(tmp_path, cohort_file, trained):
    first, _ = trained
    again = run_training(cohort_file, settings=fast_settings(), tracking=local_tracking(tmp_path))
    assert again.metrics == first.metrics
    assert again.card["model_details"]["hyperparameters"] == first.card["model_details"]["hyperparameters"]


def test_forty_patients_warns_and_trains(tmp_path):
    path = tmp_path / "small.parquet"
    simulate_cohort(40, seed=5).to_parquet(path)
    with pytest.warns(SmallSampleWarning, match="40 patients"):
        result = run_training(path, settings=fast_settings(), tracking=local_tracking(tmp_path))
    assert "cross-validation" in result.card["evaluation"]["design"]
    assert any(x.startswith("small sample: 40 patients") for x in result.card["limitations"])
    assert 0 <= result.metrics["auroc"] <= 1
