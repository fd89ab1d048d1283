"""An mCODE / US Core chart (tests/fixtures/mcode.py, built from the IGs' published example shapes) mapped onto the
contract: every input it carries is read, with the profile it came from; the coarse forms where only they can
be derived; and the variants integrators meet (STU2 AJCC staging codes, RECIST target lesions only, clinical-
drug medication codes)."""

from __future__ import annotations

import copy

import pytest

from ehr.fhir_map import map_chart
from ehr.fhir_read import bundle_entries
from feature_store import contract as c
from feature_store.coverage import coverage
from tests.fixtures.mcode import RXNORM, mcode_chart


def _map(ch):
    return map_chart(bundle_entries(ch.bundle), patient_id=ch.patient_id, fhir_server="http://ehr.example/fhir")


def _check(m, expected):
    for k, v in expected.items():
        assert m.record.get(k) == (pytest.approx(v) if isinstance(v, float) else v), k


@pytest.mark.parametrize("high", [True, False])
def test_an_mcode_chart_gives_every_input_it_carries(high):
    ch = mcode_chart(high=high)
    m = _map(ch)
    _check(m, ch.expected)
    assert m.liver_metastasis and not m.unreadable and not m.counts().get("other_patient")
    # everything the demo model takes that a standard chart can carry, read from the standard profiles
    standard = {e["feature"] for e in coverage(c.fine_feature_names())["inputs"] if e["standard"]}
    assert standard <= set(m.record), standard - set(m.record)
    assert m.sources["n_liver_metastases"].startswith("mCODE Tumor") and "TNM" in m.sources["node_positive_primary"]
    assert m.sources["cea_ng_ml"] == "LOINC 2039-6" and "administrations" in m.sources["chemo_cycles_pre_pve"]


def test_stu2_ajcc_staging_codes_are_read():
    assert _map(mcode_chart(staging="ajcc")).record["node_positive_primary"] is True
    assert _map(mcode_chart(staging="ajcc", high=False)).record["node_positive_primary"] is False


@pytest.mark.parametrize("genotype,ras,braf", [("kras", "mutant", "wild_type"), ("braf", "wild_type", "mutant"),
                                               ("wild", "wild_type", "wild_type")])
def test_genomic_variants_and_regions_studied(genotype, ras, braf):
    rec = _map(mcode_chart(genotype=genotype)).record
    assert (rec["ras_status"], rec["braf_v600e"]) == (ras, braf)


def test_recist_target_lesions_give_the_count_but_not_the_largest():
    m = _map(mcode_chart(measured="targets"))
    assert m.record["n_liver_metastases"] == 3 and "largest_metastasis_cm" not in m.record
    assert any(p.kind == "partial" and p.feature == "largest_metastasis_cm" for p in m.problems)


def test_tumours_known_only_through_their_sizes_give_the_coarse_forms():
    m = _map(mcode_chart(measured="sizes-only"))
    assert "n_liver_metastases" not in m.record and m.record["multiple_liver_metastases"] is True
    assert "more_than_4_liver_metastases" not in m.record  # 3 seen: more than 4 is not certain
    assert any(p.kind == "partial" and p.feature == "n_liver_metastases" for p in m.problems)


def test_without_a_surgical_plan_bridging_and_the_interval_are_not_known():
    rec = _map(mcode_chart(plan=False)).record
    assert rec["chemo_cycles_pre_pve"] == 6 and "bridging_chemo_planned" not in rec
    assert "planned_interval_weeks" not in rec
    rec = _map(mcode_chart(treatment=False)).record
    assert not {"chemo_cycles_pre_pve", "bevacizumab_pre_pve", "bridging_chemo_planned"} & set(rec)


def test_clinical_drug_codes_count_by_name_and_topical_fluorouracil_does_not():
    ch = mcode_chart()
    bundle = copy.deepcopy(ch.bundle)
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == "MedicationAdministration" and "oxaliplatin" in r["id"]:
            r["medicationCodeableConcept"] = {"coding": [{"system": RXNORM, "code": "575971",
                                                          "display": "oxaliplatin 5 MG/ML [Eloxatin]"}]}
        elif r["resourceType"] == "MedicationAdministration":
            r["medicationCodeableConcept"] = {"text": "fluorouracil 5 % Topical Cream"}
    m = map_chart(bundle_entries(bundle), patient_id=ch.patient_id)
    assert m.record["chemo_cycles_pre_pve"] == 6 and m.record["bevacizumab_pre_pve"] is False


def test_a_tumour_of_another_patient_is_not_counted():
    ch = mcode_chart()
    bundle = copy.deepcopy(ch.bundle)
    body = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "BodyStructure")
    body["patient"] = {"reference": "https://other.example/fhir/Patient/crlm-1"}
    m = map_chart(bundle_entries(bundle), patient_id=ch.patient_id)
    assert m.record["n_liver_metastases"] == 2 and m.counts()["other_patient"] == 1


def test_a_stale_restaging_ct_leaves_the_tumour_burden_missing():
    ch = mcode_chart()
    bundle = copy.deepcopy(ch.bundle)
    bundle["entry"] = [e for e in bundle["entry"] if not e["resource"]["id"].endswith("-20")]  # only the 120-day CT
    m = map_chart(bundle_entries(bundle), patient_id=ch.patient_id)
    assert "n_liver_metastases" not in m.record and "largest_metastasis_cm" not in m.record
    assert any(p.kind == "stale" and p.feature == "n_liver_metastases" for p in m.problems)


def test_each_lab_in_the_coverage_lists_its_own_codes():
    """The laboratory row covers four labs; each input names only the LOINC codes that carry it."""
    reads = {e["feature"]: e["carried_by"][0]["reads"] for e in coverage(["inr", "bilirubin_mg_dl"])["inputs"]}
    assert "6301-6" in reads["inr"] and "1975-2" not in reads["inr"]
    assert "1975-2" in reads["bilirubin_mg_dl"] and "14631-6" in reads["bilirubin_mg_dl"]
    assert "6301-6" not in reads["bilirubin_mg_dl"]
