"""Random-effects pooling at its edges: no centre, one centre, two, which centres count, I^2 without
heterogeneity, DerSimonian-Laird with large variances, and AUROCs of 1 (docs/MUTATION.md lists the mutants
these tests kill; the published worked example is in test_meta_analysis.py)."""

from __future__ import annotations

import math

import pytest

from training.meta_analysis import _expit, back_transformed, pool, pool_auroc

Z = 1.959963984540054


def test_no_centre_with_an_estimate_gives_nothing_but_says_so():
    for p in (pool([], []), pool([math.nan, 0.3], [0.1, math.inf])):
        assert (p.k, p.pi_low, p.pi_high, p.method, p.note) == (0, None, None, "REML", "no centre with an estimate")
        assert all(math.isnan(x) for x in (p.estimate, p.se, p.ci_low, p.ci_high, p.tau2, p.i2, p.q))


def test_one_centre_is_its_own_estimate_without_heterogeneity():
    p = pool([0.1, 0.2, math.nan, 0.3], [0.2, math.inf, 0.1, 0.0], method="DL")  # only the first counts
    assert (p.k, p.estimate, p.se, p.q, p.pi_low, p.pi_high, p.method) == (1, 0.1, 0.2, 0.0, None, None, "DL")
    assert (p.ci_low, p.ci_high) == pytest.approx((0.1 - Z * 0.2, 0.1 + Z * 0.2), rel=1e-12)
    assert math.isnan(p.tau2) and math.isnan(p.i2)
    assert p.note == "one centre: no heterogeneity and no prediction interval can be estimated"


def test_two_centres_have_no_prediction_interval_and_three_have_one():
    two = pool([0.1, 0.3], [0.1, 0.1])
    assert two.k == 2 and two.pi_low is None and two.note == ("two centres: no prediction interval (t with k-2 "
                                                              "degrees of freedom needs three)")
    three = pool([0.1, 0.3, 0.2], [0.1, 0.1, 0.1])
    assert three.k == 3 and three.note == "" and three.pi_low < three.estimate < three.pi_high


def test_identical_centres_have_no_heterogeneity():
    p = pool([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])  # exact in binary: Q is exactly 0
    assert (p.q, p.i2, p.tau2) == (0.0, 0.0, 0.0)


def test_dersimonian_laird_with_large_variances():
    # w = 0.01 each: Q = 50, c = 0.01, tau^2 = (Q - 1) / c
    assert pool([0.0, 100.0], [10.0, 10.0], method="DL").tau2 == pytest.approx(4900.0)


def test_an_unknown_method_is_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown method 'ML' \(DL or REML\)"):
        pool([0.1, 0.2], [0.1, 0.1], method="ML")


def test_aurocs_of_one_are_pooled_and_the_method_is_passed_on():
    out = pool_auroc([1.0, 0.8, 0.75], [0.5, 0.3, 0.3], method="DL")
    assert out["method"] == "DL" and 0.8 < out["estimate"] < 1.0 and math.isfinite(out["ci_high"])
    assert out["scale"] == "pooled on the logit scale, back-transformed"


def test_back_transforming_skips_what_is_missing_or_undefined():
    out = back_transformed(pool([0.5], [0.1]), lambda x: x + 1)  # the PI is None, tau^2 NaN
    assert out["estimate"] == 1.5 and out["pi_low"] is None and out["pi_high"] is None
    nan = back_transformed(pool([], []), lambda x: x + 1)
    assert math.isnan(nan["estimate"])
    assert _expit(None) is None and _expit(0.0) == 0.5
