"""POST /v1/predict by patient id, over real HTTP against `bentoml serve` and a real (SQLite)
Feast online store; a Redis online store that is down gives 503 while explicit requests work."""

from __future__ import annotations

import httpx
import pytest

from feature_store import contract as c
from feature_store import feast_repo as fr
from tests.feast_fixtures import build_store, recent_cohort
from tests.servers import free_port
from tests.service.conftest import bento_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store_cohort(imported, tmp_path_factory):
    model, result = imported
    repo = tmp_path_factory.mktemp("feast")
    cohort = recent_cohort()
    version = fr.ModelVersion(result.registered_model, result.version, tuple(result.features))
    build_store(repo, [version], cohort)
    return repo, cohort, model


@pytest.fixture(scope="module")
def online_server(store_cohort, tmp_path_factory):
    repo, _, model = store_cohort
    with bento_server(tmp_path_factory.mktemp("serve-online"), str(model.tag), PVERISK_FEAST_REPO_DIR=str(repo),
                      PVERISK_SERVE_FEATURE_STORE_WARM="true") as s:
        yield s


def post(server, payload):
    return httpx.post(f"{server.url}/v1/predict", json=payload, timeout=60)


def _explicit(cohort, i, features):
    row = cohort.iloc[i]
    return {f: (row[f].item() if hasattr(row[f], "item") else row[f]) for f in c.input_names(list(features))
            if f in cohort and not pd_isna(row[f])}


def pd_isna(v):
    return v is None or v != v or str(v) == "<NA>"


def test_by_patient_id_equals_explicit_features(online_server, store_cohort, imported):
    _, cohort, _ = store_cohort
    _, result = imported
    pid = cohort[c.PATIENT_ID].iloc[3]
    r = post(online_server, {"patient_id": pid})
    assert r.status_code == 200, r.text
    body = r.json()
    store = body["feature_store"]
    assert store["feature_service"] == fr.service_name(result.registered_model, result.version)
    assert store["from_request"] == [] and store["stale_not_used"] == {}
    explicit = _explicit(cohort, 3, result.features)
    assert {k: v["value"] for k, v in store["from_store"].items()} == pytest.approx(explicit)
    lab_age = store["from_store"]["albumin_g_dl"]["age_days"] if "albumin_g_dl" in store["from_store"] else None
    assert lab_age is None or 0 < lab_age <= 22  # the simulated labs: 1-21 days before today's decision
    same = post(online_server, explicit)
    assert same.status_code == 200 and same.json()["probability"] == body["probability"]
    assert "feature_store" not in same.json()


def test_request_values_override_stored_ones(online_server, store_cohort):
    _, cohort, _ = store_cohort
    pid = cohort[c.PATIENT_ID].iloc[4]
    r = post(online_server, {"patient_id": pid, "n_liver_metastases": 17})
    assert r.status_code == 200, r.text
    store = r.json()["feature_store"]
    assert "n_liver_metastases" not in store["from_store"]
    assert store["overridden_by_request"] == ["n_liver_metastases"] and store["from_request"] == ["n_liver_metastases"]
    factors = {f["feature"]: f["value"] for f in r.json()["top_factors"]}
    assert factors.get("n_liver_metastases", 17) == 17
    # an override is validated as an explicit value: out of range is a 400 naming the field
    bad = post(online_server, {"patient_id": pid, "n_liver_metastases": 1000})
    assert bad.status_code == 400 and "n_liver_metastases" in bad.text and "1 to 100" in bad.text


def test_stale_labs_are_not_used(online_server, store_cohort):
    _, cohort, _ = store_cohort
    r = post(online_server, {"patient_id": cohort[c.PATIENT_ID].iloc[0]})  # labs older than the TTL
    assert r.status_code == 200, r.text
    store = r.json()["feature_store"]
    stale = store["stale_not_used"]
    assert stale and all(c.BY_NAME[f].source_group.name == "laboratory" for f in stale)
    assert all(v["age_days"] > v["ttl_days"] == 30 for v in stale.values())
    assert not set(stale) & set(store["from_store"])
    assert set(stale) <= set(r.json()["missing_inputs"])


def test_unknown_patient_is_404_and_ids_stay_out_of_logs(online_server, store_cohort):
    _, cohort, _ = store_cohort
    r = post(online_server, {"patient_id": "NOT-A-PATIENT-8812"})
    assert r.status_code == 404 and "unknown patient" in r.json()["error"]
    assert "probability" not in r.json()
    assert post(online_server, {"patient_id": ""}).status_code == 400
    log = online_server.flushed_log()
    assert "NOT-A-PATIENT-8812" not in log and cohort[c.PATIENT_ID].iloc[3] not in log


def test_store_down_is_503_while_explicit_requests_work(imported, tmp_path_factory, store_cohort):
    repo, _, model = store_cohort
    dead = free_port()  # nothing listens there: a Redis online store that is down
    with bento_server(tmp_path_factory.mktemp("serve-down"), str(model.tag), PVERISK_FEAST_REPO_DIR=str(repo),
                      PVERISK_FEAST_ONLINE_STORE="redis", PVERISK_FEAST_REDIS=f"127.0.0.1:{dead}") as s:
        r = post(s, {"patient_id": "SIM-5-0000001"})
        assert r.status_code == 503, r.text
        assert "unavailable" in r.json()["error"] and "Connection" in r.json()["reason"]
        ok = post(s, c.example_record())
        assert ok.status_code == 200 and 0 <= ok.json()["probability"] <= 1


def _without(body, *codes):
    obs = body["prefetch"]["observations"]
    obs["entry"] = [e for e in obs["entry"] if not any(
        cd["code"] in codes for cd in e["resource"].get("code", {}).get("coding", []))]
    obs["total"] = len(obs["entry"])
    return body


def test_cds_card_takes_a_lacking_input_from_the_store_and_says_so(online_server, store_cohort):
    from tests.fixtures.fhir import hook_request

    _, cohort, _ = store_cohort
    i = next(i for i in range(1, len(cohort)) if not pd_isna(cohort["cea_ng_ml"].iloc[i]))
    pid = cohort[c.PATIENT_ID].iloc[i]
    url = f"{online_server.url}/cds-services/pve-progression-risk"
    # the chart has no CEA (LOINC 2039-6); the store has a fresh one for this patient
    card = httpx.post(url, json=_without(hook_request(pid, False), "2039-6"), timeout=60).json()["cards"][0]
    line = _store_line(card)
    assert "CEA " in line and "ng/mL (recorded" in line and "days ago" in line
    detail = card["detail"]
    not_known = detail.split("**Not known**", 1)[1].split("**Clinical scores**")[0] if "**Not known**" in detail else ""
    assert "CEA" not in not_known  # taken from the store: known
    with_chart = httpx.post(url, json=hook_request(pid, False), timeout=60).json()["cards"][0]
    assert "CEA" not in _store_line(with_chart)  # the chart's own value first
    unknown = httpx.post(url, json=_without(hook_request("CHART-ONLY-1", False), "2039-6"), timeout=60)
    assert unknown.status_code == 200 and "From the feature store" not in unknown.json()["cards"][0]["detail"]


def _store_line(card):
    return next((ln for ln in card["detail"].splitlines() if ln.startswith("**From the feature store**")), "")
