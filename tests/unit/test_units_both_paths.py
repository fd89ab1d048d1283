"""Unit conversion agrees on both paths, end to end (issue 22): a value a tabular import converts with
`UNIT_FACTORS` and the same value sent in a FHIR Observation (converted through UCUM) reach the model as the
same number, for every coded feature and every unit the import accepts for it. A wrong factor on either
path fails here, not only for tabular imports."""

from __future__ import annotations

import pytest

from ehr.fhir_map import map_resources
from feature_store import contract as c
from feature_store.units import CONTRACT_UCUM, UNIT_FACTORS, convert, factor_to_contract
from tests.fixtures.fhir import quantity_obs

# The tabular import's unit names, as UCUM codes (what a FHIR Quantity carries for the same unit).
TABULAR_AS_UCUM = {"umol/L": "umol/L", "10^3/uL": "10*3/uL", "10^9/L": "10*9/L", "ug/L": "ug/L", "g/L": "g/L",
                   "mm": "mm", "days": "d", "fraction": "1"}


def _cases() -> list[tuple[str, str, str]]:
    """(feature, each of its coded observations, a source unit the import accepts for its contract unit).
    Age is left out: the FHIR path reads it from Patient.birthDate, not from an Observation."""
    out = []
    for f in c.FEATURES:
        if f.unit is None or f.name == "age_years":
            continue
        for code in f.codes:
            if code.unit and code.system.endswith("loinc.org"):
                out += [(f.name, code.code, source) for (to, source) in UNIT_FACTORS if to == f.unit]
    return out


CASES = _cases()


def test_every_coded_lab_is_covered():
    names = {name for name, _, _ in CASES}
    assert {"bilirubin_mg_dl", "albumin_g_dl", "platelets_10e9_l", "cea_ng_ml"} <= names, names
    assert {source for _, _, source in CASES} - {f.unit for f in c.FEATURES} <= set(TABULAR_AS_UCUM)


@pytest.mark.parametrize("name, loinc, source", CASES)
def test_a_value_reaches_the_model_as_the_same_number_on_both_paths(name, loinc, source):
    feature = c.BY_NAME[name]
    target = feature.example  # a valid value in the contract's unit
    sent = target / UNIT_FACTORS[(feature.unit, source)]  # the same value in the source unit
    tabular = convert(sent, source, feature.unit)
    ucum = TABULAR_AS_UCUM.get(source) or CONTRACT_UCUM[source]
    fhir = map_resources([quantity_obs("o1", "p1", "http://loinc.org", loinc, sent, ucum)]).record[name]
    assert tabular == pytest.approx(target, rel=1e-9)
    # the FHIR card rounds to clinical precision; bilirubin's molar mass gives the conventional 17.1
    assert fhir == pytest.approx(target, rel=2e-3), (name, source, sent, fhir)


@pytest.mark.parametrize("name, loinc, source", CASES)
def test_ucum_factor_equals_the_tabular_factor(name, loinc, source):
    feature = c.BY_NAME[name]
    code = next(code for code in feature.codes if code.code == loinc)
    ucum = TABULAR_AS_UCUM.get(source) or CONTRACT_UCUM[source]
    assert factor_to_contract(ucum, feature.unit, code.molar_mass) == pytest.approx(
        UNIT_FACTORS[(feature.unit, source)], rel=1e-6)
