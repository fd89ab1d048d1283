"""What the real registry showed (issue: many centres, few patients each), as pure-function checks: each
of these failed on the code before the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_store.coarse import derive_coarse
from feature_store.scores import fong_crs, why_not_computed
from feature_store.study import StudyDesign, prediction_time_text, question_note
from model_runtime.bands import LEGACY, derive_bands, resolve_bands
from training import evaluate as ev
from training.registry import eligibility
from training.settings import TrainSettings


def test_a_constant_prediction_has_its_undefined_slope_explained_in_the_gate_reason():
    y = np.array([0, 1] * 20)
    p = np.full(40, 0.4)
    metrics = {**ev.core_metrics(y, p), "auroc_ci_low": 0.4}
    assert np.isnan(metrics["calibration_slope"])
    note = ev.slope_undefined_reason(y, p)
    assert note and "same risk" in note
    reason = eligibility(metrics, TrainSettings(), note)
    assert "nan" not in reason and "same risk" in reason


def test_separated_predictions_have_their_own_explanation():
    y = np.array([0] * 10 + [1] * 10)
    p = np.r_[np.linspace(0.05, 0.2, 10), np.linspace(0.6, 0.9, 10)]
    assert "separate events from non-events perfectly" in ev.slope_undefined_reason(y, p)
    assert ev.slope_undefined_reason(y, np.r_[p[5:15], p[:5], p[15:]]) is None  # overlapping: a slope exists


def test_synchronous_metastases_settle_the_fong_interval_item():
    frame = pd.DataFrame({"node_positive_primary": [True, True], "synchronous_metastases": [True, False],
                          "multiple_liver_metastases": [True, True], "largest_metastasis_over_5cm": [False, False],
                          "cea_over_200": [False, False]})
    filled, _ = derive_coarse(frame, ["disease_free_interval_under_12_months"])
    assert list(filled["disease_free_interval_under_12_months"]) == [True, None]
    fong = fong_crs(frame)
    assert fong[0] == 3 and np.isnan(fong[1])  # a metachronous one settles nothing
    assert "disease-free interval under 12 months (1 of 2 patients)" in why_not_computed(frame, "fong_crs")


def test_a_score_that_cannot_be_computed_names_the_missing_item():
    frame = pd.DataFrame({"node_positive_primary": [True], "multiple_liver_metastases": [True],
                          "largest_metastasis_cm": [3.0], "cea_ng_ml": [5.0]})
    why = why_not_computed(frame, "fong_crs")
    assert why.startswith("disease-free interval under 12 months not recorded")
    assert "RAS mutation" in why_not_computed(frame, "m_crs")


def test_the_moment_the_inputs_describe_is_stated_and_noted_when_it_is_not_the_pve_decision():
    at_resection = StudyDesign(population="pve_only", outcome="progression_before_resection", prediction_time="resection")
    assert "inputs describe the time of resection" in question_note(at_resection)
    assert prediction_time_text(at_resection.stated()).startswith("the time of resection")
    assert prediction_time_text({}).startswith("not stated")
    assert prediction_time_text({"prediction_time": "pve_decision"}) == "the PVE decision"
    assert question_note(StudyDesign(population="pve_only", outcome="progression_before_resection",
                                     prediction_time="pve_decision")) is None


@pytest.mark.parametrize("rate, low, high", [(0.25, 0.15, 0.35), (0.415, 0.25, 0.58), (0.05, 0.03, 0.07)])
def test_bands_follow_the_training_outcome_rate(rate, low, high):
    bands = derive_bands(rate)
    assert (bands["low_below"], bands["high_from"]) == (low, high)
    served = resolve_bands({"risk_bands": bands})
    assert served.source == "model" and served.thresholds() == {"low_below": low, "high_from": high}


def test_models_trained_before_keep_their_bands_and_a_deployment_still_overrides():
    legacy = resolve_bands({})
    assert (legacy.low_below, legacy.high_from) == LEGACY and legacy.source == "default"
    forced = resolve_bands({"risk_bands": derive_bands(0.415)}, 0.1, 0.2)
    assert (forced.low_below, forced.high_from, forced.source) == (0.1, 0.2, "deployment")
    with pytest.raises(ValueError, match="must be below"):
        resolve_bands({"risk_bands": derive_bands(0.415)}, 0.7, None)
