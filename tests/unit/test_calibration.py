"""The calibration map a model carries, worked by hand: none, isotonic, sigmoid, a recalibration on top,
and the clipping that keeps the logit finite (docs/MUTATION.md lists the mutants these tests kill)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model_runtime.calibration import EPS, apply_calibration, logit


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@pytest.mark.parametrize("spec", [None, {}, {"method": "none"}])
def test_no_calibration_returns_the_raw_risks_as_floats(spec):
    out = apply_calibration([0, 1, 0.25], spec)
    assert out.dtype == np.float64 and out.tolist() == [0.0, 1.0, 0.25]
    assert apply_calibration(np.array([0, 1]), spec).dtype == np.float64  # integer input: risks are floats


def test_isotonic_interpolates_between_its_points_and_clips_outside():
    spec = {"method": "isotonic", "x": [0.2, 0.6, 0.8], "y": [0.1, 0.3, 0.9]}
    assert apply_calibration(np.array([0.0, 0.4, 0.7, 1.0]), spec) == pytest.approx([0.1, 0.2, 0.6, 0.9])


def test_sigmoid_is_a_times_the_logit_plus_b():
    spec = {"method": "sigmoid", "a": 2.0, "b": 0.5}
    assert apply_calibration(np.array([0.5, 0.8]), spec) == pytest.approx(
        [_sigmoid(0.5), _sigmoid(2.0 * math.log(4.0) + 0.5)], rel=1e-12)


def test_an_unknown_method_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown calibration method 'platt'"):
        apply_calibration(np.array([0.5]), {"method": "platt"})


def test_a_recalibration_is_applied_on_the_logit_after_the_map():
    spec = {"method": "sigmoid", "a": 1.0, "b": 0.0, "recalibration": {"intercept": 0.3, "slope": 0.8}}
    assert apply_calibration(np.array([0.5, 0.8]), spec) == pytest.approx(
        [_sigmoid(0.3), _sigmoid(0.3 + 0.8 * math.log(4.0))], rel=1e-12)
    assert apply_calibration(np.array([0.5]), {"method": "none", "recalibration": {}}).tolist() == [0.5]


def test_a_recalibration_starts_from_the_calibrated_risk_not_the_raw_score():
    # a centre's update is fitted on the risks the model served (after its map): with a map that moves
    # them, applying it to the raw score moves a served risk by about 12 points (found by a review)
    spec = {"method": "sigmoid", "a": 0.7, "b": -0.6, "recalibration": {"intercept": 0.3, "slope": 0.8}}
    calibrated = [_sigmoid(0.7 * math.log(p / (1 - p)) - 0.6) for p in (0.5, 0.8)]
    expected = [_sigmoid(0.3 + 0.8 * math.log(q / (1 - q))) for q in calibrated]
    assert apply_calibration(np.array([0.5, 0.8]), spec) == pytest.approx(expected, rel=1e-12)
    assert apply_calibration(np.array([0.5]), spec)[0] == pytest.approx(0.4551, abs=1e-4)


def test_the_logit_of_zero_and_one_is_clipped_to_a_finite_value():
    edge = math.log(EPS / (1 - EPS))
    assert logit(np.array([0, 1, 0.5])).tolist() == pytest.approx([edge, -edge, 0.0], rel=1e-9)
    assert logit([EPS / 2, 1 - EPS / 2]).tolist() == pytest.approx([edge, -edge], rel=1e-9)
