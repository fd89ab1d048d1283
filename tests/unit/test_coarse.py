"""Coarse forms: derivation written once in the contract, fine values win, either form satisfies."""

import numpy as np
import pandas as pd
import pytest

from feature_store import contract as c
from feature_store.coarse import derive_coarse, required_text, satisfies
from training.data import choose_features
from training.evaluate import calibration_intercept_slope
from training.settings import TrainSettings


def test_each_coarse_form_follows_its_rule_and_missing_stays_missing():
    cols = {"n_liver_metastases": [1, 2, 5, None], "largest_metastasis_cm": [5.0, 5.1, 1.0, 2.0],
            "cea_ng_ml": [200.0, 200.1, 20.0, None], "disease_free_interval_months": [11.9, 12.0, None, 0]}
    names = [f.name for f in c.FEATURES if f.coarse]
    out, conflicts = derive_coarse(cols, names)
    assert conflicts == {}
    assert list(out["multiple_liver_metastases"]) == [False, True, True, None]
    assert list(out["more_than_4_liver_metastases"]) == [False, False, True, None]
    assert list(out["largest_metastasis_over_5cm"]) == [False, True, False, False]
    assert list(out["cea_over_200"]) == [False, True, False, None]
    assert list(out["cea_20_or_more"]) == [True, True, True, None]
    assert list(out["disease_free_interval_under_12_months"]) == [True, False, None, True]
    # TBS = sqrt(5^2 + 1^2) = 5.1; sqrt(5.1^2 + 2^2) = 5.5; sqrt(1 + 25) = 5.1; count missing
    assert list(out["tumour_burden_band"]) == ["3_to_8", "3_to_8", "3_to_8", None]


def test_the_fine_value_wins_and_a_contradiction_is_reported():
    cols = {"n_liver_metastases": [3, None, 1], "multiple_liver_metastases": [False, True, True]}
    out, conflicts = derive_coarse(cols, ["multiple_liver_metastases"])
    assert list(out["multiple_liver_metastases"]) == [True, True, False]  # row 1 keeps the recorded flag
    assert conflicts == {"multiple_liver_metastases": [0, 2]}


def test_either_form_satisfies_a_required_coarse_input():
    cols = {"n_liver_metastases": [3, None, None], "multiple_liver_metastases": [None, True, None]}
    assert list(satisfies("multiple_liver_metastases", cols)) == [True, True, False]
    assert "or n_liver_metastases" in required_text("multiple_liver_metastases")


def test_example_record_coarse_values_agree_with_the_fine_ones():
    example = c.example_record(c.feature_names())
    _, conflicts = derive_coarse({k: [v] for k, v in example.items()}, [f.name for f in c.FEATURES if f.coarse])
    assert conflicts == {}


def _frame(n_missing_share: float) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 200
    count = rng.integers(1, 9, n).astype(float)
    flag = count > 1
    count[: int(n * n_missing_share)] = np.nan  # the registry added the count later
    return pd.DataFrame({"age_years": rng.normal(60, 8, n), "n_liver_metastases": count,
                         "multiple_liver_metastases": pd.array(flag, dtype="boolean"),
                         "progression": rng.random(n) < 0.3})


def test_both_forms_recorded_keeps_the_more_complete():
    settings = TrainSettings()
    half = choose_features(_frame(0.45), None, settings)
    assert "multiple_liver_metastases" in half.features and "n_liver_metastases" not in half.features
    assert any(s["feature"] == "n_liver_metastases" and "used instead" in s["reason"] for s in half.skipped)
    assert "multiple_liver_metastases" in half.required  # it stands for the required count
    full = choose_features(_frame(0.0), None, settings)
    assert "n_liver_metastases" in full.features and "multiple_liver_metastases" not in full.features


def test_separated_predictions_have_no_slope_rather_than_a_huge_one():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.01, 0.02, 0.03, 0.97, 0.98, 0.99])
    _, slope = calibration_intercept_slope(y, p)
    assert np.isnan(slope)
    _, ok = calibration_intercept_slope(np.array([0, 1, 0, 1, 1, 0, 0, 1]),
                                        np.array([0.2, 0.7, 0.4, 0.6, 0.3, 0.5, 0.1, 0.8]))
    assert ok == pytest.approx(ok) and np.isfinite(ok)


def test_a_requested_coarse_form_is_derived_and_exclusions_are_listed():
    frame = _frame(0.0).assign(degree_hypertrophy_pp=5.0)
    choice = choose_features(frame, ["age_years", "multiple_liver_metastases"], TrainSettings())
    assert choice.features == ["age_years", "multiple_liver_metastases"]
    reasons = {s["feature"]: s["reason"] for s in choice.skipped}
    assert reasons["n_liver_metastases"] == "not among --features"
    assert reasons["degree_hypertrophy_pp"].startswith("known only after PVE")


def test_a_recorded_flag_is_kept_where_another_item_settles_nothing():
    cols = {"disease_free_interval_under_12_months": [False, None], "synchronous_metastases": [False, True]}
    out, _ = derive_coarse(cols, ["disease_free_interval_under_12_months"])
    assert list(out["disease_free_interval_under_12_months"]) == [False, True]


def test_a_coarse_form_without_its_source_or_rule_is_left_alone():
    out, conflicts = derive_coarse({"age_years": [60.0]}, ["multiple_liver_metastases", "age_years"])
    assert out == {"age_years": [60.0]} and conflicts == {}


def test_a_frames_columns_come_back_by_position_whatever_its_index():
    frame = pd.DataFrame({"age_years": [60.0, 70.0], "n_liver_metastases": [1, 5]}, index=[10, 11])
    out, _ = derive_coarse(frame, ["multiple_liver_metastases"])
    assert out["age_years"][0] == 60.0 and list(out["multiple_liver_metastases"]) == [False, True]


def test_an_input_is_satisfied_by_its_own_value_or_by_its_fine_source_alone():
    assert list(satisfies("age_years", {"age_years": [60.0, None]})) == [True, False]
    assert list(satisfies("multiple_liver_metastases", {"n_liver_metastases": [3, None]})) == [True, False]
    assert required_text("age_years") == "age_years"
    assert required_text("tumour_burden_band") == ("tumour_burden_band (or n_liver_metastases, largest_metastasis_cm, "
                                                   "from which it derives)")
