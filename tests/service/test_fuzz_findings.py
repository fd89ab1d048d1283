"""What the schema fuzzer found (benchmarks.fuzz / tests/service/test_fuzz.py), each with the exact
request that showed it, against the real service. Before the fixes every one of these failed."""

import json

import httpx
import pytest

from feature_store import contract as c

pytestmark = pytest.mark.slow
PATIENT = {"age_years": 62, "n_liver_metastases": 5, "largest_metastasis_cm": 3.8}


def raw(server, path, body: bytes | str, content_type="application/json"):
    return httpx.post(f"{server.url}{path}", content=body, headers={"content-type": content_type}, timeout=30)


def fields(r) -> set[str]:
    """The fields a 400 names, in either error shape (pydantic loc, or field/problem)."""
    body = r.json()
    named = {str(d["loc"][0]) for d in body.get("detail", []) if isinstance(d, dict) and d.get("loc")}
    named |= {e["field"] for row in body.get("invalid", []) for e in row["errors"]}
    return named


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/predict/batch", "/v1/predict/fhir"])
def test_multipart_without_boundary_is_415_not_500(server, path):
    # schemathesis ST102: BentoML tried to parse a form and answered 500
    r = raw(server, path, json.dumps(PATIENT), "multipart/form-data")
    assert r.status_code == 415 and "JSON" in r.json()["error"]
    assert raw(server, path, "a=1", "application/x-www-form-urlencoded").status_code == 415


@pytest.mark.parametrize("field,value", [("n_liver_metastases", True), ("largest_metastasis_cm", True),
                                         ("age_years", "62"), ("bilobar_disease", 1), ("bilobar_disease", "no"),
                                         ("sex", 1)])
def test_json_types_are_not_coerced(server, field, value):
    # `"n_liver_metastases": true` was scored as one metastasis (pydantic's lax mode), "62" as 62
    r = httpx.post(f"{server.url}/v1/predict", json={**PATIENT, field: value})
    assert r.status_code == 400 and fields(r) == {field}, r.text
    r = httpx.post(f"{server.url}/v1/predict/batch", json={"patients": [{**PATIENT, field: value}]})
    assert r.status_code == 400 and fields(r) == {field}, r.text


@pytest.mark.parametrize("field", ["age_years", "n_liver_metastases", "largest_metastasis_cm"])
def test_required_input_sent_as_null_is_refused(server, field):
    # schemathesis coverage phase: `"largest_metastasis_cm": null` got a 200, scored without it
    r = httpx.post(f"{server.url}/v1/predict", json={**PATIENT, field: None})
    assert r.status_code == 400 and fields(r) == {field}, r.text
    assert "required" in r.text


def test_batch_partial_flag_is_a_boolean(server):
    # `{"partial": 0, ...}` was accepted as false
    r = httpx.post(f"{server.url}/v1/predict/batch", json={"partial": 0, "patients": [PATIENT]})
    assert r.status_code == 400 and "partial" in r.text


def test_batch_nan_is_refused_not_taken_as_missing(server):
    # NaN (not JSON) reached the frame as a missing value: the patient was scored without it
    r = raw(server, "/v1/predict/batch", '{"patients": [{"age_years": 62, "n_liver_metastases": 5, '
                                         '"largest_metastasis_cm": 3.8, "cea_ng_ml": NaN}]}')
    assert r.status_code == 400 and "NaN" in r.json()["error"]
    # the same letters inside a string are no reason to refuse: an unknown category is named instead
    r = httpx.post(f"{server.url}/v1/predict/batch", json={"patients": [{**PATIENT, "sex": "NaN"}]})
    assert r.status_code == 400 and fields(r) == {"sex"}


def test_single_patient_nan_names_the_field(server):
    r = raw(server, "/v1/predict", '{"age_years": 62, "n_liver_metastases": 5, "largest_metastasis_cm": Infinity}')
    assert r.status_code == 400 and fields(r) == {"largest_metastasis_cm"} and "finite" in r.text


