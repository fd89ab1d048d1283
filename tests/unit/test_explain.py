"""The path-pattern TreeSHAP equals XGBoost's own pred_contribs, value for value."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from feature_store import contract as c
from feature_store.encoding import encode_array
from feature_store.simulate import simulate_cohort
from model_runtime import explain
from model_runtime.explain import PathExplainer


@pytest.fixture(scope="module")
def model():
    cohort = simulate_cohort(3000, seed=21)
    X = encode_array(cohort)
    y = cohort[c.OUTCOME].to_numpy(dtype=float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "nthread": 1},
                        xgb.DMatrix(X, label=y, missing=np.nan), num_boost_round=25)
    return booster, encode_array(simulate_cohort(4000, seed=22))


def test_contributions_equal_xgboost_pred_contribs(model):
    booster, X = model
    assert np.isnan(X).any()  # missing values take the learned default branch
    ex = PathExplainer(booster)
    # the pattern path, not the fallback
    assert ex.trees is not None and len(X) >= max(explain.MIN_ROWS, explain.ROWS_PER_TREE * len(ex.trees))
    reference = booster.predict(xgb.DMatrix(X, missing=np.nan), pred_contribs=True)
    got = ex.contributions(X)
    np.testing.assert_array_equal(got, reference[:, :-1])
    np.testing.assert_array_equal(np.full(len(X), ex.bias, dtype=np.float32), reference[:, -1])


def test_values_on_a_split_threshold_go_the_way_xgboost_sends_them(model, monkeypatch):
    """A value exactly on a threshold (x < t is false: right) and a missing one (default branch)."""
    booster, X = model
    monkeypatch.setattr(explain, "ROWS_PER_TREE", 0)  # 400 patients: the pattern path all the same
    ex = PathExplainer(booster)
    X = X[:400].copy()
    tree = ex.trees[0]
    X[:200, tree.features[0]] = tree.thresholds[0]
    X[200:, tree.features[0]] = np.nan
    reference = booster.predict(xgb.DMatrix(X, missing=np.nan), pred_contribs=True)
    np.testing.assert_array_equal(ex.contributions(X), reference[:, :-1])


def test_few_patients_take_xgboosts_own_path(model):
    booster, X = model
    got = PathExplainer(booster).contributions(X[:3])
    np.testing.assert_array_equal(got, booster.predict(xgb.DMatrix(X[:3], missing=np.nan), pred_contribs=True)[:, :-1])


def test_remembered_patterns_give_the_same_contributions(model):
    """Warm (every pattern seen), then a new cohort (some patterns new): still XGBoost's numbers."""
    booster, X = model
    ex = PathExplainer(booster)
    assert any(c is not None for c in ex._cache)
    first = ex.contributions(X[:2000])
    again = ex.contributions(X[:2000])
    np.testing.assert_array_equal(first, again)
    other = encode_array(simulate_cohort(1500, seed=23))
    reference = booster.predict(xgb.DMatrix(other, missing=np.nan), pred_contribs=True)
    np.testing.assert_array_equal(ex.contributions(other), reference[:, :-1])
    # a small batch once the patterns are known takes the pattern path too
    assert len(other[:100]) >= explain.MIN_ROWS_CACHED or not ex._all_cached
    np.testing.assert_array_equal(ex.contributions(other[:100]), reference[:100, :-1])


@pytest.mark.parametrize("limit", [{"CACHE_SPLITS": 0}, {"CACHE_BYTES": 20_000}])
def test_trees_beyond_the_cache_are_explained_all_the_same(model, monkeypatch, limit):
    booster, X = model
    for name, value in limit.items():
        monkeypatch.setattr(explain, name, value)
    ex = PathExplainer(booster)
    cached = sum(c is not None for c in ex._cache)
    assert cached < len(ex.trees) and (cached == 0) == ("CACHE_SPLITS" in limit)
    reference = booster.predict(xgb.DMatrix(X, missing=np.nan), pred_contribs=True)
    np.testing.assert_array_equal(ex.contributions(X), reference[:, :-1])
    np.testing.assert_array_equal(ex.contributions(X), reference[:, :-1])


def test_one_patient_after_warming_is_a_lookup_with_xgboosts_numbers(model, monkeypatch):
    """Synthetic rows teach the tables their patterns (no patient data); then one patient at a time is
    answered from them, value for value what XGBoost computes."""
    _, X = model
    cohort = simulate_cohort(3000, seed=24)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "nthread": 1},
                        xgb.DMatrix(encode_array(cohort), label=cohort[c.OUTCOME].to_numpy(float), missing=np.nan),
                        num_boost_round=40)
    ex = PathExplainer(booster)
    assert ex._flat is not None and not ex._flat.known.any()
    ex.warm()
    assert ex._flat.known.mean() > 0.5  # most patterns learnt from the synthetic rows
    calls = []
    monkeypatch.setattr(ex, "_fill", lambda *a: calls.append(a))  # a lookup must not need XGBoost
    looked_up = 0
    booster.set_param({"nthread": 1})  # as the service runs it (more threads: other last bits)
    for row in X[:300]:
        one = row[None, :]
        reference = booster.predict(xgb.DMatrix(one, missing=np.nan, nthread=1), pred_contribs=True)[:, :-1]
        np.testing.assert_array_equal(ex.contributions(one), reference)
        looked_up += ex._flat.contributions(one, None) is not None
    assert looked_up > 250 and not calls  # most from the tables; an unseen pattern took XGBoost's call
    monkeypatch.undo()
    batch = ex.contributions(X)  # the same tables for a whole cohort, new patterns learnt
    np.testing.assert_array_equal(batch, booster.predict(xgb.DMatrix(X, missing=np.nan, nthread=1),
                                                         pred_contribs=True)[:, :-1])
