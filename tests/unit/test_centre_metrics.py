"""Per-centre figures with standard errors (checked against independent computations) and the table that
lists every centre."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from sklearn.metrics import roc_auc_score

from training.centre_metrics import calibration_with_se, centre_row, delong_auroc, pooled_table


def _data(n=300, seed=1):
    rng = np.random.default_rng(seed)
    lp = rng.normal(-1, 1.2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.3 + 0.8 * lp)))).astype(int)
    return y, 1 / (1 + np.exp(-lp))


def test_delong_matches_the_pairwise_definition():
    y, p = _data(120)
    auc, se = delong_auroc(y, p)
    assert auc == pytest.approx(roc_auc_score(y, p))
    pos, neg = p[y == 1], p[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])  # DeLong 1988, by brute force
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    var = v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)
    assert se == pytest.approx(np.sqrt(var), rel=1e-10)


def test_calibration_intercept_and_slope_with_standard_errors_match_statsmodels():
    y, p = _data()
    lp = np.log(p / (1 - p))
    got = calibration_with_se(y, p)
    slope = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit()
    citl = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=lp).fit()
    assert got["calibration_slope"] == pytest.approx(slope.params[1], rel=1e-4)
    assert got["slope_se"] == pytest.approx(slope.bse[1], rel=1e-4)
    assert got["calibration_intercept"] == pytest.approx(citl.params[0], rel=1e-4)
    assert got["intercept_se"] == pytest.approx(citl.bse[0], rel=1e-4)


def test_small_centres_are_listed_with_why_never_dropped():
    y, p = _data()
    rows = [centre_row("A", y, p), centre_row("B", y[:40], p[:40]), centre_row("tiny", [1, 0, 0, 0], [.2, .3, .1, .2])]
    assert "too few of one outcome" in rows[2]["too_small"]
    table = pooled_table(rows, "test")
    assert [r["centre"] for r in table["centres"]] == ["A", "B", "tiny"]
    assert table["too_small"][0]["centre"] == "tiny" and table["pooled"]["AUROC"]["k"] == 2
    assert rows[0]["auroc_ci_low"] < rows[0]["auroc"] < rows[0]["auroc_ci_high"]
