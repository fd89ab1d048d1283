"""The holes a real-chart trial found in the FHIR mapping (issue 20), each a regression test: references to
another FHIR server, malformed safety fields, staleness by the contract's TTLs, values in conflict."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ehr.fhir_map import map_resources
from feature_store import contract as c
from tests.fixtures.fhir import LOINC, UCUM, patient_resources, quantity_obs

NOW = datetime.now(timezone.utc)


def _chart(pid: str = "p1", high: bool = False) -> list[dict]:
    r = patient_resources(pid, high)
    return r["patient"] + r["conditions"] + r["observations"]


def _cea(oid: str, subject: str, value: float, when: datetime) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": subject},
            "code": {"coding": [{"system": LOINC, "code": "2039-6"}]}, "effectiveDateTime": when.isoformat(),
            "valueQuantity": {"value": value, "unit": "ng/mL", "system": UCUM, "code": "ng/mL"}}


def test_an_absolute_reference_to_another_server_is_another_patient():
    """Trial: `https://other.example/fhir/Patient/<id>` with this patient's logical id was scored as this patient
    (its CEA moved the card from low to intermediate)."""
    res = _chart() + [_cea("x1", "https://other.example/fhir/Patient/p1", 250.0, NOW - timedelta(hours=1))]
    m = map_resources(res, patient_id="p1")
    assert m.record["cea_ng_ml"] == pytest.approx(3.1)  # the patient's own CEA, not the other server's 250
    assert any(p.kind == "other_patient" and p.ref == "Observation/x1" for p in m.problems)


def test_a_urn_reference_that_no_entry_resolves_is_another_patient():
    res = _chart() + [_cea("x2", "urn:uuid:3f1c0b6d-2a8e-4f7f-b1d9-c0a2e5f6a7b8", 250.0, NOW - timedelta(hours=1))]
    m = map_resources(res, patient_id="p1")
    assert m.record["cea_ng_ml"] == pytest.approx(3.1)
    assert any(p.kind == "other_patient" and p.ref == "Observation/x2" for p in m.problems)


@pytest.mark.parametrize("value", ["true", "yes", 1, {"value": True}, []])
def test_a_malformed_deceased_flag_fails_closed(value):
    """Trial: `deceasedBoolean: "true"` (a string) was scored as alive."""
    res = _chart()
    res[0] = {**res[0], "deceasedBoolean": value}
    m = map_resources(res)
    assert m.unreadable and "deceasedBoolean" in m.unreadable[0]


@pytest.mark.parametrize("field,value", [
    ("clinicalStatus", "active"), ("clinicalStatus", {"coding": [{"code": "actve"}]}),
    ("clinicalStatus", {"coding": "active"}), ("verificationStatus", "confirmed"),
    ("verificationStatus", {"coding": [{"code": 3}]})])
def test_a_malformed_status_on_the_liver_metastasis_fails_closed(field, value):
    res = _chart()
    met = next(r for r in res if r.get("id") == "p1-met")
    met[field] = value
    m = map_resources(res)
    assert not m.liver_metastasis and any(field in u for u in m.unreadable)


def test_a_malformed_status_on_a_second_liver_condition_does_not_hide_the_first():
    res = _chart()
    met = next(r for r in res if r.get("id") == "p1-met")
    res.append({**met, "id": "p1-met-2", "clinicalStatus": "active"})
    m = map_resources(res)
    assert m.liver_metastasis and not m.unreadable


def test_labs_and_imaging_expire_by_the_contract_ttl():
    """Trial: FHIR and CDS used any value up to 120 days old; the contract expires labs at 30 days and imaging at 60."""
    lab_ttl = c.SOURCE_GROUPS["laboratory"].ttl_days
    img_ttl = c.SOURCE_GROUPS["imaging"].ttl_days
    res = [r for r in _chart() if r.get("id") not in ("p1-cea", "p1-size")]
    res.append(quantity_obs("cea-old", "p1", LOINC, "2039-6", 12.0, "ng/mL", days_ago=lab_ttl + 5))
    res.append(quantity_obs("size-old", "p1", LOINC, "33728-7", 40, "mm", days_ago=img_ttl + 5))
    m = map_resources(res)
    assert "cea_ng_ml" not in m.record and "largest_metastasis_cm" not in m.record
    assert {p.feature for p in m.problems if p.kind == "stale"} >= {"cea_ng_ml", "largest_metastasis_cm"}
    fresh = [r for r in _chart() if r.get("id") != "p1-cea"]
    fresh.append(quantity_obs("cea-new", "p1", LOINC, "2039-6", 12.0, "ng/mL", days_ago=lab_ttl - 5))
    assert map_resources(fresh).record["cea_ng_ml"] == pytest.approx(12.0)


def test_two_values_of_one_input_at_the_same_time_are_a_conflict_not_a_choice():
    """Trial: CEA 12.3 and 250 at the same time were not flagged; one was taken."""
    when = NOW - timedelta(days=2)
    res = [r for r in _chart() if r.get("id") != "p1-cea"]
    res += [_cea("a", "Patient/p1", 12.3, when), _cea("b", "Patient/p1", 250.0, when)]
    m = map_resources(res)
    assert "cea_ng_ml" not in m.record
    assert any(p.kind == "conflict" and p.feature == "cea_ng_ml" for p in m.problems)
    same = [r for r in _chart() if r.get("id") != "p1-cea"] + [_cea("a", "Patient/p1", 12.3, when),
                                                               _cea("b", "Patient/p1", 12.3, when)]
    assert map_resources(same).record["cea_ng_ml"] == pytest.approx(12.3)  # the same value twice is no conflict


def test_converted_values_are_at_clinical_precision():
    """Trial: 17.1 umol/L bilirubin came back as 0.99999999999927 mg/dL."""
    rec = map_resources(_chart()).record
    assert rec["bilirubin_mg_dl"] == 1.0 and rec["albumin_g_dl"] == 3.8
