"""Model updating at a new centre: the closed testing procedure (Vergouwe et al. 2017) picks the simplest
update not significantly worse than the most extensive one."""

from __future__ import annotations

import numpy as np
import pytest

from model_runtime.calibration import apply_calibration
from training.updating import IN_THE_LARGE, LOGISTIC, ORIGINAL, REFIT, closed_test, cross_validated, refit_allowed


def _centre(n: int, intercept: float, slope: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    lp = rng.normal(-1, 1.3, n)
    p = 1 / (1 + np.exp(-lp))
    y = (rng.random(n) < 1 / (1 + np.exp(-(intercept + slope * lp)))).astype(int)
    return y, p


@pytest.mark.parametrize("intercept, slope, expected", [
    (0.0, 1.0, ORIGINAL),        # the model fits the centre: no update
    (0.9, 1.0, IN_THE_LARGE),    # a higher base rate only
    (0.2, 0.45, LOGISTIC),       # over-confident there: the slope too
])
def test_the_closed_test_picks_the_simplest_adequate_update(intercept, slope, expected):
    y, p = _centre(1500, intercept, slope)
    test = closed_test(y, p)
    assert test.chosen == expected, test.reason
    assert test.tests[0]["simpler"] == ORIGINAL and test.tests[0]["against"] == LOGISTIC
    if expected == IN_THE_LARGE:
        assert test.updates[IN_THE_LARGE].intercept == pytest.approx(0.9, abs=0.2)


def test_a_refit_enters_only_as_the_top_model_and_only_with_enough_events():
    y, p = _centre(1500, 0.0, 1.0)
    assert "Refit not considered" in refit_allowed(20, 5, 10, 10)
    assert refit_allowed(200, 300, 10, 10) is None
    test = closed_test(y, p, refit_oof=p, refit_df=11)  # a refit no better than the original
    assert test.chosen == ORIGINAL and all(t["against"] == REFIT for t in test.tests)


def test_an_update_composes_onto_the_model_calibration_as_served():
    y, p = _centre(800, 0.9, 1.0)
    update = closed_test(y, p).updates[IN_THE_LARGE]
    raw = np.array([0.1, 0.3, 0.6])
    spec = {"method": "sigmoid", "a": 1.0, "b": 0.0, "recalibration": update.spec()}
    assert np.allclose(apply_calibration(raw, spec), update.apply(raw))
    assert np.allclose(apply_calibration(raw, {"method": "sigmoid", "a": 1.0, "b": 0.0}), raw)


def test_cross_validated_updates_never_see_the_patient_they_score():
    y, p = _centre(300, 0.9, 1.0)
    cv = cross_validated(y, p, IN_THE_LARGE)
    full = closed_test(y, p).updates[IN_THE_LARGE].apply(p)
    assert not np.allclose(cv, full) and np.corrcoef(cv, full)[0, 1] > 0.99
