"""The prediction service over real HTTP (`bentoml serve` on 127.0.0.1)."""

import json

import httpx
import pytest

from feature_store import contract as c
from feature_store.scores import scores_for_record

pytestmark = pytest.mark.slow

PATIENT = c.example_record()


def post(server, path, payload, **kw):
    return httpx.post(f"{server.url}{path}", json=payload, timeout=30, **kw)


def test_valid_patient(server, imported):
    model, result = imported
    r = post(server, "/v1/predict", PATIENT)
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0 <= body["probability"] <= 1
    t = body["band_thresholds"]
    expected_band = ("low" if body["probability"] < t["low_below"] else
                     "high" if body["probability"] >= t["high_from"] else "intermediate")
    assert body["risk_band"] == expected_band
    scores = {k: (None if v is None else round(v, 3)) for k, v in scores_for_record(PATIENT).items()}
    assert {k: body["clinical_scores"][k] for k in scores} == scores
    assert body["clinical_scores"]["game_group"] == "medium"
    assert body["model"]["version"] == result.version and body["model"]["alias"] == "champion"
    assert body["model"]["bento_tag"] == str(model.tag)
    assert body["data_kind"] == "simulated" and "SIMULATED" in body["notice"] and "Research use" in body["notice"]
    assert 1 <= len(body["top_factors"]) <= 5
    for f in body["top_factors"]:
        assert f["feature"] in c.feature_names()
        assert f["direction"] == ("raises risk" if f["contribution_log_odds"] > 0 else "lowers risk")
    assert body["missing_inputs"] == ["braf_v600e"]  # "unknown" counts as missing


def test_minimal_patient_lists_missing_inputs(server):
    r = post(server, "/v1/predict", {"age_years": 60, "n_liver_metastases": 2, "largest_metastasis_cm": 3.0})
    assert r.status_code == 200, r.text
    missing = r.json()["missing_inputs"]
    assert "cea_ng_ml" in missing and "age_years" not in missing
    assert r.json()["clinical_scores"]["fong_crs"] is None  # not guessed
    assert r.json()["clinical_scores"]["tumour_burden_score"] == pytest.approx(3.606, abs=1e-3)


@pytest.mark.parametrize("change,field,fragment", [
    ({"age_years": 150.123}, "age_years", "outside the allowed range 18 to 100 years"),
    ({"largest_metastasis_cm": 0}, "largest_metastasis_cm", "0.2 to 30 cm"),
    ({"n_liver_metastases": 2.5}, "n_liver_metastases", "not a whole number; allowed 1 to 100 count"),
    ({"cea_ng_ml": "lots"}, "cea_ng_ml", "not a number; allowed 0 to 100000 ng/mL"),
    ({"sex": "unknown-x"}, "sex", "allowed one of female, male"),
    ({"bridging_chemo_planned": "perhaps"}, "bridging_chemo_planned", "allowed true or false"),
    ({"tumour_colour": "red"}, "tumour_colour", "unknown field: not an input of the feature contract"),
    ({"degree_hypertrophy_pp": 8.0}, "degree_hypertrophy_pp", "known only after PVE"),  # post-PVE
])
def test_invalid_field_is_a_400_naming_field_problem_and_range(server, change, field, fragment):
    r = post(server, "/v1/predict", {**PATIENT, **change})
    assert r.status_code == 400, r.text
    errors = r.json()["detail"]
    assert len(errors) == 1 and errors[0]["loc"] == [field] and fragment in errors[0]["msg"]
    assert "150.123" not in r.text and "lots" not in r.text and "perhaps" not in r.text


