"""PathExplainer on every path it can take, for models shaped as the service's are and as they might be:
named features, trees of every size (stumps, one split, cached, too wide to cache, too deep for a code),
categorical splits, linear boosters. Each answer is XGBoost's own pred_contribs, value for value; which
path answered (and what it remembered, within what memory) is checked where the path is the point."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb

from feature_store import contract as c
from feature_store.encoding import encode_array
from feature_store.simulate import simulate_cohort
from model_runtime import explain
from model_runtime.explain import PathExplainer

P = {"objective": "binary:logistic", "eta": 0.3, "nthread": 1}
LEAVES = {"grow_policy": "lossguide", "max_depth": 0, "min_child_weight": 0.01}  # max_leaves - 1 splits, exactly


@pytest.fixture(scope="module")
def data():
    cohort = simulate_cohort(3000, seed=31)
    X = encode_array(cohort)
    names = [f"col{i}" for i in range(X.shape[1])]  # the service's models carry their column names
    train = xgb.DMatrix(X, label=cohort[c.OUTCOME].to_numpy(float), missing=np.nan, feature_names=names)
    return train, encode_array(simulate_cohort(2000, seed=32))


def grown(train, *stages):
    """One booster grown in stages: (extra params, rounds) each, continuing the previous trees."""
    booster = None
    for params, rounds in stages:
        booster = xgb.train({**P, "gamma": 0, "max_depth": 3, **params}, train, rounds, xgb_model=booster)
    return booster


def reference(booster, X):
    d = xgb.DMatrix(X, missing=np.nan, feature_names=booster.feature_names, feature_types=booster.feature_types,
                    enable_categorical=True)
    return booster.predict(d, pred_contribs=True)


def splits(ex):
    return [len(t.features) for t in ex.trees]


def assert_exact(ex, booster, X):
    got, ref = ex.contributions(X), reference(booster, X)
    assert got.dtype == np.float32 and got.shape == (len(X), X.shape[1])
    np.testing.assert_array_equal(got, ref[:, :-1])
    assert ex.bias == ref[0, -1]


@pytest.fixture(scope="module")
def mixed(data):
    """Trees the cache holds (7 splits), too wide for it but counted in a table (14), and sorted (23)."""
    train, _ = data
    return grown(train, ({}, 3), ({**LEAVES, "max_leaves": 15}, 3), ({**LEAVES, "max_leaves": 24}, 3))


@pytest.fixture(scope="module")
def flat(data):
    """Every tree remembered: two-level trees, single splits and stumps (no split at all) between them."""
    train, _ = data
    return grown(train, ({}, 2), ({"max_depth": 1}, 2), ({"gamma": 1e9}, 2), ({}, 2))


def test_a_named_model_is_explained_exactly_on_each_path(data, mixed):
    """Named columns (as the service trains) and a model matrix without names: every XGBoost call the
    explainer makes (bias, one call, per-tree tables, remembered patterns) must not refuse it."""
    _, X = data
    ex = PathExplainer(mixed)
    assert splits(ex) == [7, 7, 7, 14, 14, 14, 23, 23, 23] and mixed.feature_names is not None
    assert [c is not None for c in ex._cache] == [True] * 3 + [False] * 6
    assert_exact(ex, mixed, X[:3])  # XGBoost's own call
    assert_exact(ex, mixed, X)  # pattern path: new patterns learnt
    assert_exact(ex, mixed, X)  # remembered ones
    assert_exact(ex, mixed, encode_array(simulate_cohort(600, seed=33)))


def test_every_tree_remembered_with_stumps_and_single_splits(data, flat):
    _, X = data
    ex = PathExplainer(flat)
    assert splits(ex) == [7, 7, 1, 1, 0, 0, 7, 7] and ex._flat is not None
    assert_exact(ex, flat, X[:3])
    assert_exact(ex, flat, X)
    assert_exact(ex, flat, X[:1])  # one patient from the tables
    X = X.copy()
    X[:, ex.trees[2].features[0]] = ex.trees[2].thresholds[0]  # on the single split's threshold: right
    assert_exact(ex, flat, X)
    X[:, ex.trees[2].features[0]] = np.nan  # missing: its default way
    assert_exact(ex, flat, X)


def test_a_model_that_learnt_nothing_explains_nothing(data):
    """Every tree a single leaf (no split): contributions are zero, the bias carries the risk."""
    train, X = data
    booster = grown(train, ({"gamma": 1e9}, 3))
    ex = PathExplainer(booster)
    assert splits(ex) == [0, 0, 0] and ex._flat is not None
    for rows in (X[:1], X[:100], X):
        assert_exact(ex, booster, rows)
        assert not ex.contributions(rows).any()


@pytest.mark.parametrize("leaves, cache_splits", [(10, explain.CACHE_SPLITS), (18, 17)])
def test_pattern_codes_wider_than_a_byte_or_two(data, monkeypatch, leaves, cache_splits):
    """Trees of 9 and 17 splits, every one remembered: their codes need more than 8 (16) bits."""
    train, X = data
    monkeypatch.setattr(explain, "CACHE_SPLITS", cache_splits)
    booster = grown(train, ({**LEAVES, "max_leaves": leaves}, 3))
    ex = PathExplainer(booster)
    assert splits(ex) == [leaves - 1] * 3 and ex._flat is not None
    assert_exact(ex, booster, X)
    assert_exact(ex, booster, X[:1])


@pytest.mark.parametrize("leaves, path_wise", [(63, True), (80, False)])
def test_trees_too_deep_for_a_64_bit_code_take_xgboosts_call(data, leaves, path_wise):
    """62 splits fit a code; 79 do not, and the whole model is explained by XGBoost's own call."""
    train, X = data
    booster = grown(train, ({**LEAVES, "max_leaves": leaves}, 2))
    ex = PathExplainer(booster)
    assert (ex.trees is not None) == path_wise
    if path_wise:
        assert splits(ex) == [explain.MAX_SPLITS] * 2
    assert_exact(ex, booster, X)


