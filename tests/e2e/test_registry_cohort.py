"""A registry-shaped export, end to end: import, train, register, import into BentoML, serve and
predict over real HTTP for a patient described by the registry's features alone."""

from __future__ import annotations

import subprocess
import sys

import httpx
import mlflow
import pandas as pd
import pytest
import yaml

from feature_store import contract as c
from feature_store.import_cohort import import_cohort
from tests.conftest import fast_settings, local_tracking
from tests.fixtures.registry import N_PATIENTS, write_registry
from feature_store.settings import project_root
from tests.servers import offline_env
from tests.service.conftest import bento_server
from training.pipeline import run_training

pytestmark = pytest.mark.slow

NOT_COLLECTED = {"primary_side", "ras_status", "braf_v600e", "sflr_percent", "planned_interval_weeks",
                 "embolic_agent", "bridging_chemo_planned", "bevacizumab_pre_pve", "bilirubin_mg_dl",
                 "albumin_g_dl", "inr", "platelets_10e9_l"}
# a patient as the registry records them: a 0/1 flag for tumour number, no sidedness, no RAS
REGISTRY_PATIENT = {"age_years": 64, "sex": "female", "node_positive_primary": True, "synchronous_metastases": False,
                    "disease_free_interval_months": 9, "multiple_liver_metastases": True,
                    "largest_metastasis_cm": 6.5, "bilobar_disease": True, "extrahepatic_disease": False,
                    "cea_ng_ml": 250.0, "chemo_cycles_pre_pve": 8, "chemo_response": "stable"}


@pytest.fixture(scope="module")
def registry_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    files = write_registry(root)
    cohort = root / "cohort.parquet"
    res = import_cohort(files["csv"], files["mapping"], cohort, drop_invalid=True)
    assert res.ok, res.reason
    tracking = local_tracking(root)
    result = run_training(cohort, settings=fast_settings(optimism_bootstrap=10), tracking=tracking)
    return res, result, tracking


def test_import_reads_sentinels_flags_and_the_study_design(registry_run, tmp_path):
    res, _, _ = registry_run
    assert res.rows_in == N_PATIENTS and res.dropped_rows == [8, 94]  # age 150, tumour 0 mm
    assert set(res.not_collected) == NOT_COLLECTED and res.unmapped == []
    assert res.study_design["outcome"] == "recurrence_after_resection" and res.study_design["pve_patients"] == 25
    df = pd.read_parquet(res.written)
    assert "n_liver_metastases" not in df and "primary_side" not in df and "ras_status" not in df
    assert df["multiple_liver_metastases"].notna().all()
    # "-999.0" in a re-saved CSV is missing, not "outside the allowed range"
    assert df["largest_metastasis_cm"].isna().sum() > 0 and df["cea_ng_ml"].isna().sum() > 0
    assert df["chemo_response"].isna().sum() > 0  # blank category cells are missing
    assert f"{c.RECORDED_SCORE_PREFIX}fong_crs" in df
    assert c.NON_RESECTION_REASON not in df  # never invented from the outcome
    # the Excel workbook (data sheet beside a data-dictionary sheet) imports to the same cohort
    files = write_registry(tmp_path)
    xres = import_cohort(files["xlsx"], files["mapping"], tmp_path / "x.parquet", drop_invalid=True)
    assert xres.ok and xres.dropped_rows == [8, 94]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "x.parquet"), df)


def test_training_uses_what_the_registry_recorded(registry_run):
    _, result, tracking = registry_run
    assert "multiple_liver_metastases" in result.features and "n_liver_metastases" not in result.features
    assert not NOT_COLLECTED & set(result.features)
    assert {"age_years", "multiple_liver_metastases", "largest_metastasis_cm"} == set(result.required)
    assert result.question_note and "recurrence after resection within 24 months" in result.question_note
    assert {"optimism_corrected_auroc", "optimism_corrected_calibration_slope"} <= set(result.optimism)
    assert not {"optimism_corrected_auroc"} & set(result.metrics)  # training-cohort figures kept apart
    card = result.card
    assert card["study_design"]["stated"]["population"] == "all_resected"
    assert card["outcome"]["definition"].startswith("intrahepatic recurrence")
    assert "RECIST" not in card["outcome"]["definition"]
    assert [p["name"] for p in card["predictors"]] == result.features
    assert {s["subgroup"] for s in card["evaluation"]["subgroups_skipped"]} == {"primary_side", "ras_status"}
    assert card["sample_size"]["events_per_parameter"] < 10
    # the recorded Fong score, and Fong computed from the registry's flags, are both rankers
    assert result.baselines["fong_crs (recorded)"]["n"] > 100
    assert result.baselines["fong_crs"]["n"] > 100
    assert result.baselines["m_crs"]["n"] == 0 and "not recorded" in result.baselines["m_crs"]["skipped"]
    mlflow.set_tracking_uri(tracking.tracking_uri)
    info = mlflow.models.get_model_info(f"models:/{result.registered_model}/{result.version}")
    assert info.signature.inputs.input_names() == c.model_columns(result.features)
    assert info.metadata["required"] == result.required
    run = mlflow.MlflowClient(tracking.tracking_uri).get_run(result.run_id)
    assert run.data.tags["study_outcome"] == "recurrence_after_resection"


