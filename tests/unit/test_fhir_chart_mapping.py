"""The mapper on whole charts and on the malformed shapes found by the property test
(tests/service/test_fhir_property.py): each finding is a regression test here."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from ehr.fhir_map import map_chart, map_resources
from ehr.fhir_read import bundle_entries, parse_when
from feature_store.units import factor_to_contract, ucum_for
from tests.fixtures.charts import prefetch_filtered, whole_chart
from tests.fixtures.fhir import LOINC, patient_resources, quantity_obs


def _all(pid="p1"):
    r = patient_resources(pid, True)
    return r["patient"] + r["conditions"] + r["observations"]


def test_whole_chart_maps_to_the_expected_record():
    ch = whole_chart(1, years=2)
    m = map_chart(bundle_entries(ch.bundle), patient_id=ch.patient_id)
    for k, v in ch.expected.items():
        assert m.record[k] == (pytest.approx(v) if isinstance(v, float) else v), k
    assert m.liver_metastasis and not m.deceased and m.identity_conflict is None
    assert m.counts()["other_patient"] == ch.other_patient_resources


def test_filtered_prefetch_reads_the_same_as_the_whole_chart():
    ch = whole_chart(2, years=1)
    pre = prefetch_filtered(ch)
    entries = [(None, pre["patient"])] + bundle_entries(pre["conditions"]) + bundle_entries(pre["observations"])
    assert map_chart(entries, patient_id=ch.patient_id).record == \
        map_chart(bundle_entries(ch.bundle), patient_id=ch.patient_id).record


@pytest.mark.parametrize("status", [{}, [], ["final"], 3, None])
def test_finding_observation_status_not_a_string(status):
    """Property-test finding 1: `status: {}` raised TypeError (unhashable) -> a 500."""
    res = _all()
    res[-1] = {**res[-1], "status": status}
    m = map_resources(res)
    assert "platelets_10e9_l" not in m.record
    assert any("status" in n for n in m.notes)


@pytest.mark.parametrize("comparator", [{}, [], ["<"], 1])
def test_comparator_not_a_string_is_malformed_not_a_crash(comparator):
    obs = quantity_obs("c", "p1", LOINC, "2039-6", 3.0, "ng/mL")
    obs["valueQuantity"]["comparator"] = comparator
    m = map_resources([obs])
    assert "cea_ng_ml" not in m.record and m.problems[0].kind == "malformed"


@pytest.mark.parametrize("shape", [
    {"verificationStatus": {"coding": []}}, {"code": {"coding": None}}, {"code": None}, {"subject": None},
    {"clinicalStatus": "active"}, {"onsetDateTime": 5}])
def test_malformed_conditions_are_skipped_or_read(shape):
    res = _all()
    res[1] = {**res[1], **shape}
    map_resources(res)  # never raises


@pytest.mark.parametrize("value,problem", [("7.77 H", "not a number"), (None, "missing"), (True, "not a number"),
                                           (10 ** 400, "not a number")])
def test_non_numeric_values_are_noted_without_the_value(value, problem):
    obs = quantity_obs("v", "p1", LOINC, "2039-6", 1.0, "ng/mL")
    obs["valueQuantity"]["value"] = value
    m = map_resources([obs])
    assert "cea_ng_ml" not in m.record and problem in m.notes[0] and "7.77" not in m.notes[0]


@pytest.mark.parametrize("member", ["valueQuantity", "valueCodeableConcept"])
def test_null_values_are_malformed(member):
    obs = quantity_obs("v", "p1", LOINC, "2039-6", 1.0, "ng/mL")
    del obs["valueQuantity"]
    obs[member] = None
    assert map_resources([obs]).problems[0].kind == "malformed"


def test_identity_other_patient_resources_ignored_and_counted():
    res = _all() + [quantity_obs("x", "someone-else", LOINC, "2039-6", 9999.0, "ng/mL", days_ago=1)]
    m = map_resources(res, patient_id="p1")
    assert m.record["cea_ng_ml"] == 350 and m.counts() == {"other_patient": 1}


def test_identity_conflicts():
    assert map_resources(_all(), patient_id="p2").identity_conflict  # the Patient is someone else
    two = _all("p1") + patient_resources("p2", False)["patient"]
    assert "2 different Patient" in map_resources(two).identity_conflict


def test_urn_uuid_references_resolve_through_full_urls():
    pat = {"resourceType": "Patient", "id": "abc", "birthDate": "1960-01-01"}
    obs = quantity_obs("o", "x", LOINC, "2039-6", 5.0, "ng/mL")
    obs["subject"] = {"reference": "urn:uuid:1111"}
    m = map_chart([("urn:uuid:1111", pat), (None, obs)])
    assert m.record["cea_ng_ml"] == 5.0 and m.patient_id == "abc"


def test_partial_dates_at_their_precision():
    assert parse_when("1959")[2] == "year" and parse_when("1959-12")[2] == "month"
    assert parse_when("1959-12")[1].day == 31 and parse_when("2020-02-30") is None
    decision = datetime(2026, 7, 2, tzinfo=timezone.utc)
    m = map_resources([{"resourceType": "Patient", "id": "p", "birthDate": "1960"}], decision=decision)
    assert m.record["age_years"] == pytest.approx(66.0, abs=0.05)
    assert m.problems[0].kind == "imprecise_date"


def test_age_at_death_and_deceased_flags():
    decision = datetime(2026, 1, 1, tzinfo=timezone.utc)
    dead = map_resources([{"resourceType": "Patient", "id": "p", "birthDate": "1950-01-01",
                           "deceasedDateTime": "2010-01-01"}], decision=decision)
    assert dead.deceased and dead.record["age_years"] == pytest.approx(60.0, abs=0.05)  # at death, not 76
    alive_then = map_resources([{"resourceType": "Patient", "id": "p", "birthDate": "1950-01-01",
                                 "deceasedDateTime": "2027-01-01"}], decision=decision)
    assert not alive_then.deceased
    assert map_resources([{"resourceType": "Patient", "id": "p", "deceasedBoolean": True}]).deceased
    assert map_resources([{"resourceType": "Patient", "id": "p", "birthDate": "1900-01-01"}],
                         decision=decision).record["age_years"] > 100  # refused later by the contract, with a note


@pytest.mark.parametrize("unit,code,system,value,expected", [
    ("K/uL", None, None, 210, 210), ("x10E3/uL", None, None, 210, 210), ("mg/dl", None, None, 1.1, 1.1),
    ("µmol/L", None, None, 17.1, 1.0), ("mcmol/L", None, None, 17.1, 1.0), ("μmol/l", None, None, 34.2, 2.0),
    ("umol/L", "umol/L", "http://unitsofmeasure.org", 34.2, 2.0),
    ("INR", None, None, 1.1, 1.1), ("g/L", "g/L", "http://unitsofmeasure.org", 38, 3.8),
])
def test_units_ehrs_send(unit, code, system, value, expected):
    loinc = {"K/uL": "777-3", "x10E3/uL": "777-3", "INR": "6301-6", "g/L": "1751-7"}.get(unit, "1975-2")
    obs = quantity_obs("u", "p1", LOINC, loinc, value, unit)
    obs["valueQuantity"] = {k: v for k, v in {"value": value, "unit": unit, "code": code, "system": system}.items()
                            if v is not None}
    rec = map_resources([obs]).record
    assert next(iter(rec.values())) == pytest.approx(expected)


def test_ucum_factors():
    assert factor_to_contract("umol/L", "mg/dL", 10_000 / 17.1) == pytest.approx(1 / 17.1)
    assert factor_to_contract("mmol/L", "mg/dL") is None  # moles need a molar mass
    assert factor_to_contract("kg", "cm") is None and factor_to_contract("((", "cm") is None
    assert ucum_for(None, "K/uL", False) == "10*3/uL"


def test_comparator_newest_bound_hides_older_values():
    older = quantity_obs("a", "p1", LOINC, "1975-2", 0.8, "mg/dL", days_ago=20)
    newer = quantity_obs("b", "p1", LOINC, "1975-2", 0.2, "mg/dL", days_ago=2)
    newer["valueQuantity"]["comparator"] = "<"
    m = map_resources([older, newer])
    assert "bilirubin_mg_dl" not in m.record and "bound (<)" in m.notes[0]
    m2 = map_resources([copy.deepcopy(newer) | {"effectiveDateTime": older["effectiveDateTime"]} | {"id": "c"},
                        quantity_obs("d", "p1", LOINC, "1975-2", 0.8, "mg/dL", days_ago=2)])
    assert m2.record["bilirubin_mg_dl"] == 0.8  # an older bound does not hide a newer value


def test_panel_components_are_read():
    panel = quantity_obs("panel", "p1", "http://example.org/lab", "COAG", 0, "1")
    del panel["valueQuantity"]
    panel["component"] = [{"code": {"coding": [{"system": LOINC, "code": "6301-6"}]},
                           "valueQuantity": {"value": 1.3, "unit": "INR"}}, None, "junk"]
    assert map_resources([panel]).record["inr"] == 1.3


def test_snomed_primary_site_and_conflicting_sides():
    pid = "p1"
    sct = {"resourceType": "Condition", "id": "s", "subject": {"reference": f"Patient/{pid}"},
           "code": {"coding": [{"system": "http://snomed.info/sct", "code": "94006002"}]}}
    assert map_resources([sct]).record["primary_side"] == "left_colon"
    icd = {**sct, "id": "i", "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "C18.2"}]}}
    m = map_resources([sct, icd])
    assert "primary_side" not in m.record and m.problems[0].kind == "conflict"


def test_inactive_or_refuted_liver_metastasis_is_not_applicable():
    base = {"resourceType": "Condition", "id": "m", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "94381002"}]}}
    assert map_resources([base]).liver_metastasis
    resolved = {**base, "clinicalStatus": {"coding": [{"code": "resolved"}]}}
    refuted = {**base, "verificationStatus": {"coding": [{"code": "refuted"}]}}
    abated = {**base, "abatementDateTime": "2020-01-01"}
    assert not any(map_resources([x]).liver_metastasis for x in (resolved, refuted, abated))


def test_mutation_answer_codes():
    obs = {"resourceType": "Observation", "id": "k", "status": "final", "subject": {"reference": "Patient/p1"},
           "code": {"coding": [{"system": LOINC, "code": "21702-6"}]}, "effectiveDateTime": "2019-01-01",
           "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "260373001"}]}}
    assert map_resources([obs]).record["ras_status"] == "mutant"  # years old: a genotype is never stale


def test_card_values_at_clinical_precision_and_absent_scores_left_out():
    from ehr.cards import _score_line
    from feature_store.clinical import clinical_round, value_text

    assert value_text("bilirubin_mg_dl", 1.1228442443195346) == "1.1 mg/dL"
    assert value_text("platelets_10e9_l", 210.4) == "210 ×10⁹/L" and value_text("sflr_percent", 19.04) == "19%"
    assert value_text("age_years", 63.4) == "63 years" and value_text("inr", 1.1) == "1.1"
    assert value_text("n_liver_metastases", 14) == "14" and value_text("bridging_chemo_planned", False) == "no"
    assert value_text("ras_status", "wild_type") == "wild type" and value_text("cea_ng_ml", None) == "not known"
    assert clinical_round("bilirubin_mg_dl", 17.1 / 17.1000000000001) == 1.0
    assert clinical_round("disease_free_interval_months", 11.64) == 11.6  # not 12: Fong's cut-off is < 12
    assert clinical_round("n_liver_metastases", 3.0) == 3 and isinstance(clinical_round("n_liver_metastases", 3.0), int)
    assert _score_line({"fong_crs": None, "game_score": None, "game_group": None, "m_crs": 1.0,
                        "tumour_burden_score": 6.3245}) == "m-CRS 1; TBS 6.3"
    assert _score_line({"fong_crs": None, "game_score": None, "m_crs": None, "tumour_burden_score": None}) is None
