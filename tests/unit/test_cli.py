"""The CLI is thin: every subcommand has --help and calls the plain functions."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from feature_store.simulate import simulate_cohort
from pverisk.cli import app

runner = CliRunner()


@pytest.mark.parametrize("cmd", [[], ["simulate"], ["import-cohort"], ["data-dictionary"], ["contract"]])
def test_help(cmd):
    res = runner.invoke(app, [*cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_simulate_writes_parquet_and_csv(tmp_path):
    out = tmp_path / "c.parquet"
    res = runner.invoke(app, ["simulate", "--patients", "300", "--seed", "5", "--out", str(out), "--csv"])
    assert res.exit_code == 0, res.output
    assert "SIMULATED" in res.output
    df = pd.read_parquet(out)
    pd.testing.assert_frame_equal(df, simulate_cohort(300, 5))
    assert out.with_suffix(".csv").exists()


def test_contract_prints_the_contract_as_json():
    from feature_store.dictionary import contract_summary

    res = runner.invoke(app, ["contract"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == json.loads(json.dumps(contract_summary()))


def test_data_dictionary_prints_or_writes_the_generated_markdown(tmp_path):
    from feature_store.dictionary import data_dictionary_markdown

    res = runner.invoke(app, ["data-dictionary"])
    assert res.exit_code == 0 and res.stdout == data_dictionary_markdown() + "\n"
    out = tmp_path / "dd.md"
    res = runner.invoke(app, ["data-dictionary", "--out", str(out)])
    assert res.exit_code == 0 and out.read_text() == data_dictionary_markdown()


def _store_env(tmp_path) -> dict[str, str]:
    return {"PVERISK_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "PVERISK_ARTIFACT_ROOT": str(tmp_path / "artifacts")}


def test_models_renders_int_and_str_versions(tmp_path, monkeypatch):
    from training import registry

    # SQLite stores give int versions, the REST client str ones: both must render (rich refuses ints)
    rows = [{"version": 1, "aliases": ["champion"], "data_kind": "simulated", "auroc": "0.7100",
             "gate_reason": "first version", "run_id": "r1"},
            {"version": "2", "aliases": [], "data_kind": "real", "auroc": None, "gate_reason": None, "run_id": "r2"}]
    monkeypatch.setattr(registry, "describe", lambda client, name: rows)
    res = runner.invoke(app, ["models"], env=_store_env(tmp_path))
    assert res.exit_code == 0, (res.output, res.exception)
    lines = res.stdout.splitlines()
    assert any("1" in line and "champion" in line and "0.7100" in line for line in lines), res.stdout
    assert any(" 2 " in line and "real" in line for line in lines), res.stdout


def test_models_on_an_empty_store_says_there_is_no_model_yet(tmp_path):
    res = runner.invoke(app, ["models"], env=_store_env(tmp_path))
    assert res.exit_code == 0, (res.output, res.exception)
    assert "no registered model 'pve-progression-risk' yet" in res.stdout


def test_models_fails_loudly_when_the_registry_cannot_be_read(tmp_path):
    broken = tmp_path / "mlflow.db"
    broken.write_bytes(b"this is not an SQLite database" * 100)
    res = runner.invoke(app, ["models"], env=_store_env(tmp_path))
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), (res.output, res.exception)
    message = " ".join(res.stderr.split())  # rich wraps long lines
    assert "cannot read the model registry at sqlite:///" in message and "DatabaseError" in message
    assert "version" not in res.stdout  # no empty table pretending all is well


def test_artifacts_live_beside_a_local_store_unless_told_otherwise(tmp_path):
    from feature_store.settings import TrackingSettings, project_root

    assert TrackingSettings(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}").artifact_root == tmp_path / "artifacts"
    default = TrackingSettings(tracking_uri=f"sqlite:///{project_root() / 'mlflow' / 'mlflow.db'}")
    assert default.artifact_root == project_root() / "mlflow" / "artifacts"
    assert TrackingSettings(tracking_uri="sqlite:///x.db", artifact_root=tmp_path / "a").artifact_root == tmp_path / "a"


def test_ehr_coverage_lists_what_a_standard_chart_carries():
    from feature_store.coverage import coverage

    res = runner.invoke(app, ["ehr-coverage", "--features", "cea_ng_ml,sflr_percent,more_than_4_liver_metastases",
                              "--json"])
    assert res.exit_code == 0, res.output
    cov = json.loads(res.stdout)
    assert cov == json.loads(json.dumps(coverage(["cea_ng_ml", "sflr_percent", "more_than_4_liver_metastases"])))
    assert cov["standard_inputs"] == 2 and cov["local_only"] == ["sflr_percent"]
    assert cov["inputs"][2]["derived_from"] == ["n_liver_metastases"]
    res = runner.invoke(app, ["ehr-coverage", "--features", "cea_ng_ml,sflr_percent"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "1 of 2 inputs (50%)" in res.output and "--features cea_ng_ml" in res.output
    bad = runner.invoke(app, ["ehr-coverage", "--features", "progression"])
    assert bad.exit_code == 1 and "not known at the PVE decision" in bad.output
