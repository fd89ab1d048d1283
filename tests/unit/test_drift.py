"""PSI, the score histogram and its quantiles, the drift flags at their thresholds, and `compare` (what the
service exports and the drift report renders), worked by hand on tiny inputs (docs/MUTATION.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from feature_store.encoding import encode_array
from monitoring import profile as pr

FEATURES = ["age_years", "ras_status"]


def test_psi_by_hand_and_nan_when_either_side_is_empty():
    expected = 2 * (20 / 41) * math.log(30.5 / 10.5)  # shares smoothed with 0.5 per bin
    assert pr.psi(np.array([10, 30]), np.array([30, 10])) == pytest.approx(expected, rel=1e-12)
    assert pr.psi([10, 30], [30, 10], alpha=1.0) == pytest.approx(2 * (20 / 42) * math.log(31 / 11), rel=1e-12)
    assert math.isnan(pr.psi([0, 0], [1, 2])) and math.isnan(pr.psi([1, 2], [0, 0]))


def test_scores_fall_into_hundredths_with_the_ends_in_the_end_bins():
    counts = pr.score_counts(np.array([0.0, 0.005, 0.01, 0.999, 1.0, -0.2]))
    assert len(counts) == 100 and counts[0] == 3 and counts[1] == 1 and counts[99] == 2 and counts.sum() == 6


def test_quantiles_interpolate_within_a_bin():
    fine = np.zeros(100)
    fine[20], fine[60] = 10, 10
    assert pr.quantiles(fine, [0.0, 0.25, 0.5, 0.75, 1.0]) == pytest.approx([0.0, 0.205, 0.21, 0.605, 0.61])
    assert pr.quantiles(np.r_[np.zeros(99), 4.0], [0.5]) == pytest.approx([0.995])  # the last bin
    empty = pr.quantiles(np.zeros(100), [0.1, 0.9])
    assert len(empty) == 2 and all(math.isnan(v) for v in empty)


@pytest.mark.parametrize("d, flag", [
    ({"n": 100, "psi": 0.21, "missing_share": 0.1, "reference_missing_share": 0.1}, 1),
    ({"n": 99, "psi": 0.9, "missing_share": 0.9, "reference_missing_share": 0.1}, 0),
    ({"n": 100, "psi": 0.2, "missing_share": 0.25, "reference_missing_share": 0.1}, 0),
    ({"n": 100, "psi": 0.0, "missing_share": 0.26, "reference_missing_share": 0.1}, 1),
    ({"n": 100, "psi": 0.0, "missing_share": 0.0, "reference_missing_share": 0.16}, 1),
])
def test_drift_is_flagged_beyond_a_threshold_with_enough_patients(d, flag):
    assert pr.drift_flags({"x": d}, pr.DriftThresholds()) == {"x": flag}


@pytest.fixture
def profile():
    ages = list(np.linspace(30, 80, 40)) + [None] * 10
    X = encode_array({"age_years": ages, "ras_status": ["mutant", "wild_type"] * 25}, FEATURES)
    return pr.build_profile(X, FEATURES, np.linspace(0.05, 0.6, 50), source={"run_id": "r1"})


def test_compare_reports_each_feature_and_the_score_against_the_reference(profile):
    binner = pr.Binner(profile)
    X = encode_array({"age_years": [85.0] * 30 + [None] * 5, "ras_status": ["mutant"] * 35}, FEATURES)
    window, fine = binner.counts(X), pr.score_counts(np.full(35, 0.7))
    t = pr.DriftThresholds(min_patients=30)
    out = pr.compare(profile, window, fine, t)
    age = out["features"]["age_years"]
    assert age["drift"] == 1 and age["bins"] == binner.labels("age_years") and age["bins"][-1] == pr.MISSING
    assert age["window_counts"] == window[binner.slice("age_years")].tolist()
    assert age["reference_counts"] == [*profile["features"]["age_years"]["counts"], 10]
    assert age["psi"] == binner.drift(window)["age_years"]["psi"] and age["n"] == 35
    assert out["score_psi"] == pr.psi(binner.coarse_scores(profile["score"]["fine_counts"]), binner.coarse_scores(fine))
    assert out["score_psi"] > 1
    assert out["score_quantiles"] == {"0.1": pytest.approx(0.701), "0.25": pytest.approx(0.7025),
                                      "0.5": pytest.approx(0.705), "0.75": pytest.approx(0.7075),
                                      "0.9": pytest.approx(0.709)}
    assert out["score_fine_counts"] == fine.tolist() and out["reference_score_fine_counts"] == profile["score"][
        "fine_counts"]
    assert out["thresholds"] == {"psi": 0.2, "missing_share_change": 0.15, "min_patients": 30}
    assert out["reference"] == {"n": 50, "run_id": "r1"}


def test_compare_without_reference_scores_has_no_score_psi(profile):
    del profile["score"]
    binner = pr.Binner(profile)
    out = pr.compare(profile, binner.counts(np.empty((0, binner.total))), np.zeros(100), pr.DriftThresholds())
    assert out["score_psi"] is None and out["features"]["ras_status"]["drift"] == 0
    assert all(math.isnan(v) for v in out["score_quantiles"].values())
