"""Random-effects pooling against a published worked example: the BCG vaccine trials (Colditz et al., JAMA
1994), log relative risks computed here from the 13 trials' 2x2 tables, as in metafor's `dat.bcg`
(Viechtbauer, J Stat Softw 2010). metafor reports: DerSimonian-Laird tau^2 0.3088, estimate -0.7141 (SE
0.1787), Q 152.23, I^2 92.12%; REML tau^2 0.3132, estimate -0.7145 (SE 0.1798), 95% CI -1.0669 to -0.3622.
statsmodels' independent DerSimonian-Laird implementation is checked too."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects

from training.meta_analysis import pool, pool_auroc

# tpos, tneg, cpos, cneg per trial
BCG = [(4, 119, 11, 128), (6, 300, 29, 274), (3, 228, 11, 209), (62, 13536, 248, 12619), (33, 5036, 47, 5761),
       (180, 1361, 372, 1079), (8, 2537, 10, 619), (505, 87886, 499, 87892), (29, 7470, 45, 7232),
       (17, 1699, 65, 1600), (186, 50448, 141, 27197), (5, 2493, 3, 2338), (27, 16886, 29, 17825)]


def _bcg() -> tuple[np.ndarray, np.ndarray]:
    t = np.array(BCG, float)
    yi = np.log((t[:, 0] / (t[:, 0] + t[:, 1])) / (t[:, 2] / (t[:, 2] + t[:, 3])))
    vi = 1 / t[:, 0] - 1 / (t[:, 0] + t[:, 1]) + 1 / t[:, 2] - 1 / (t[:, 2] + t[:, 3])
    return yi, vi


def test_dersimonian_laird_matches_metafor_and_statsmodels():
    yi, vi = _bcg()
    p = pool(yi, np.sqrt(vi), method="DL")
    assert p.tau2 == pytest.approx(0.3088, abs=1e-4) and p.estimate == pytest.approx(-0.7141, abs=1e-4)
    assert p.se == pytest.approx(0.1787, abs=1e-4) and p.q == pytest.approx(152.2330, abs=1e-3)
    assert p.i2 == pytest.approx(0.9212, abs=1e-4)
    sm = combine_effects(yi, vi, method_re="dl")
    assert p.tau2 == pytest.approx(sm.tau2, rel=1e-8)
    assert p.estimate == pytest.approx(sm.mean_effect_re, rel=1e-8) and p.se == pytest.approx(sm.sd_eff_w_re, rel=1e-8)


def test_reml_matches_metafor_and_the_prediction_interval_uses_t_on_k_minus_2():
    yi, vi = _bcg()
    p = pool(yi, np.sqrt(vi))
    assert p.method == "REML" and p.tau2 == pytest.approx(0.3132, abs=1e-4)
    assert p.estimate == pytest.approx(-0.7145, abs=1e-4) and p.se == pytest.approx(0.1798, abs=1e-4)
    assert (p.ci_low, p.ci_high) == (pytest.approx(-1.0669, abs=1e-4), pytest.approx(-0.3622, abs=1e-4))
    half = stats.t.ppf(0.975, 13 - 2) * math.sqrt(p.tau2 + p.se ** 2)  # Riley, Higgins & Deeks, BMJ 2011
    assert (p.pi_low, p.pi_high) == (pytest.approx(p.estimate - half), pytest.approx(p.estimate + half))
    assert p.pi_low < -1.8666 and p.pi_high > 0.4376  # wider than metafor's z-based interval (-1.8666, 0.4376)


def test_homogeneous_centres_have_no_heterogeneity_and_few_centres_no_prediction_interval():
    same = pool([0.1, 0.1, 0.1, 0.1], [0.2, 0.3, 0.25, 0.2])
    assert same.tau2 == 0 and same.i2 == 0 and same.estimate == pytest.approx(0.1)
    two = pool([0.1, 0.5], [0.1, 0.1])
    assert two.pi_low is None and "three" in two.note
    one = pool([0.3], [0.1])
    assert one.k == 1 and one.pi_low is None and "one centre" in one.note
    assert pool([], []).k == 0


def test_auroc_is_pooled_on_the_logit_scale_and_back_transformed():
    out = pool_auroc([0.7, 0.75, 0.8], [0.2, 0.2, 0.2])
    assert 0.7 < out["estimate"] < 0.8 and out["ci_low"] < out["estimate"] < out["ci_high"] < 1
    assert out["pi_low"] < out["ci_low"] and out["scale"].startswith("pooled on the logit scale")

    # every bound is an AUROC: each is the back-transform of its logit-scale bound, inside (0, 1)
    on_logit = pool([math.log(a / (1 - a)) for a in (0.6, 0.75, 0.9)], [0.2, 0.2, 0.2])
    wide = pool_auroc([0.6, 0.75, 0.9], [0.2, 0.2, 0.2])
    for key in ("estimate", "ci_low", "ci_high", "pi_low", "pi_high"):
        assert wide[key] == pytest.approx(1 / (1 + math.exp(-getattr(on_logit, key))), rel=1e-12), key
        assert 0 < wide[key] < 1, key
