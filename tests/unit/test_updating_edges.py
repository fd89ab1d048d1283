"""Model updating at its edges: the log-likelihood by hand, updates that cannot be fitted, the folds of the
cross-validated update with few events, and the closed test's degrees of freedom, threshold and reason, word
for word (docs/MUTATION.md lists the mutants these tests kill)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.updating import (IN_THE_LARGE, LOGISTIC, ORIGINAL, REFIT, Update, _reason, closed_test,
                               cross_validated, fit_update, loglik, refit_allowed)


def _centre(n: int, intercept: float, slope: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    lp = rng.normal(-1, 1.3, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(intercept + slope * lp)))).astype(int)
    return y, 1 / (1 + np.exp(-lp))


def test_the_log_likelihood_by_hand_and_clipped_at_certain_risks():
    assert loglik([1, 0], [0.8, 0.25]) == pytest.approx(math.log(0.8) + math.log(0.75), rel=1e-12)
    assert loglik([1, 0], [0.0, 1.0]) == pytest.approx(math.log(1e-12) + math.log(1 - (1 - 1e-12)), rel=1e-12)


def test_each_update_says_what_it_is_and_its_parameters():
    y, p = _centre(400, 0.5, 1.0)
    large, logistic = fit_update(y, p, IN_THE_LARGE), fit_update(y, p, LOGISTIC)
    assert (large.method, large.slope, large.df) == (IN_THE_LARGE, 1.0, 1) and large.intercept > 0.2
    assert (logistic.method, logistic.df) == (LOGISTIC, 2) and logistic.slope != 1.0
    assert fit_update(y, p, ORIGINAL) == Update(ORIGINAL, 0.0, 1.0, 0)


def test_an_update_that_cannot_be_fitted_is_the_identity_with_its_degrees_of_freedom():
    y, p = np.zeros(50, int), np.full(50, 0.3)  # no event: no finite maximum likelihood
    assert fit_update(y, p, IN_THE_LARGE) == Update(IN_THE_LARGE, 0.0, 1.0, 1)
    assert fit_update(y, p, LOGISTIC) == Update(LOGISTIC, 0.0, 1.0, 2)


def test_cross_validated_updates_use_five_seeded_folds_and_fewer_with_few_events():
    y, p = _centre(300, 0.9, 1.0)
    once = cross_validated(y, p, LOGISTIC)
    assert np.array_equal(once, cross_validated(y, p, LOGISTIC, folds=5, seed=0))
    assert not np.allclose(once, cross_validated(y, p, LOGISTIC, folds=6, seed=0))
    rare = np.r_[np.ones(3, int), np.zeros(60, int)]  # 3 events: 3 folds, each with one
    assert cross_validated(rare, np.linspace(0.05, 0.5, 63), IN_THE_LARGE).shape == (63,)
    assert cross_validated(1 - rare, np.linspace(0.05, 0.5, 63), IN_THE_LARGE).shape == (63,)
    two = np.r_[np.ones(2, int), np.zeros(60, int)]  # 2 events: 2 folds
    assert cross_validated(two, np.linspace(0.05, 0.5, 62), IN_THE_LARGE).shape == (62,)
    original = cross_validated(y, list(p), ORIGINAL)
    assert original.dtype == np.float64 and np.array_equal(original, p)


def test_the_closed_test_records_its_tests_likelihoods_and_updates():
    y, p = _centre(1500, 0.0, 1.0)
    test = closed_test(y, p, refit_why_not="Refit not considered: few events")
    first = test.tests[0]
    assert (first["simpler"], first["against"], first["df"]) == (ORIGINAL, LOGISTIC, 2)
    assert first["lr"] == max(0.0, 2 * (test.loglik[LOGISTIC] - test.loglik[ORIGINAL]))
    assert test.loglik[ORIGINAL] == pytest.approx(loglik(y, p), rel=1e-12) and set(test.updates) == {ORIGINAL, IN_THE_LARGE, LOGISTIC}
    assert test.reason == _reason(test.chosen, LOGISTIC, test.tests, "Refit not considered: few events", 0.05)
    at_p = closed_test(y, p, alpha=first["p"])  # a p-value equal to alpha is not significant
    assert at_p.chosen == ORIGINAL


def test_the_top_model_is_chosen_when_every_simpler_one_is_worse_and_a_refit_takes_its_place():
    y, p = _centre(1500, 0.2, 0.45)
    test = closed_test(y, p, refit_why_not="because")
    assert test.chosen == LOGISTIC and test.reason == _reason(LOGISTIC, LOGISTIC, test.tests, "because", 0.05)
    assert test.reason.endswith(". because") and [t["df"] for t in test.tests] == [2, 1]
    assert set(test.loglik) == {ORIGINAL, IN_THE_LARGE, LOGISTIC} and LOGISTIC in test.updates
    refit = closed_test(y, p, refit_oof=np.clip(p * 0.5, 0.01, 0.99))
    assert refit.updates[REFIT] == Update(REFIT, df=0) and refit.tests[0]["df"] == 0
    assert refit.loglik[REFIT] == loglik(y, np.clip(p * 0.5, 0.01, 0.99))
    with_df = closed_test(y, p, refit_oof=p, refit_df=11)
    assert with_df.updates[REFIT] == Update(REFIT, df=11) and with_df.tests[0]["df"] == 11


def test_the_reason_word_for_word():
    tests = [{"simpler": ORIGINAL, "against": LOGISTIC, "lr": 12.345, "df": 2, "p": 0.0021},
             {"simpler": IN_THE_LARGE, "against": LOGISTIC, "lr": 7.1, "df": 1, "p": 0.0077}]
    assert _reason(LOGISTIC, LOGISTIC, tests, "", 0.05) == (
        "every simpler method is significantly worse than logistic recalibration (alpha 0.05): original (no update) "
        "vs logistic recalibration: LR 12.35 on 2 df, p = 0.002; recalibration in the large vs logistic "
        "recalibration: LR 7.10 on 1 df, p = 0.008")
    assert _reason(IN_THE_LARGE, LOGISTIC, tests[:1], "Refit not considered: few events", 0.05) == (
        "recalibration in the large is not significantly worse than logistic recalibration (alpha 0.05): original "
        "(no update) vs logistic recalibration: LR 12.35 on 2 df, p = 0.002. Refit not considered: few events")


def test_a_refit_is_considered_from_exactly_enough_events_per_input():
    assert refit_allowed(100, 200, 10, 10) is None
    assert refit_allowed(99, 200, 10, 10) == ("Refit not considered: 99 patients of the rarer outcome for 10 model "
                                              "inputs (10 per input, 100, needed to re-estimate the model)")
    # the rarer outcome may be the non-events (a centre whose rate is above 50%): they bound the refit too
    assert refit_allowed(300, 40, 10, 10) == ("Refit not considered: 40 patients of the rarer outcome for 10 model "
                                              "inputs (10 per input, 100, needed to re-estimate the model)")


def test_refit_risks_are_out_of_fold_in_five_seeded_folds():
    import pandas as pd

    from training.updating import refit_out_of_fold

    y = np.r_[np.ones(20, int), np.zeros(40, int)]
    X = pd.DataFrame({"row": np.arange(60)})
    seen = []

    def fit(X_train, y_train):
        seen.append(set(X_train["row"]))
        return lambda X_test: np.full(len(X_test), y_train.mean()) + X_test["row"].to_numpy() * 0

    out = refit_out_of_fold(X, y, fit)
    assert len(seen) == 5 and all(len(s) == 48 for s in seen)  # each fold trains on the other four
    assert out.shape == (60,) and np.allclose(out, 1 / 3)
    first, seen[:] = list(seen), []
    assert np.array_equal(out, refit_out_of_fold(X, y, fit, folds=5, seed=0)) and seen == first  # same folds
    seen.clear()
    refit_out_of_fold(X, y, fit, seed=1)
    assert seen != first
    seen.clear()
    refit_out_of_fold(X.iloc[:22], np.r_[np.ones(2, int), np.zeros(20, int)], fit)
    assert len(seen) == 2  # 2 events: 2 folds
    seen.clear()
    refit_out_of_fold(X.iloc[:23], np.r_[np.zeros(3, int), np.ones(20, int)], fit)
    assert len(seen) == 3  # 3 non-events: 3 folds


@pytest.mark.parametrize("events, n", [(2, 62), (3, 63), (60, 63)])
def test_cross_validated_folds_are_as_many_as_the_rarer_outcome_allows(events, n):
    from sklearn.model_selection import StratifiedKFold

    y = np.r_[np.ones(events, int), np.zeros(n - events, int)]
    p = np.linspace(0.05, 0.5, n)
    k = max(2, min(5, events, n - events))
    expected = np.zeros(n)
    for tr, te in StratifiedKFold(k, shuffle=True, random_state=0).split(p, y):
        expected[te] = fit_update(y[tr], p[tr], IN_THE_LARGE).apply(p[te])
    assert np.array_equal(cross_validated(y, p, IN_THE_LARGE), expected)


def test_an_update_no_better_than_the_original_has_a_likelihood_ratio_of_zero():
    y, p = np.r_[np.ones(50, int), np.zeros(50, int)], np.full(100, 0.5)
    assert closed_test(y, p).tests[0]["lr"] == 0.0


def test_without_a_refit_note_the_reason_ends_with_the_tests():
    y, p = _centre(1500, 0.2, 0.45)
    test = closed_test(y, p)
    assert test.reason == _reason(test.chosen, LOGISTIC, test.tests, "", 0.05) and test.reason.endswith("df, p = 0.000")
