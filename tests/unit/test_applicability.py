"""Applicability and enough data, rule by rule: who is declined and why (failing closed), what the contract
refuses, when a chart has enough for a risk (at the share's edge), and inputs filled from the feature store
(docs/MUTATION.md lists the mutants these tests kill). The model is a stand-in that reads 7 inputs, 2 of them
required, and derives its coarse input as a served model does: no training, so each mutant runs in a moment."""

from __future__ import annotations

import pytest

from ehr import assess as a_
from ehr.assess import Assessment, declined, fill_from_store, missing_from_chart, reason, refused_fields
from ehr.fhir_read import REFUSED, Mapped
from ehr.settings import EhrSettings
from feature_store.coarse import derive_coarse
from tests.fixtures.fhir import patient_resources

class StandInRisk:
    features = ["age_years", "more_than_4_liver_metastases", "largest_metastasis_cm", "ras_status", "cea_ng_ml",
                "sex", "bilobar_disease"]
    required = ["age_years", "more_than_4_liver_metastases"]

    def derive(self, columns):
        return derive_coarse(columns, ["more_than_4_liver_metastases"])

    def score_record(self, record):
        return {"probability": 0.3, "inputs": dict(record)}


@pytest.fixture
def risk():
    return StandInRisk()


COMPLETE = {"age_years": 64.0, "n_liver_metastases": 6, "largest_metastasis_cm": 4.0, "ras_status": "mutant",
            "cea_ng_ml": 12.0, "sex": "female", "bilobar_disease": True}


@pytest.mark.parametrize("flags, why", [
    ({"deceased": True, "unreadable": ["x"], "liver_metastasis": True}, "deceased"),
    ({"unreadable": ["Patient.deceased"], "liver_metastasis": True}, "unreadable"),
    ({"liver_metastasis": True, "unresolved_liver": True}, None),
    ({"unresolved_liver": True}, "unresolved_references"),
    ({}, "no_liver_metastasis"),
])
def test_who_is_declined_fails_closed_in_this_order(flags, why):
    assert declined(Mapped(record={}, **flags)) == why


def _assessment(record=None, declined_=None, mapped=None) -> Assessment:
    return Assessment(None, dict(record or {}), [], 0.0, [], [], None, mapped, declined=declined_)


def test_the_reason_of_a_decline_names_the_unreadable_fields():
    mapped = Mapped(record={}, unreadable=["Patient.deceased[x]", "Condition/1.clinicalStatus"])
    assert reason(_assessment(declined_="unreadable", mapped=mapped)) == (
        "a field that decides whether the model applies could not be read: Patient.deceased[x]; "
        "Condition/1.clinicalStatus")
    assert reason(_assessment(declined_="unreadable")) == a_.NOT_APPLICABLE["unreadable"]
    assert reason(_assessment(declined_="deceased", mapped=mapped)) == "the patient is deceased"
    assert reason(_assessment()) == "no active liver-metastasis Condition in the chart"


def test_values_the_contract_refuses_are_dropped_by_name_and_missing_ones_are_not_refusals():
    fields, refused = refused_fields({"age_years": 300, "cea_ng_ml": -5, "sex": "female"})
    assert fields == {"sex": "female"} and [name for name, _ in refused] == ["age_years", "cea_ng_ml"]
    assert all(msg for _, msg in refused)
    fields, refused = refused_fields({"sex": "female"}, ["sex", "age_years"])  # age missing: not refused
    assert (fields, refused) == ({"sex": "female"}, [])


def _scored(risk, record, share=0.5, declined_=None) -> Assessment:
    return a_.score_assessment(_assessment(record, declined_), risk, EhrSettings(cds_min_input_share=share))


def test_a_complete_chart_is_scored_and_a_declined_one_never(risk):
    a = _scored(risk, COMPLETE)
    assert a.prediction is not None and a.share == 1.0 and a.missing_required == []
    assert _scored(risk, COMPLETE, declined_="deceased").prediction is None


def test_enough_data_means_the_required_inputs_and_the_share_at_least_the_minimum(risk):
    four = {k: COMPLETE[k] for k in ("age_years", "n_liver_metastases", "largest_metastasis_cm", "sex")}
    at_edge = _scored(risk, four, share=4 / 7)
    assert at_edge.share == 4 / 7 and at_edge.prediction is not None  # the coarse input counts via its count
    assert _scored(risk, four, share=0.6).prediction is None
    no_age = _scored(risk, {k: v for k, v in COMPLETE.items() if k != "age_years"})
    assert no_age.missing_required == ["age_years"] and no_age.prediction is None
    assert no_age.share == 6 / 7


def test_by_default_half_the_models_inputs_are_enough_as_the_readme_says(risk):
    # PVERISK_SERVE_CDS_MIN_INPUT_SHARE's documented default, pinned by behaviour (the test above sets it)
    assert EhrSettings().cds_min_input_share == 0.5
    three = {k: COMPLETE[k] for k in ("age_years", "n_liver_metastases", "largest_metastasis_cm")}
    assessment = a_.score_assessment(_assessment(three), risk, EhrSettings())
    assert assessment.share == 3 / 7 and assessment.prediction is None
    four = {**three, "sex": COMPLETE["sex"]}
    assert a_.score_assessment(_assessment(four), risk, EhrSettings()).prediction is not None