def test_duplicate_key_in_one_patient_is_refused(server):
    # the parser kept the last of two ages silently
    r = raw(server, "/v1/predict", '{"age_years": 62, "age_years": 95, "n_liver_metastases": 5, '
                                   '"largest_metastasis_cm": 3.8}')
    assert r.status_code == 400 and "age_years given twice" in r.json()["error"]
    r = raw(server, "/v1/predict", '{"age_years": 62, "n_liver_metastases": 5, "largest_metastasis_cm": 3.8, '
                                   '"patient-secret-x": 1, "patient-secret-x": 2}')
    assert r.status_code == 400 and "patient-secret-x" not in r.text  # an unknown key could be data


def test_empty_body_is_400(server):
    r = raw(server, "/v1/predict", b"")
    assert r.status_code == 400 and {"age_years", "n_liver_metastases"} <= fields(r)


def test_prefill_errors_in_our_shape_without_echo(server):
    # FastAPI answered {"detail": "There was an error parsing the body"} (400) and a 422 echoing the input
    r = raw(server, "/v1/prefill", b"v\xff\x07")
    assert r.status_code == 400 and "error" in r.json()
    r = httpx.post(f"{server.url}/v1/prefill", json={"token": "tok-secret-" + "x" * 80})
    assert r.status_code == 400 and "tok-secret" not in r.text and r.json()["detail"][0]["loc"] == ["token"]


def test_cds_request_types_are_not_coerced(server):
    # `fhirAuthorization.expires_in` as text passed, then a 412 answered what should be a 400
    body = {"hook": "patient-view", "hookInstance": "d1577c69", "context": {"patientId": "example"},
            "fhirServer": "http://127.0.0.1:9/fhir",
            "fhirAuthorization": {"access_token": "t", "token_type": "Bearer", "expires_in": "3600"}}
    r = httpx.post(f"{server.url}/cds-services/pve-progression-risk", json=body)
    assert r.status_code == 400 and "fhirAuthorization.expires_in" in r.text


def test_openapi_document_says_what_the_service_does(server):
    spec = httpx.get(f"{server.url}/docs.json").json()
    predict = spec["paths"]["/v1/predict"]["post"]
    props = predict["requestBody"]["content"]["application/json"]["schema"]["properties"]
    # BentoML's inline copy said optional fields could not be null; the service takes null as missing
    assert props["sex"]["nullable"] is True and None in props["sex"]["enum"]
    assert "nullable" not in props["age_years"]
    assert not any("anyOf" in p and {"type": "null"} in p["anyOf"] for p in props.values())  # 3.0, not 3.1
    bundle = spec["components"]["schemas"]["FhirBundle"]["properties"]["resourceType"]
    assert bundle["enum"] == ["Bundle"] and "const" not in bundle  # `const` is not OpenAPI 3.0
    # errors: `detail` is a list (BentoML documented a string), every refusal status listed
    assert spec["components"]["schemas"]["InvalidArgument"]["properties"]["detail"]["anyOf"][1]["type"] == "array"
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method == "post":
                assert op["requestBody"]["required"] is True, path
                assert {"400", "413", "415"} <= set(op["responses"]), path
    hook = spec["paths"]["/cds-services/pve-progression-risk"]["post"]
    assert {"400", "401", "412", "503"} <= set(hook["responses"])
    assert hook["requestBody"]["content"]["application/json"]["schema"]["required"] == ["hook", "hookInstance",
                                                                                         "context"]
    assert "securitySchemes" not in spec.get("components", {})  # no key configured on this server
    assert set(c.feature_names()) == set(props)


def test_batch_categories_are_exact_strings_as_in_single_predictions(server):
    # the batch path stripped "male " to "male" (a cohort-file courtesy) where /v1/predict refuses it
    assert httpx.post(f"{server.url}/v1/predict", json={**PATIENT, "sex": "male "}).status_code == 400
    r = httpx.post(f"{server.url}/v1/predict/batch", json={"patients": [{**PATIENT, "sex": "male "}]})
    assert r.status_code == 400 and fields(r) == {"sex"}