def test_missing_required_field(server):
    payload = {k: v for k, v in PATIENT.items() if k != "n_liver_metastases"}
    r = post(server, "/v1/predict", payload)
    assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["n_liver_metastases"]
    # in the service's words, not pydantic's ("1 validation error for Input", with documentation links)
    assert r.json()["error"].startswith("invalid request: 1 problem (n_liver_metastases)")
    assert "validation error for" not in r.text and "errors.pydantic.dev" not in r.text
    assert r.json()["detail"][0]["msg"] == "required value missing; allowed 1 to 100 count"
    after = post(server, "/v1/predict", {**PATIENT, "degree_hypertrophy_pp": 5.0})  # known only after PVE
    assert after.status_code == 400 and after.json()["detail"][0]["msg"].startswith("known only after PVE")


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b"null"])
def test_malformed_bodies_are_4xx_never_500(server, body):
    r = httpx.post(f"{server.url}/v1/predict", content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (body, r.status_code, r.text)


def test_body_size_limit(server):
    r = httpx.post(f"{server.url}/v1/predict", content=b"{" + b" " * 300_000 + b"}",
                   headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_batch_with_a_bad_row(server):
    bad = {**PATIENT, "age_years": 7, "shoe_size": 42}
    patients = [PATIENT, bad, {**PATIENT, "n_liver_metastases": 12}]
    r = post(server, "/v1/predict/batch", {"patients": patients})
    assert r.status_code == 400
    invalid = r.json()["invalid"]
    assert [x["index"] for x in invalid] == [1]
    assert {e["field"] for e in invalid[0]["errors"]} == {"age_years", "shoe_size"}
    r = post(server, "/v1/predict/batch", {"patients": patients, "partial": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["n_scored"] == 2 and body["n_invalid"] == 1 and body["data_kind"] == "simulated"
    assert "errors" in body["results"][1] and "probability" not in body["results"][1]
    single = post(server, "/v1/predict", patients[2]).json()
    assert body["results"][2]["probability"] == single["probability"]
    assert body["results"][2]["top_factors"] == single["top_factors"]


def test_batch_size_limit(server):
    r = post(server, "/v1/predict/batch", {"patients": [PATIENT] * 51})
    assert r.status_code == 413 and "at most 50" in r.json()["error"]


def test_more_metastases_never_lowers_risk_over_http(server):
    patients = [{**PATIENT, "n_liver_metastases": n} for n in range(1, 41)]
    r = post(server, "/v1/predict/batch", {"patients": patients})
    probs = [x["probability"] for x in r.json()["results"]]
    assert all(b >= a for a, b in zip(probs, probs[1:])), probs


def test_model_metadata(server, imported):
    _, result = imported
    for r in (httpx.get(f"{server.url}/v1/model"),):
        assert r.status_code == 200, r.text
        m = r.json()
        assert m["model"]["version"] == result.version and m["data_kind"] == "simulated"
        assert m["feature_contract_version"] == c.CONTRACT_VERSION
        assert m["model_card"]["data"]["simulated"] is True
        assert m["imported_at"] and m["metrics"]["auroc"] == pytest.approx(result.metrics["auroc"])


def test_metrics_carry_the_model_version(server, imported):
    _, result = imported
    post(server, "/v1/predict", PATIENT)
    text = httpx.get(f"{server.url}/metrics").text
    line = next(l for l in text.splitlines() if l.startswith("pverisk_predictions_total{") and 'endpoint="predict"' in l)
    assert f'model_version="{result.version}"' in line


def test_openapi_documents_every_endpoint_with_a_working_example(server):
    r = httpx.get(f"{server.url}/docs.json")
    assert r.status_code == 200
    spec = r.json()
    ours = [p for p in spec["paths"] if p.startswith("/v1/")]
    assert set(ours) == {"/v1/predict", "/v1/predict/batch", "/v1/predict/columns", "/v1/predict/fhir", "/v1/model",
                         "/v1/prefill", "/v1/outcomes", "/v1/monitoring"}
    assert httpx.get(f"{server.url}/v1/model").status_code == 200  # GET, documented, no body
    for path in ("/v1/predict", "/v1/predict/batch", "/v1/predict/fhir"):
        schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        example = schema.get("example")
        assert example is not None, path
        got = post(server, path, example)
        assert got.status_code == 200, (path, got.text)
    props = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert set(props) == set(c.feature_names())
    assert props["largest_metastasis_cm"]["x-unit"] == "cm" and props["largest_metastasis_cm"]["maximum"] == 30


def test_no_request_values_in_logs(server):
    post(server, "/v1/predict", {**PATIENT, "cea_ng_ml": 4321.987})
    post(server, "/v1/predict", {**PATIENT, "cea_ng_ml": 123456.789})  # invalid: logged as an error
    post(server, "/v1/predict/batch", {"patients": [{**PATIENT, "age_years": 777.25}]})  # invalid batch row
    log = server.flushed_log()  # positive control: the capture sees what the service logs
    assert "/v1/predict" in log  # the requests themselves were logged (access log) ...
    assert "4321.987" not in log and "123456.789" not in log and "777.25" not in log  # ... their values not


def test_rejected_patients_are_counted(server, imported):
    _, result = imported

    def rejected() -> float:
        for line in httpx.get(f"{server.url}/metrics").text.splitlines():
            if line.startswith("pverisk_rejected_patients_total{") and 'endpoint="batch"' in line:
                assert f'model_version="{result.version}"' in line
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = rejected()
    bad = [{**PATIENT, "age_years": 7}, PATIENT, {**PATIENT, "shoe_size": 42}, {**PATIENT, "sex": "x"}]
    assert post(server, "/v1/predict/batch", {"patients": bad}).status_code == 400
    assert rejected() == before + 3
    assert post(server, "/v1/predict/batch", {"patients": bad, "partial": True}).status_code == 200
    assert rejected() == before + 6
    assert post(server, "/v1/predict/batch", {"patients": [PATIENT]}).status_code == 200
    assert rejected() == before + 6


def test_our_pages_replace_the_default_index(server):
    r = httpx.get(f"{server.url}/docs")
    assert r.status_code == 200 and "swagger-ui" in r.text and "Research use only" in r.text
    assert 'url: "/docs.json"' in r.text  # our page, reading our spec
    for page in ("/", "/model", "/docs"):
        r = httpx.get(f"{server.url}{page}")
        assert r.status_code == 200 and "Research use only" in r.text, page
        assert "googletagmanager" not in r.text and "https://" not in r.text, page
        assert "default-src 'self'" in r.headers["content-security-policy"], page
    assert 'id="calc"' in httpx.get(f"{server.url}/").text  # the calculator, not the API docs
    assert httpx.get(f"{server.url}/static/calculator.js").status_code == 200
    assert httpx.get(f"{server.url}/static/../web.py").status_code == 404
    assert httpx.get(f"{server.url}/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert httpx.get(f"{server.url}/docs-assets/../../etc/passwd").status_code == 404


def test_a_flag_contradicting_its_count_is_a_400_even_where_the_model_reads_the_count(server):
    """This model reads n_liver_metastases; a `multiple_liver_metastases` flag sent beside a count of 1
    is still a contradiction in the data, on every route."""
    bad = {**PATIENT, "n_liver_metastases": 1, "multiple_liver_metastases": True}
    r = post(server, "/v1/predict", bad)
    assert r.status_code == 400 and "multiple_liver_metastases" in r.text and "contradicts" in r.text, r.text
    r = post(server, "/v1/predict/batch", {"patients": [PATIENT, bad]})
    assert r.status_code == 400, r.text
    assert [x["index"] for x in r.json()["invalid"]] == [1]
    assert r.json()["invalid"][0]["errors"][0]["field"] == "multiple_liver_metastases"
    cols = {k: [PATIENT.get(k), bad.get(k)] for k in bad}
    r = post(server, "/v1/predict/columns", {"columns": cols})
    assert r.status_code == 400 and [x["index"] for x in r.json()["invalid"]] == [1], r.text
    agreeing = {**PATIENT, "n_liver_metastases": 3, "multiple_liver_metastases": True}
    assert post(server, "/v1/predict", agreeing).status_code == 200


def test_batch_prediction_ids_end_in_the_request_index(server):
    patients = [PATIENT, {**PATIENT, "age_years": 150}, PATIENT]
    r = post(server, "/v1/predict/batch", {"patients": patients, "partial": True, "output": "probabilities"})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert "errors" in results[1]
    assert results[2]["prediction_id"].endswith("-2") and results[0]["prediction_id"].endswith("-0")


def test_compressed_bodies_are_refused_with_415(server):
    import gzip

    body = gzip.compress(json.dumps(PATIENT).encode())
    r = httpx.post(f"{server.url}/v1/predict", content=body, timeout=30,
                   headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 415 and "gzip" in r.text and "uncompressed" in r.text
