"""Whole patient charts (tests/fixtures/charts.py) through CDS Hooks and POST /v1/predict/fhir,
over real HTTP: identity, applicability, data problems, units, sizes, logs, and the shapes
that once gave 500s."""

from __future__ import annotations

import copy
import json
import re
import socket
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from ehr.cds_models import CardsResponse
from tests.fixtures.charts import hook_request, prefetch_filtered, whole_chart
from tests.service.fhir_server import TOKEN, FhirServer

pytestmark = pytest.mark.slow
CDS = "/cds-services/pve-progression-risk"
FHIR = "/v1/predict/fhir"


@pytest.fixture(scope="module")
def chart():
    return whole_chart(1)


def cds(server, body, **kw):
    return httpx.post(f"{server.url}{CDS}", json=body, timeout=60, **kw)


def fhir(server, bundle, **kw):
    return httpx.post(f"{server.url}{FHIR}", json=bundle, timeout=60, **kw)


def _card(r):
    assert r.status_code == 200, r.text
    cards = CardsResponse.model_validate(r.json()).cards
    assert len(cards) == 1
    return cards[0]


def test_whole_chart_card_is_short_rounded_and_counts_problems(server, chart):
    card = _card(cds(server, hook_request(chart)))
    print("\n--- card for a generated whole chart ---\n" + card.summary + "\n\n" + card.detail)
    assert card.indicator == "warning"
    d = card.detail
    assert "Data problems:" in d and "4 about another patient" in d and "too old" not in d  # superseded labs are no problem
    assert "None" not in d and not re.search(r"\d\.\d{4,}", d)  # rounded, absent scores left out
    assert "Observation/" not in d and chart.patient_id not in d  # no id lists in the card
    assert len(d) < 2500


def test_whole_chart_and_filtered_prefetch_and_fhir_bundle_agree(server, chart):
    whole = _card(cds(server, hook_request(chart)))
    filtered = _card(cds(server, hook_request(chart, prefetch_filtered(chart))))
    r = fhir(server, chart.bundle)
    assert r.status_code == 200, r.text
    body = r.json()
    pct = f"{100 * body['probability']:.0f}%"
    assert pct in whole.summary and pct in filtered.summary
    inputs = body["inputs"]
    for k, v in chart.expected.items():
        assert inputs[k] == (pytest.approx(v) if isinstance(v, float) else v), k
    assert body["problem_counts"]["other_patient"] == chart.other_patient_resources
    assert body["fhir_risk_assessment"]["subject"]["reference"] == f"Patient/{chart.patient_id}"
    # the full list stays in the API response
    assert any(p["kind"] == "stale" and p["resource"].startswith("Observation/") for p in body["problems"])


@pytest.mark.parametrize("btype", ["transaction", "batch", "collection", "searchset"])
def test_fhir_accepts_every_bundle_type_ehrs_send(server, chart, btype):
    assert fhir(server, {**chart.bundle, "type": btype}).status_code == 200


def test_fhir_refuses_other_bundle_types_with_a_one_line_log(server, chart):
    r = fhir(server, {**chart.bundle, "type": "document"})
    assert r.status_code == 400 and "type" in json.dumps(r.json())
    log = server.log_text()
    assert "fhir rejected status=400 problems=bundle" in log
    assert "Traceback" not in log.split("fhir rejected status=400", 1)[1][:2000]


def test_identity_context_patient_differs_from_prefetch_patient_is_412(server, chart):
    r = cds(server, hook_request(chart, patient_id="somebody-else"))
    assert r.status_code == 412 and "not the patient in context.patientId" in r.json()["error"]


def test_two_patients_in_one_bundle_are_refused(server, chart):
    bundle = copy.deepcopy(chart.bundle)
    twin = copy.deepcopy(chart.patient)
    twin["id"] = "second-patient"
    bundle["entry"].append({"fullUrl": "urn:uuid:second-patient", "resource": twin})
    r = fhir(server, bundle)
    assert r.status_code == 422 and "2 different Patient resources" in r.json()["error"]
    assert r.json()["operation_outcome"]["resourceType"] == "OperationOutcome"