def test_inputs_the_chart_lacked_are_filled_from_the_store_and_scored_again(risk):
    partial = _scored(risk, {"age_years": 64.0, "sex": "female"})
    assert partial.prediction is None
    lacking = missing_from_chart(partial, risk)
    assert "cea_ng_ml" in lacking and "n_liver_metastases" in lacking and "age_years" not in lacking
    store = {"n_liver_metastases": 6, "cea_ng_ml": 12.04, "ras_status": "mutant", "age_years": 99.0}
    ages = {"n_liver_metastases": 3.0, "cea_ng_ml": 1.5, "ras_status": 40.0, "age_years": 0.0}
    filled = fill_from_store(partial, store, ages, risk, EhrSettings())
    assert filled.record["age_years"] == 64.0 and filled.record["cea_ng_ml"] == 12.0  # clinical precision
    assert filled.from_store == {"n_liver_metastases": 3.0, "cea_ng_ml": 1.5, "ras_status": 40.0}
    assert filled.prediction is not None
    nothing = _scored(risk, COMPLETE)
    before = nothing.prediction
    assert fill_from_store(nothing, {"bilirubin_mg_dl": 1.0}, {"bilirubin_mg_dl": 1.0}, risk,
                           EhrSettings()).prediction is before and nothing.from_store == {}


def test_a_chart_is_mapped_refused_and_assessed_in_one_call(risk):
    res = patient_resources("p1", high=True)
    resources = res["patient"] + res["conditions"] + res["observations"]
    a = a_.assess(resources, risk, EhrSettings(), patient_id="p1")
    assert a.patient_id == "p1" and a.declined is None and a.prediction is not None
    assert a.record["n_liver_metastases"] == 14 and a.basis and a.counts() == a.mapped.counts()
    other = a_.assess(resources, risk, EhrSettings(), patient_id="p2")
    assert other.prediction is None and other.identity_conflict and other.record == {}
    assert REFUSED not in a.counts()
    cea = next(o for o in res["observations"] if o["id"] == "p1-cea")
    cea["valueQuantity"] = {**cea["valueQuantity"], "value": 5e7}  # outside the contract's range
    refused = a_.assess(resources, risk, EhrSettings(), patient_id="p1")
    assert "cea_ng_ml" not in refused.record and refused.counts()[REFUSED] == 1
    (problem,) = [p for p in refused.mapped.problems if p.kind == REFUSED]
    assert (problem.ref, problem.feature) == ("input", "cea_ng_ml") and problem.message.endswith("; refused")


def _chart(pid: str = "p1") -> list[dict]:
    res = patient_resources(pid, high=True)
    return res["patient"] + res["conditions"] + res["observations"]


def test_assess_maps_the_chart_as_of_the_decision_with_the_callers_problems(risk):
    from datetime import datetime, timedelta, timezone

    from ehr.fhir_read import Problem

    year_ago = datetime.now(timezone.utc) - timedelta(days=365)
    early = a_.assess(_chart(), risk, EhrSettings(), decision=year_ago, patient_id="p1",
                      problems=[Problem("malformed", "Bundle entry 3", "not JSON")])
    assert "cea_ng_ml" not in early.record and early.counts().get("future")  # observations after the decision
    assert "Bundle entry 3: not JSON" in early.notes and early.notes == early.mapped.notes


def test_assess_reads_relative_references_against_the_fhir_server(risk):
    chart = _chart()
    entries = [(None if r["resourceType"] == "Patient" else f"https://other.example/fhir/{r['resourceType']}/{r['id']}",
                r) for r in chart]
    mine = a_.assess(entries, risk, EhrSettings(), patient_id="p1")
    assert mine.record.get("cea_ng_ml") == 350.0
    elsewhere = a_.assess(entries, risk, EhrSettings(), patient_id="p1", fhir_server="https://srv.example/fhir")
    assert "cea_ng_ml" not in elsewhere.record  # another server's Patient/p1 is another patient


def test_someone_elses_chart_is_assessed_to_nothing_but_its_notes(risk):
    from ehr.fhir_read import Problem

    other = a_.assess(_chart(), risk, EhrSettings(), patient_id="p2",
                      problems=[Problem("malformed", "Bundle entry 3", "not JSON")])
    assert other.identity_conflict and other.prediction is None and isinstance(other.mapped, Mapped)
    assert (other.record, other.share, other.missing_required, other.basis) == ({}, 0.0, [], [])
    assert other.notes == ["Bundle entry 3: not JSON"] and other.patient_id is None


def test_a_deceased_patient_is_declined_whatever_the_chart_holds(risk):
    chart = _chart()
    chart[0] = {**chart[0], "deceasedBoolean": True}
    a = a_.assess(chart, risk, EhrSettings(), patient_id="p1")
    assert a.declined == "deceased" and a.prediction is None and a.share > 0.5


def test_each_refused_value_gets_its_own_reason_and_counts_need_a_chart():
    fields, refused = refused_fields({"age_years": 300, "sex": "x"})
    assert fields == {} and refused == [("age_years", "outside the allowed range 18 to 100 years"),
                                        ("sex", "unknown category; allowed one of female, male")]
    assert refused_fields({"age_years": 300}) == ({}, [("age_years", "outside the allowed range 18 to 100 years")])
    assert _assessment().counts() == {}