@pytest.mark.parametrize("fhir_server", ["\u00bd\b\u00dcx\U00064085", "http://[::1"])
def test_cds_fhir_server_that_is_not_a_url_is_a_4xx_not_500(server, fhir_server):
    # benchmarks.bench_fuzz (1,000 cases): httpx.InvalidURL is no httpx.HTTPError and escaped as a 500
    body = {"hook": "patient-view", "hookInstance": "{", "context": {"patientId": "p"}, "prefetch": None,
            "fhirServer": fhir_server, "fhirAuthorization": {"access_token": "t", "token_type": "Bearer"}}
    r = httpx.post(f"{server.url}/cds-services/pve-progression-risk", json=body, timeout=30)
    assert r.status_code == 412 and "URL" in r.json()["error"], r.text


@pytest.mark.parametrize("change, status, fragment", [
    # `make bench` fuzzing (8,850 cases): lone surrogates in the id went into the FHIR query URL as a 500
    ({"context": {"patientId": "\u00a9p1\ud81b\udc50"}}, 400, "patientId"),
    ({"fhirAuthorization": {"access_token": "t\u00e9\ud950\udc85", "token_type": "Bearer"}}, 400, "access_token"),
    ({"fhirServer": "http://127.0.0.1:9/\ud950\udc85"}, 412, "FHIR server"),  # an IRI: unreachable
])
def test_cds_ids_tokens_and_urls_http_cannot_carry_are_4xx_not_500(server, change, status, fragment):
    body = {"hook": "patient-view", "hookInstance": "{", "context": {"patientId": "p"}, "prefetch": None,
            "fhirServer": "http://127.0.0.1:9/fhir", "fhirAuthorization": {"access_token": "t", "token_type": "Bearer"},
            **change}
    r = raw(server, "/cds-services/pve-progression-risk", json.dumps(body))  # \u escapes: lone surrogates are JSON
    assert r.status_code == status and fragment in r.text, r.text


def test_outcomes_are_strict_json_and_bounded(server):
    # schemathesis ST201 after the merge: `"outcome": 0` was recorded as false, and 10,001 outcomes
    # reached the handler (BentoML's copy of the request model lost the list's maxItems)
    r = httpx.post(f"{server.url}/v1/outcomes", json={"outcomes": [{"prediction_id": "0", "outcome": 0}]})
    assert r.status_code == 400, r.text
    r = httpx.post(f"{server.url}/v1/outcomes", json={"outcomes": [{"prediction_id": "a", "outcome": "yes"}]})
    assert r.status_code == 400, r.text
    many = [{"prediction_id": f"x{i}", "outcome": False} for i in range(10_001)]
    r = httpx.post(f"{server.url}/v1/outcomes", json={"outcomes": many}, timeout=60)
    assert r.status_code in (400, 413), r.text  # 413 where the body limit is lower than 10,001 outcomes


@pytest.mark.parametrize("column,values", [("partial", None), ("age_years", ["60", 61]),
                                           ("bilobar_disease", [1, 0]), ("n_liver_metastases", [True, 3])])
def test_columnar_json_is_not_coerced(server, column, values):
    # schemathesis ST201 (`"partial": 0` read as false) and the new-user trial ("60" scored as an age,
    # 1/0 as booleans in columns while /v1/predict and the batch refuse them)
    cols = {k: [v, v] for k, v in {**PATIENT, "sex": "female"}.items()}
    body: dict = {"columns": cols, "partial": 0} if column == "partial" else {"columns": {**cols, column: values}}
    r = httpx.post(f"{server.url}/v1/predict/columns", json=body, timeout=30)
    assert r.status_code == 400, r.text
    if column != "partial":
        assert column in r.text