def test_another_patients_observations_beside_this_patient_give_no_risk(server, chart):
    """This patient's Patient and Conditions, someone else's Observations: nothing of theirs is used."""
    mine = [e for e in chart.bundle["entry"] if e["resource"]["resourceType"] in ("Patient", "Condition")]
    theirs = [copy.deepcopy(e) for e in chart.bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    for e in theirs:
        e["resource"]["subject"] = {"reference": "Patient/someone-else"}
    r = fhir(server, {"resourceType": "Bundle", "type": "collection", "entry": mine + theirs})
    assert r.status_code == 422 and "n_liver_metastases" in r.json()["missing_required"]
    assert r.json()["problem_counts"]["other_patient"] > 100


@pytest.mark.parametrize("variant", ["no_liver_metastasis", "deceased_boolean", "deceased_datetime"])
def test_not_applicable_charts_get_no_card_and_one_log_line(server, variant):
    ch = {"no_liver_metastasis": lambda: whole_chart(2, liver_metastasis=False, years=1),
          "deceased_boolean": lambda: whole_chart(3, deceased="boolean", years=1),
          "deceased_datetime": lambda: whole_chart(4, deceased="datetime", years=1)}[variant]()
    r = cds(server, hook_request(ch))
    assert r.status_code == 200 and r.json() == {"cards": []}
    check = "no_liver_metastasis" if variant == "no_liver_metastasis" else "deceased"
    assert f"cds declined check={check}" in server.log_text()
    assert ch.patient_id not in server.log_text()
    f = fhir(server, ch.bundle)
    assert f.status_code == 422 and f.json()["not_applicable"] == check


def test_deceased_patient_scored_retrospectively_with_age_at_the_decision_date(server):
    ch = whole_chart(5, deceased="datetime", years=3)
    day = (datetime.now(timezone.utc) - timedelta(days=60)).date().isoformat()  # before the death
    r = fhir(server, ch.bundle, params={"decision_date": day})
    assert r.status_code == 422  # the tumour-board inputs are dated after that day: not enough data
    assert r.json()["missing_required"] == ["n_liver_metastases", "largest_metastasis_cm"]
    assert "needed (PVERISK_SERVE_CDS_MIN_INPUT_SHARE)" in r.json()["error"] and r.json()["min_share_of_inputs"] == 0.5
    assert r.json()["error"].endswith("n_liver_metastases, largest_metastasis_cm missing")
    assert r.json()["inputs"]["age_years"] == 63  # completed years at the decision (63.2), not today's
    bad = fhir(server, ch.bundle, params={"decision_date": "tomorrow"})
    assert bad.status_code == 400 and "decision_date" in bad.json()["error"]


def test_partial_birth_date_and_age_over_100(server):
    ch = whole_chart(6, birth_date=str(datetime.now(timezone.utc).year - 64), years=1)
    body = fhir(server, ch.bundle).json()
    assert 63 <= body["inputs"]["age_years"] <= 64.5
    assert any(p["kind"] == "imprecise_date" and p["feature"] == "age_years" for p in body["problems"])
    old = whole_chart(7, birth_date="1900-01-01", stale_labs=True, years=1)
    card = _card(cds(server, hook_request(old)))
    assert "not enough data" in card.summary
    assert "Age (refused: outside the allowed range 18 to 100 years)" in card.detail
    assert "Total bilirubin (left out: too old)" in card.detail
    assert "Albumin (left out: too old)" in card.detail and "Platelets (left out: too old)" in card.detail


def test_bound_as_latest_value_is_never_a_value(server):
    ch = whole_chart(8, bound_latest_bilirubin=True, years=1)
    body = fhir(server, ch.bundle).json()
    assert "bilirubin_mg_dl" not in body["inputs"]
    assert any(p["kind"] == "bound" and p["feature"] == "bilirubin_mg_dl" for p in body["problems"])


def test_icd10_problem_list_and_units_without_ucum_codes(server):
    ch = whole_chart(9, problem_list="icd10", high=False, years=1)
    body = fhir(server, ch.bundle).json()
    assert body["inputs"]["primary_side"] == "left_colon"
    assert body["inputs"]["platelets_10e9_l"] == 210 and body["inputs"]["inr"] == pytest.approx(1.1)


def test_operation_outcome_in_a_prefetch_key_is_a_failed_prefetch(server, chart):
    body = hook_request(chart, prefetch_filtered(chart))
    body["prefetch"]["observations"] = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "timeout"}]}
    r = cds(server, body)
    assert r.status_code == 412 and "OperationOutcome" in r.json()["error"]
    with FhirServer() as f:  # with a FHIR server, the failed key is fetched instead
        from tests.fixtures.fhir import prefetch as small_prefetch

        req = {"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "hi-1"},
               "prefetch": {**small_prefetch("hi-1", True), "observations": body["prefetch"]["observations"]},
               "fhirServer": f.url, "fhirAuthorization": {"access_token": TOKEN, "token_type": "Bearer"}}
        assert _card(cds(server, req)).indicator in ("warning", "critical")
        assert any(path == "/Observation" for path, _ in f.requests)


