"""`pverisk score`: a cohort file scored offline equals the service's answers for the same
patients; invalid rows are listed (row, field, allowed range) and nothing is written."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import pyarrow.parquet as pq
import pytest

from feature_store import contract as c
from feature_store.settings import project_root
from feature_store.simulate import simulate_cohort
from tests.servers import VENV_BIN, offline_env


def score(*args: str) -> subprocess.CompletedProcess:
    # a subprocess: `score` imports xgboost without scikit-learn, never to be done in this process
    return subprocess.run([str(VENV_BIN / "pverisk"), "score", *args], capture_output=True, text=True,
                          cwd=project_root(), env=offline_env(BENTOML_HOME=os.environ["BENTOML_HOME"],
                                                              COLUMNS="200"), timeout=300)


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(120, seed=99)  # patient_id, outcome, dates and post-PVE columns included


def test_scores_equal_the_services_predictions(tmp_path, server, imported, cohort):
    model, _ = imported
    data, out = tmp_path / "cohort.parquet", tmp_path / "scores.parquet"
    cohort.to_parquet(data, index=False)
    run = score("--data", str(data), "--out", str(out), "--model-tag", str(model.tag))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "patients/s" in run.stdout and "scored 120 of 120" in run.stdout
    table = pq.read_table(out)
    meta = json.loads(table.schema.metadata[b"pverisk"])
    assert "SIMULATED" in table.schema.metadata[b"notice"].decode() and meta["data_kind"] == "simulated"
    assert table.schema.metadata[b"model_version"].decode() == model.info.labels["version"]
    got = table.to_pydict()
    assert got[c.PATIENT_ID] == cohort[c.PATIENT_ID].tolist()
    fine = cohort[c.fine_feature_names()]
    served = []
    for start in range(0, len(fine), 50):  # this server's batch limit
        part = json.loads(fine.iloc[start:start + 50].to_json(orient="records"))
        r = httpx.post(f"{server.url}/v1/predict/batch", json={"patients": part}, timeout=60)
        assert r.status_code == 200, r.text
        served += r.json()["results"]
    assert got["probability"] == [r["probability"] for r in served]
    assert got["risk_band"] == [r["risk_band"] for r in served]
    assert got["top_factor_1"] == [r["top_factors"][0]["feature"] for r in served]
    assert got["fong_crs"] == [r["clinical_scores"]["fong_crs"] for r in served]
    assert got["missing_inputs"] == [r["missing_inputs"] for r in served]


def test_invalid_rows_are_listed_and_nothing_is_written(tmp_path, imported, cohort):
    model, _ = imported
    bad = cohort.copy()
    bad.loc[4, "age_years"] = 140.0
    bad["sex"] = bad["sex"].astype(object)
    bad.loc[9, "sex"] = "unknown-sex"
    data, out = tmp_path / "bad.parquet", tmp_path / "scores.parquet"
    bad.to_parquet(data, index=False)
    run = score("--data", str(data), "--out", str(out), "--model-tag", str(model.tag))
    assert run.returncode == 1
    assert not out.exists()
    text = run.stderr
    assert "age_years" in text and "18 to 100 years" in text and "sex" in text and "female, male" in text
    # 0-based positions, as the output's `row` column (and the HTTP answers' `index`) number them
    assert "│ 4 " in text and "│ 9 " in text and "0-based" in text
    run = score("--data", str(data), "--out", str(out), "--model-tag", str(model.tag), "--partial")
    assert run.returncode == 0, run.stderr
    got = pq.read_table(out).to_pydict()
    assert got["row"] == list(range(len(bad)))
    assert got["probability"][4] is None and "age_years" in got["errors"][4]
    assert got["probability"][0] is not None and got["errors"][0] is None


def test_files_it_cannot_read_or_with_no_patients(tmp_path, imported, cohort):
    """A CSV given by mistake: one line, no traceback. An export with no patients: an empty answer
    with its notice, not a crash. A post-decision column: named, not silently dropped."""
    model, _ = imported
    csv, out = tmp_path / "cohort.csv", tmp_path / "scores.parquet"
    cohort.to_csv(csv, index=False)
    run = score("--data", str(csv), "--out", str(out), "--model-tag", str(model.tag))
    assert run.returncode == 1 and "not a readable Parquet file" in run.stderr and "CSV" in run.stderr
    assert "Traceback" not in run.stderr and not out.exists()
    empty = tmp_path / "empty.parquet"
    cohort.iloc[:0].to_parquet(empty, index=False)
    run = score("--data", str(empty), "--out", str(out), "--model-tag", str(model.tag))
    assert run.returncode == 0, run.stderr
    table = pq.read_table(out)
    assert table.num_rows == 0 and "SIMULATED" in table.schema.metadata[b"notice"].decode()
    post = tmp_path / "post.parquet"
    cohort.assign(degree_hypertrophy_pp=12.0).iloc[:20].to_parquet(post, index=False)
    run = score("--data", str(post), "--out", str(out), "--model-tag", str(model.tag))
    assert run.returncode == 0, run.stderr
    assert "degree_hypertrophy_pp" in run.stderr and "after the PVE decision" in run.stderr
