"""Unit conversion on both paths, computed afresh (the factor cache is emptied around each test, so a
factor is worked out here and not remembered from an earlier test): the tabular factors, UCUM codes and
annotations, the display strings EHRs send, molar masses, and the registry built once (docs/MUTATION.md)."""

from __future__ import annotations

import pytest

from feature_store import units


@pytest.fixture(autouse=True)
def fresh_factors():
    units._factor.cache_clear()
    yield
    units._factor.cache_clear()


def test_the_tabular_path_multiplies_by_the_exact_factor_and_refuses_an_unknown_pair():
    assert units.convert(25.0, "mm", "cm") == 2.5
    assert units.convert(3.0, "umol/L", "mg/dL") == 3.0 / 17.1
    with pytest.raises(KeyError):
        units.convert(1.0, "inch", "cm")


def test_ucum_codes_convert_and_annotations_alone_are_one():
    assert units.factor_to_contract("mm", "cm") == 0.1
    assert units.factor_to_contract("ug/L", "ng/mL") == 1.0  # exactly 1, not 0.9999999999999999
    assert units.factor_to_contract("{INR}", "ratio") == 1.0
    assert units._factor("{cells}", "1", None) == 1.0  # an annotation without an alias entry: 1 all the same
    assert units._factor("mg{dose}", "g", None) == 0.001  # an annotation beside a unit is only a note
    assert units._factor("{a}{b}", "1", None) is None  # two annotations are not the annotation-only code
    assert units.factor_to_contract("kg", "cm") is None and units.factor_to_contract("mm", "no such unit") is None


def test_display_strings_convert_through_their_alias_whatever_their_spacing_and_case():
    assert units.factor_to_contract("K/uL", "10^9/L") == 1.0  # "K" alone would be kelvin
    assert units.factor_to_contract("x10E3 / uL", "10^9/L") == 1.0
    assert units.factor_to_contract("µmol/L", "mg/dL", 584.66) == 0.058466  # bilirubin, with its molar mass
    assert units.factor_to_contract("µmol/L", "mg/dL") is None  # amount to mass needs the molar mass


def test_the_quantity_unit_is_its_code_under_ucum_else_an_alias_else_as_sent():
    assert units.ucum_for("mg/dL", "whatever", True) == "mg/dL"
    assert units.ucum_for("mg/dl", None, False) == "mg/dL"  # a code from another system is looked up
    assert units.ucum_for(None, "K/uL", True) == "10*3/uL"  # no code: the display, even under UCUM
    assert units.ucum_for(None, "mg / dl", False) == "mg/dL"
    assert units.ucum_for("abc", None, False) == "abc" and units.ucum_for(None, "xyz", False) == "xyz"
    assert units.ucum_for(None, None, False) is None


def test_the_registry_is_built_once_and_warm_fills_the_common_factors(monkeypatch):
    monkeypatch.setattr(units, "_registry", None)
    registry = units._ureg()
    assert registry is not None and units._ureg() is registry
    units.warm()
    pairs = len(set(units.DISPLAY_ALIASES.values())) * len(set(units.CONTRACT_UCUM.values()))
    assert units._factor.cache_info().currsize == pairs
    assert units._factor("10*3/uL", "10*9/L", None) == 1.0