def test_categorical_splits_take_xgboosts_call(data):
    """A column of five categories that tells the outcome: partition splits, not thresholds."""
    _, X = data
    cohort = simulate_cohort(3000, seed=31)
    y = cohort[c.OUTCOME].to_numpy(float)
    rng = np.random.default_rng(34)
    Xt, X = encode_array(cohort), X.copy()
    Xt[:, 3] = np.where(rng.random(len(y)) < 0.7, 2 * rng.integers(0, 2, len(y)) + y, rng.integers(0, 5, len(y)))
    X[:, 3] = rng.integers(0, 5, len(X))
    types = ["q"] * X.shape[1]
    types[3] = "c"
    d = xgb.DMatrix(Xt, label=y, missing=np.nan, feature_types=types, enable_categorical=True)
    booster = xgb.train({**P, "max_depth": 3, "max_cat_to_onehot": 1}, d, 6)
    trees = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]
    assert all(any(t["split_type"]) for t in trees)  # the column splits every tree
    ex = PathExplainer(booster)
    assert ex.trees is None and ex._flat is None
    assert_exact(ex, booster, X[:3])
    assert_exact(ex, booster, X)


def test_a_linear_booster_is_xgboosts_own(data):
    train, X = data
    booster = xgb.train({"booster": "gblinear", "objective": "binary:logistic", "nthread": 1}, train, 5)
    ex = PathExplainer(booster)
    assert ex.trees is None
    assert_exact(ex, booster, X[:3])
    assert_exact(ex, booster, X)


def test_a_single_output_model_saved_with_num_class_1_is_explained_path_wise(data):
    train, X = data
    booster = xgb.train({**P, "max_depth": 3, "num_class": 1}, train, 4)
    ex = PathExplainer(booster)
    assert ex.trees is not None and ex._flat is not None
    assert_exact(ex, booster, X)


@pytest.mark.parametrize("classes", [2, 3])
def test_a_model_with_one_margin_per_class_is_refused_in_plain_words(data, classes):
    # the risk is one margin per patient; a multi-class booster used to fail with a TypeError deep inside
    train, _ = data
    labels = np.arange(train.num_row()) % classes
    multi = xgb.train({"objective": "multi:softprob", "num_class": classes, "max_depth": 2, "nthread": 1},
                      xgb.DMatrix(train.get_data(), label=labels, feature_names=train.feature_names), 2)
    with pytest.raises(ValueError, match=r"^explanations need a single-output model \(one margin per patient\); "
                                         rf"this booster has {classes} classes$"):
        PathExplainer(multi)


def table_bytes(tree):
    """What remembering a tree takes: a flag per pattern and a float32 per pattern and column it splits on."""
    return (1 << len(tree.features)) * (1 + 4 * len(tree.columns))


def held(ex):
    return sum(known.nbytes + table.nbytes for known, table in (x for x in ex._cache if x is not None))


def test_the_remembered_tables_stay_within_cache_bytes(data, mixed, monkeypatch):
    """Trees are remembered in order while their tables fit what is left of CACHE_BYTES; the tables
    held never take more, and the answers are XGBoost's whichever trees are remembered."""
    _, X = data
    trees = PathExplainer(mixed).trees
    need = [table_bytes(t) if len(t.features) <= explain.CACHE_SPLITS else None for t in trees]
    fits = sum(n for n in need if n is not None)
    for budget in (fits, fits - 1, need[0] + need[1] - 1, 0):
        monkeypatch.setattr(explain, "CACHE_BYTES", budget)
        ex = PathExplainer(mixed)
        left, expected = budget, []
        for n in need:
            expected.append(n is not None and n <= left)
            left -= n if expected[-1] else 0
        assert [x is not None for x in ex._cache] == expected, budget
        assert held(ex) <= budget
        assert_exact(ex, mixed, X)
        assert held(ex) <= budget  # learning patterns fills the tables, it does not grow them


