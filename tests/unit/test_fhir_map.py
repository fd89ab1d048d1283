"""FHIR -> contract mapping: codes by system+code, UCUM conversion, latest value before the decision."""

from datetime import datetime, timezone

import pytest

from ehr.fhir_map import map_resources, primary_side
from ehr.fhir_out import risk_assessment
from tests.fixtures.fhir import LOINC, RACE, patient_resources, quantity_obs


def _all(pid="p1", high=True):
    r = patient_resources(pid, high)
    return r["patient"] + r["conditions"] + r["observations"]


def test_high_risk_fixture_maps_with_unit_conversions():
    m = map_resources(_all())
    rec = m.record
    assert rec["sex"] == "male" and 63 <= rec["age_years"] <= 64
    assert rec["primary_side"] == "right_colon" and m.liver_metastasis
    assert rec["largest_metastasis_cm"] == pytest.approx(7.5)  # 75 mm
    assert rec["bilirubin_mg_dl"] == pytest.approx(1.0)  # 17.1 umol/L
    assert rec["albumin_g_dl"] == pytest.approx(3.8)  # 38 g/L
    assert rec["platelets_10e9_l"] == 210 and rec["inr"] == 1.1 and rec["cea_ng_ml"] == 350
    assert rec["n_liver_metastases"] == 14 and rec["chemo_response"] == "progressive"
    assert rec["ras_status"] == "mutant" and rec["bridging_chemo_planned"] is False
    assert "Patient/p1" in m.basis and "Observation/p1-cea" in m.basis


def test_code_collision_race_2039_6_is_not_cea():
    res = [r for r in _all() if r.get("id") != "p1-cea"]
    res.append(quantity_obs("race", "p1", RACE, "2039-6", 1, "1"))
    assert "cea_ng_ml" not in map_resources(res).record


def test_latest_value_before_decision_and_stale_ignored():
    decision = datetime.now(timezone.utc)
    res = [r for r in _all() if r.get("id") != "p1-cea"] + [
        quantity_obs("old", "p1", LOINC, "2039-6", 10.0, "ng/mL", days_ago=60),
        quantity_obs("new", "p1", LOINC, "83085-1", 20.0, "ug/L", days_ago=5),  # other LOINC, ug/L == ng/mL
        quantity_obs("future", "p1", LOINC, "2039-6", 999.0, "ng/mL", days_ago=-3),
        quantity_obs("stale", "p1", LOINC, "1751-7", 2.0, "g/dL", days_ago=400),
        quantity_obs("void", "p1", LOINC, "2039-6", 555.0, "ng/mL", days_ago=1, status="entered-in-error"),
    ]
    m = map_resources(res, decision=decision)
    assert m.record["cea_ng_ml"] == 20.0
    assert m.record["albumin_g_dl"] == pytest.approx(3.8)  # the fresh one, not the stale one
    assert any("future" in n and "after the decision" in n for n in m.notes)
    assert any("stale" in n and "stale" in n for n in m.notes)


def test_unconvertible_unit_is_noted_not_guessed():
    res = [quantity_obs("x", "p1", LOINC, "1975-2", 1.0, "U/L")]  # an enzyme activity, not a concentration
    m = map_resources(res)
    assert "bilirubin_mg_dl" not in m.record and "not convertible to mg/dL" in m.notes[0]
    assert m.problems[0].kind == "unit"


@pytest.mark.parametrize("code,side", [("C18.0", "right_colon"), ("C18.4", "right_colon"), ("C184", "right_colon"),
                                       ("C18.5", "left_colon"), ("C18.7", "left_colon"), ("C19", "left_colon"),
                                       ("C20", "rectum"), ("C18.9", None), ("C78.7", None)])
def test_primary_side_from_icd10(code, side):
    assert primary_side(code) == side


def test_risk_assessment_is_valid_r4():
    pred = {"probability": 0.42, "risk_band": "high", "data_kind": "simulated", "notice": "Research use only.",
            "model": {"name": "pve-progression-risk", "version": "3"}}
    ra = risk_assessment(pred, "Patient/p1", ["Observation/o1", "Condition/c1"])
    assert ra["resourceType"] == "RiskAssessment" and ra["status"] == "final"
    assert ra["prediction"][0]["probabilityDecimal"] == 0.42
    assert ra["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "high"
    assert ra["performer"]["reference"] == "#model" and ra["contained"][0]["resourceType"] == "Device"
    assert ra["contained"][0]["version"][0]["value"] == "3"
    assert [b["reference"] for b in ra["basis"]] == ["Observation/o1", "Condition/c1"]


def test_record_to_bundle_round_trips_through_the_mapping():
    from datetime import datetime, timezone

    from feature_store import contract as c
    from ehr.examples import record_to_bundle
    from ehr.fhir_read import bundle_resources

    record = c.example_record()
    m = map_resources(bundle_resources(record_to_bundle(record, when="2026-01-15")),
                      decision=datetime(2026, 2, 1, tzinfo=timezone.utc))
    expected = {k: v for k, v in record.items() if v != "unknown"}
    for k, v in expected.items():
        if isinstance(v, float) and k != "age_years":
            assert m.record[k] == pytest.approx(v), k
        elif k != "age_years":
            assert m.record[k] == v, k
    assert abs(m.record["age_years"] - record["age_years"]) <= 1.1
