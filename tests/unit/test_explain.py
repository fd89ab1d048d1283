"""The path-pattern TreeSHAP equals XGBoost's own pred_contribs, value for value."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from feature_store import contract as c
from feature_store.simulate import simulate_cohort
from serving import explain
from serving.explain import PathExplainer


@pytest.fixture(scope="module")
def model():
    cohort = simulate_cohort(3000, seed=21)
    X = c.encode_array(cohort)
    y = cohort[c.OUTCOME].to_numpy(dtype=float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "nthread": 1},
                        xgb.DMatrix(X, label=y, missing=np.nan), num_boost_round=25)
    return booster, c.encode_array(simulate_cohort(4000, seed=22))


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
