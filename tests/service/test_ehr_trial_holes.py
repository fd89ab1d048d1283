"""The holes a real-chart trial found on the EHR routes (issue 20), over real HTTP: each one a test that failed
before its fix. The server runs without PVERISK_SERVE_PUBLIC_URL (the case the Host-header hole needs)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from ehr.cds_models import CardsResponse
from tests.fixtures.charts import hook_request, whole_chart
from tests.fixtures.fhir import LOINC, UCUM

pytestmark = pytest.mark.slow
CDS = "/cds-services/pve-progression-risk"
FHIR = "/v1/predict/fhir"


@pytest.fixture(scope="module")
def chart():
    return whole_chart(21, high=False, years=1)


def cds(server, body, **kw):
    return httpx.post(f"{server.url}{CDS}", json=body, timeout=60, **kw)


def _cards(r):
    assert r.status_code == 200, r.text
    return CardsResponse.model_validate(r.json()).cards


def _cea(subject: str, value: float) -> dict:
    when = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    return {"fullUrl": "https://other.example/fhir/Observation/x1", "resource": {
        "resourceType": "Observation", "id": "x1", "status": "final", "subject": {"reference": subject},
        "code": {"coding": [{"system": LOINC, "code": "2039-6"}]}, "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "ng/mL", "system": UCUM, "code": "ng/mL"}}}


def test_an_observation_on_another_fhir_server_does_not_move_the_card(server, chart):
    plain = _cards(cds(server, hook_request(chart)))[0]
    bundle = copy.deepcopy(chart.bundle)
    bundle["entry"].append(_cea(f"https://other.example/fhir/Patient/{chart.patient_id}", 250.0))
    body = hook_request(chart)
    body["prefetch"]["observations"] = bundle
    moved = _cards(cds(server, body))[0]
    assert moved.summary == plain.summary
    f = httpx.post(f"{server.url}{FHIR}", json=bundle, timeout=60).json()
    assert f["inputs"]["cea_ng_ml"] == pytest.approx(3.1)


@pytest.mark.parametrize("value", ["true", 1])
def test_a_malformed_deceased_flag_gives_no_risk_on_either_route(server, chart, value):
    bundle = copy.deepcopy(chart.bundle)
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["deceasedBoolean"] = value
    f = httpx.post(f"{server.url}{FHIR}", json=bundle, timeout=60)
    assert f.status_code == 422 and "deceasedBoolean" in f.json()["error"], f.text
    body = hook_request(chart)
    body["prefetch"]["patient"] = patient
    body["prefetch"]["observations"] = bundle
    cards = _cards(cds(server, body))
    assert all("%" not in c.summary.replace("research", "") for c in cards)
    assert cards and "deceasedBoolean" in (cards[0].detail or "")  # said plainly, not a silent empty answer


def test_a_prefetch_cut_from_a_transaction_bundle_says_why_it_cannot_be_read(server, chart):
    """Trial: subjects as urn:uuid references no entry resolves gave {"cards": []} with no hint why."""
    entries = chart.bundle["entry"]
    pre = {"patient": chart.patient,
           "conditions": {"resourceType": "Bundle", "type": "transaction",
                          "entry": [e for e in entries if e["resource"]["resourceType"] == "Condition"]},
           "observations": {"resourceType": "Bundle", "type": "transaction",
                            "entry": [e for e in entries if e["resource"]["resourceType"] == "Observation"]}}
    r = cds(server, hook_request(chart, pre))
    assert r.status_code == 412, r.text
    assert "urn:uuid" in r.json()["error"] and "fullUrl" in r.json()["error"]


def test_card_links_never_follow_the_host_header(server, chart):
    r = cds(server, hook_request(chart), headers={"Host": "evil.example"})
    card = _cards(r)[0]
    urls = [link.url for link in card.links or []] + [card.source.url or ""]
    assert urls and not any("evil.example" in u for u in urls)


def test_a_prefill_token_is_single_use(server, chart):
    card = _cards(cds(server, hook_request(chart)))[0]
    token = next(link.url for link in card.links if "#prefill=" in link.url).split("#prefill=", 1)[1]
    first = httpx.post(f"{server.url}/v1/prefill", json={"token": token})
    assert first.status_code == 200 and first.json()["inputs"]
    assert httpx.post(f"{server.url}/v1/prefill", json={"token": token}).status_code == 404


def test_an_unsupported_bundle_type_is_named_in_plain_words(server, chart):
    r = httpx.post(f"{server.url}{FHIR}", json={**chart.bundle, "type": "document"}, timeout=60)
    assert r.status_code == 400
    text = json.dumps(r.json())
    assert "IODescriptor" not in text and "document" not in text  # no internal class, no echoed value
    assert "type" in text and all(t in text for t in ("transaction", "batch", "collection", "searchset"))
    r = httpx.post(f"{server.url}{FHIR}", json={"resourceType": "Patient", "id": "x"}, timeout=60)
    assert r.status_code == 400 and "IODescriptor" not in r.text and "resourceType" in r.text


def test_staleness_and_conflicts_follow_the_contract_on_the_fhir_route(server, chart):
    bundle = copy.deepcopy(chart.bundle)
    when = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    for i, value in enumerate((12.3, 250.0)):  # two CEA values at the same time
        e = _cea(f"Patient/{chart.patient_id}", value)
        e["fullUrl"] = f"urn:uuid:00000000-0000-4000-8000-00000000000{i}"
        e["resource"]["id"] = f"cea-{i}"
        e["resource"]["effectiveDateTime"] = when
        bundle["entry"].append(e)
    body = httpx.post(f"{server.url}{FHIR}", json=bundle, timeout=60).json()
    assert "cea_ng_ml" not in body["inputs"]
    assert any(p["kind"] == "conflict" and p["feature"] == "cea_ng_ml" for p in body["problems"])