def test_subset_model_serves_registry_patients_over_http(registry_run, tmp_path):
    _, result, tracking = registry_run
    # `pverisk import-model` into a BentoML home of its own: the session's store already holds a
    # v1 from another registry
    home = tmp_path / "bentoml_home"
    env = offline_env(BENTOML_HOME=str(home), PVERISK_TRACKING_URI=tracking.tracking_uri)
    done = subprocess.run([sys.executable, "-m", "pverisk", "import-model", "--alias", result.alias],
                          cwd=project_root(), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    tag = f"pve-progression-risk:v{result.version}"
    labels = yaml.safe_load((home / "models" / "pve-progression-risk" / f"v{result.version}" / "model.yaml").read_text())["labels"]
    assert labels["n_features"] == str(len(result.features)) and labels["study_question"] == "differs"
    with bento_server(tmp_path, tag, BENTOML_HOME=str(home)) as server:
        r = httpx.post(f"{server.url}/v1/predict", json=REGISTRY_PATIENT, timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        assert 0 <= body["probability"] <= 1 and body["unused_inputs"] == []
        assert "different question" in body["question_note"]
        assert body["predicted_outcome"].startswith("intrahepatic recurrence on imaging within 24 months")
        ra = httpx.post(f"{server.url}/v1/predict?format=fhir", json=REGISTRY_PATIENT, timeout=10).json()
        prediction = ra["fhir_risk_assessment"]["prediction"][0]
        assert prediction["outcome"]["text"] == body["predicted_outcome"] and "whenRange" not in prediction
        assert any("different question" in n["text"] for n in ra["fhir_risk_assessment"]["note"])
        assert body["clinical_scores"]["fong_crs"] == 5.0  # from the flags: N+, DFI<12, >1, >5 cm, CEA>200
        # recorded the fine way: the count derives the flag, same risk
        fine = {**{k: v for k, v in REGISTRY_PATIENT.items() if k != "multiple_liver_metastases"},
                "n_liver_metastases": 4}
        r2 = httpx.post(f"{server.url}/v1/predict", json=fine, timeout=10).json()
        assert r2["probability"] == body["probability"] and r2["unused_inputs"] == []
        # contract features the model does not use are accepted and listed
        r3 = httpx.post(f"{server.url}/v1/predict", json={**REGISTRY_PATIENT, "ras_status": "mutant"}, timeout=10)
        assert r3.status_code == 200 and r3.json()["unused_inputs"] == ["ras_status"]
        assert r3.json()["probability"] == body["probability"]
        # a flag that contradicts the count beside it
        bad = httpx.post(f"{server.url}/v1/predict", json={**fine, "multiple_liver_metastases": False}, timeout=10)
        assert bad.status_code == 400 and bad.json()["detail"][0]["field"] == "multiple_liver_metastases"
        # the model's required inputs: neither the flag nor the count
        none = {k: v for k, v in REGISTRY_PATIENT.items() if k != "multiple_liver_metastases"}
        miss = httpx.post(f"{server.url}/v1/predict", json=none, timeout=10)
        assert miss.status_code == 400 and "multiple_liver_metastases" in miss.text
        # unknown names are still rejected
        assert httpx.post(f"{server.url}/v1/predict", json={**REGISTRY_PATIENT, "kras": "x"}).status_code == 400
        # batch: registry and fine forms side by side
        batch = httpx.post(f"{server.url}/v1/predict/batch", json={"patients": [REGISTRY_PATIENT, fine]}).json()
        assert [x["probability"] for x in batch["results"]] == [body["probability"]] * 2
        assert batch["question_note"] == body["question_note"]
        # the schema asks for the model's inputs; RAS is accepted but marked unused
        spec = httpx.get(f"{server.url}/docs.json").json()
        request = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        record = request["properties"]
        # a required flag may come as its count: the schema says so instead of demanding the flag
        assert set(request["required"]) == set(result.required) - {"multiple_liver_metastases"}
        assert record["multiple_liver_metastases"]["x-required-or"] == ["n_liver_metastases"]
        assert set(request["example"]) == set(result.features)
        assert record["ras_status"]["x-role"] == "not used"
        assert record["n_liver_metastases"]["x-role"] == "used to derive multiple_liver_metastases"
        assert record["multiple_liver_metastases"]["x-role"] == "input"
        meta = httpx.get(f"{server.url}/v1/model").json()
        assert meta["features"] == result.features and meta["required"] == result.required
        assert meta["study_design"]["outcome"] == "recurrence_after_resection"
        # the CDS prefetch asks only for what this model uses: no KRAS, no primary-site codes
        prefetch = httpx.get(f"{server.url}/cds-services").json()["services"][0]["prefetch"]
        assert "21702-6" not in prefetch["observations"] and "C18" not in prefetch["conditions"]
        assert "2039-6" in prefetch["observations"]  # CEA is an input