def test_every_tree_remembered_within_exactly_its_bytes(data, flat, monkeypatch):
    _, X = data
    need = sum(table_bytes(t) for t in PathExplainer(flat).trees)
    monkeypatch.setattr(explain, "CACHE_BYTES", need)
    ex = PathExplainer(flat)
    assert ex._all_cached and ex._flat is not None and held(ex) == need
    assert ex._flat.known.nbytes + ex._flat.values.nbytes == need  # the tables are views of the flat buffers
    assert_exact(ex, flat, X)
    monkeypatch.setattr(explain, "CACHE_BYTES", need - 1)
    ex = PathExplainer(flat)
    assert not ex._all_cached and ex._flat is None and held(ex) <= need - 1
    assert_exact(ex, flat, X)


def test_trees_of_exactly_cache_splits_are_remembered(data, mixed, monkeypatch):
    _, X = data
    monkeypatch.setattr(explain, "CACHE_SPLITS", 14)
    ex = PathExplainer(mixed)
    assert [x is not None for x in ex._cache] == [True] * 6 + [False] * 3
    assert_exact(ex, mixed, X)
    monkeypatch.setattr(explain, "CACHE_SPLITS", 13)
    assert [x is not None for x in PathExplainer(mixed)._cache] == [True] * 3 + [False] * 6


def learnt(ex):
    return sum(int(x[0].sum()) for x in ex._cache if x is not None)


def test_batches_below_rows_per_tree_take_xgboosts_call_and_learn_nothing(data, mixed):
    """Some trees remembered, some not: a batch under ROWS_PER_TREE per tree (and over MIN_ROWS) costs less
    in XGBoost's one call, so no pattern is learnt; from that many on, the remembered trees learn theirs."""
    _, X = data
    cut = explain.ROWS_PER_TREE * 9
    assert explain.MIN_ROWS < cut - 1 < len(X)
    ex = PathExplainer(mixed)
    assert not ex._all_cached
    assert_exact(ex, mixed, X[:cut - 1])
    assert learnt(ex) == 0
    assert_exact(ex, mixed, X[:cut])
    first = learnt(ex)
    assert first > 0
    assert_exact(ex, mixed, X[:cut])
    assert learnt(ex) == first  # nothing new the second time
    assert_exact(ex, mixed, X)
    assert learnt(ex) > first


def test_with_every_tree_remembered_min_rows_cached_patients_learn_their_patterns(data, flat):
    _, X = data
    n = explain.MIN_ROWS_CACHED
    ex = PathExplainer(flat)
    assert ex._all_cached
    assert_exact(ex, flat, X[:n - 1])  # a few patients, patterns unknown: XGBoost's one call
    assert not ex._flat.known.any()
    assert_exact(ex, flat, X[:n])
    assert ex._flat.known.any()


class Counted:
    """A booster whose calls are counted."""

    def __init__(self, booster, calls):
        self.booster, self.calls = booster, calls

    def predict(self, *args, **kwargs):
        self.calls.append(1)
        return self.booster.predict(*args, **kwargs)


def test_patients_whose_patterns_are_known_cost_no_xgboost_call(data, flat):
    _, X = data
    ex = PathExplainer(flat)
    ex.contributions(X)  # every pattern of these patients learnt
    calls = []
    ex.booster = Counted(ex.booster, calls)
    ex._slices = [Counted(s, calls) for s in ex._slices]
    for rows in (X[:1], X[5:8], X[:100], X):
        np.testing.assert_array_equal(ex.contributions(rows), reference(flat, rows)[:, :-1])
    assert not calls


def test_warming_is_reproducible(flat):
    """The synthetic rows come from a fixed seed: two services warm the same tables."""
    a, b = PathExplainer(flat), PathExplainer(flat)
    a.warm()
    b.warm()
    assert a._flat.known.any() and np.array_equal(a._flat.known, b._flat.known)
    c_ = PathExplainer(flat)
    c_.warm(rows=200, seed=5)
    assert not np.array_equal(a._flat.known, c_._flat.known)


def test_a_large_batch_is_coded_once_per_row_in_chunks(data, flat):
    """The (splits x rows) intermediates are bounded: at most CHUNK rows at a time, each row once."""
    _, X = data
    ex = PathExplainer(flat)
    big = np.concatenate([X, X, X])  # 6,000 rows: three chunks
    coded = []
    codes = ex._flat.codes
    ex._flat.codes = lambda rows: coded.append(len(rows)) or codes(rows)
    np.testing.assert_array_equal(ex.contributions(big), reference(flat, big)[:, :-1])
    assert sum(coded) == len(big) and max(coded) <= ex._flat.CHUNK and len(coded) == -(-len(big) // ex._flat.CHUNK)
