"""The reference profile's shape and the binner's layout, exactly: labels, edges, whole-number counts, the
score grid, out-of-range and missing codes, empty batches, shares (docs/MUTATION.md lists the mutants)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from feature_store.encoding import encode_array
from monitoring import profile as pr

FEATURES = ["age_years", "bilobar_disease", "cea_ng_ml"]


@pytest.fixture
def built():
    ages = [float(a) for a in np.linspace(30, 80, 40)] + [None] * 10
    X = encode_array({"age_years": ages, "bilobar_disease": [True, False] * 20 + [None] * 10,
                      "cea_ng_ml": [None] * 50}, FEATURES)
    scores = np.r_[np.zeros(20), np.linspace(0.1, 0.9, 30)]
    return X, pr.build_profile(X, FEATURES, scores, source={"run_id": "r1"})


def test_labels_of_numeric_bins_and_of_a_flag():
    assert pr._numeric_labels([]) == ["all"]
    assert pr._numeric_labels([1.5, 3.0, 10.0]) == ["<=1.5", "1.5-3", "3-10", ">10"]


def test_the_profile_records_edges_of_the_known_values_and_whole_counts(built):
    X, prof = built
    assert (prof["version"], prof["n"], prof["source"]) == (1, 50, {"run_id": "r1"})
    age = prof["features"]["age_years"]
    known = np.linspace(30, 80, 40)
    assert age["edges"] == sorted({float(v) for v in np.quantile(known, pr.EDGE_QUANTILES)})
    assert age["missing"] == 10 and sum(age["counts"]) == 40 and all(type(v) is int for v in age["counts"])
    flag = prof["features"]["bilobar_disease"]
    assert flag["labels"] == ["false", "true"] and flag["counts"] == [20, 20] and flag["missing"] == 10
    cea = prof["features"]["cea_ng_ml"]
    assert cea["edges"] == [] and cea["labels"] == ["all"] and cea["missing"] == 50


def test_the_score_grid_leaves_out_the_ends_and_is_read_back_as_hundredths(built):
    _, prof = built
    scores = np.r_[np.zeros(20), np.linspace(0.1, 0.9, 30)]
    grid = sorted({int(round(q * 100)) for q in np.quantile(scores, pr.EDGE_QUANTILES)} - {0, 100})
    assert prof["score"]["edges"] == [g / 100 for g in grid] and 0.0 not in prof["score"]["edges"]
    assert prof["score"]["n"] == 50 and all(type(v) is int for v in prof["score"]["fine_counts"])
    binner = pr.Binner(prof)
    assert binner.score_grid.tolist() == grid and binner.score_grid.dtype == np.int64


def test_the_binner_lays_features_end_to_end_with_a_missing_bin_each(built):
    X, prof = built
    b = pr.Binner(prof)
    sizes = [len(prof["features"][f]["labels"]) + 1 for f in FEATURES]
    assert b.offsets["age_years"] == 0 and b.total == sum(sizes)
    assert b.labels("bilobar_disease") == ["false", "true", pr.MISSING]
    empty = b.counts(np.empty((0, X.shape[1])))
    assert empty.dtype == np.int64 and empty.tolist() == [0] * b.total


def test_a_flag_beyond_its_categories_goes_to_its_last_bin_and_missing_to_the_missing_bin(built):
    X, prof = built
    b = pr.Binner(prof)
    col = X.copy()
    flag = pr._layout(FEATURES)["bilobar_disease"][0]
    col[:3, flag] = [7.0, 1.0, np.nan]
    counts = b.counts(col[:3])[b.slice("bilobar_disease")]
    assert counts.tolist() == [0, 2, 1]


def test_drift_reads_the_reference_given_and_its_missing_share(built):
    X, prof = built
    b = pr.Binner(prof)
    current = b.counts(X)
    other = current.copy()
    sl = b.slice("bilobar_disease")
    other[sl] = [10, 10, 30]
    d = b.drift(current, reference=other)["bilobar_disease"]
    assert d["reference_missing_share"] == 0.6 and d["missing_share"] == 0.2 and d["psi"] > 0
    assert pr._share(1.0, 4.0) == 0.25 and math.isnan(pr._share(1.0, 0.0))


def test_quantiles_in_the_first_bins():
    first = np.zeros(100)
    first[0] = 10
    assert pr.quantiles(first, [0.5]) == pytest.approx([0.005])
    first[1] = 10
    assert pr.quantiles(first, [0.75]) == pytest.approx([0.015])


def test_fine_scores_on_a_grid_point_go_to_the_bin_above_it(built):
    _, prof = built
    b = pr.Binner(prof)
    grid = b.score_grid.tolist()
    fine = np.zeros(100)
    fine[grid[0]] = 1
    coarse = b.coarse_scores(fine)
    assert len(coarse) == len(grid) + 1 and coarse[1] == 1 and coarse.sum() == 1


def test_compare_without_a_recorded_source(built):
    X, prof = built
    del prof["source"]
    b = pr.Binner(prof)
    out = pr.compare(prof, b.counts(X), pr.score_counts(np.full(50, 0.3)), pr.DriftThresholds())
    assert out["reference"] == {"n": 50}
