"""The coarse-form rules built and applied directly (the contract builds its rules at import, before any
test runs, so these call the builders themselves), at their cut-offs (docs/MUTATION.md)."""

from __future__ import annotations

import math

import pytest

from feature_store.derivations import TBS_BANDS, numbers, tbs_band, threshold


@pytest.mark.parametrize("op, cut, expected", [(">", 200, [False, False, True, None]),
                                               (">=", 20, [False, True, True, None]),
                                               ("<", 12, [True, False, False, None])])
def test_a_threshold_rule_at_its_cut_off_and_without_a_value(op, cut, expected):
    rule = threshold("cea_ng_ml", op, cut)
    assert rule.sources == ("cea_ng_ml",) and rule.rule == f"cea_ng_ml {op} {cut:g}"
    values = [cut - 0.5, cut, cut + 0.5, None]
    assert list(rule.compute({"cea_ng_ml": values}, 4)) == expected


def test_a_threshold_rule_on_a_cohort_without_its_column_is_all_missing():
    assert list(threshold("cea_ng_ml", ">", 200).compute({"age_years": [60, 70]}, 2)) == [None, None]


def test_tumour_burden_bands_at_three_and_nine():
    cols = {"largest_metastasis_cm": [2.9, 3.0, 8.9, 9.0, 5.0, None], "n_liver_metastases": [0, 0, 0, 0, 0, 2]}
    assert list(tbs_band(cols, 6)) == [TBS_BANDS[0], TBS_BANDS[1], TBS_BANDS[1], TBS_BANDS[2], TBS_BANDS[1], None]
    assert list(tbs_band({"n_liver_metastases": [3]}, 1)) == [None]  # size not recorded: no band


def test_numbers_are_floats_with_nan_for_missing_and_for_an_absent_column():
    out = numbers({"x": [1, None, 2.5]}, "x", 3)
    assert out[0] == 1.0 and math.isnan(out[1]) and out[2] == 2.5
    assert all(math.isnan(v) for v in numbers({"x": [1]}, "y", 2))