def test_five_megabyte_chart_is_accepted_on_the_fhir_endpoints(server):
    big = whole_chart(10, years=12, visits_per_year=24)
    size = len(json.dumps(big.bundle))
    assert 4_500_000 < size < 8_000_000
    assert fhir(server, big.bundle).status_code == 200
    assert cds(server, hook_request(big)).status_code == 200


def _declared_too_big(server, path: str) -> dict:
    """A request that only declares a huge body: the limit answers before reading it."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: 999999999\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    assert b" 413 " in head.split(b"\r\n", 1)[0]
    return json.loads(body)


def test_413_hints_fit_the_endpoint(server):
    assert "patients per batch call" in _declared_too_big(server, "/v1/predict/batch")["hint"]
    assert "prefetch" in _declared_too_big(server, CDS)["hint"]
    assert "Bundle" in _declared_too_big(server, FHIR)["hint"]


# --- shapes that gave 500s (each one a regression test) ------------------------------------------
def _mutate(chart, fn):
    bundle = copy.deepcopy(chart.bundle)
    for e in bundle["entry"]:
        fn(e["resource"])
    return bundle


BROKEN = {
    "verification_coding_empty": lambda r: r["resourceType"] == "Condition" and r.update(
        verificationStatus={"coding": []}),
    "value_not_a_number": lambda r: r["resourceType"] == "Observation" and "valueQuantity" in r and r[
        "valueQuantity"].update(value="7.77 H"),
    "code_coding_null": lambda r: r["resourceType"] in ("Observation", "Condition") and r["code"].update(coding=None),
    "value_quantity_null": lambda r: r["resourceType"] == "Observation" and "valueQuantity" in r and r.update(
        valueQuantity=None),
    "value_concept_null": lambda r: r["resourceType"] == "Observation" and "valueCodeableConcept" in r and r.update(
        valueCodeableConcept=None),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_malformed_resources_never_give_500_on_either_endpoint(server, chart, name):
    bundle = _mutate(chart, BROKEN[name])
    f = fhir(server, bundle)
    assert f.status_code in (200, 422), f.text
    assert f.headers["content-type"].startswith("application/json")
    prefetch = {"patient": chart.patient, "conditions": bundle, "observations": bundle}
    c = cds(server, hook_request(chart, prefetch))
    assert c.status_code == 200 and c.headers["content-type"].startswith("application/json"), c.text
    assert "7.77 H" not in server.log_text()
    if name == "value_not_a_number":
        assert any(p["kind"] == "malformed" and "not a number" in p["problem"] for p in f.json()["problems"])


@pytest.mark.parametrize("path", [FHIR, CDS])
@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b"null", b'{"resourceType": "Bundle"}'])
def test_malformed_bodies_are_4xx_json_on_both_endpoints(server, path, body):
    r = httpx.post(f"{server.url}{path}", content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
