"""Exact TreeSHAP contributions for many patients at once, computed once per distinct path.

XGBoost's `pred_contribs` costs about 30 us per patient for a small model (300 ms for a batch
of 10,000 on these machines: most of a batch's time, where plain prediction takes 2 ms).
A tree's SHAP values for a patient depend on the patient only through the direction taken at
each of the tree's splits (a value below the threshold, above it, or missing and sent the
default way). Patients who agree at every split of a tree get the very same contributions
from it, and a small tree has few such patterns (tens to hundreds) however many patients
there are. So each tree is explained by XGBoost itself on one representative per pattern, and
the result is spread back: the same numbers as `pred_contribs` (a test checks it on whole
cohorts), at a fraction of the cost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

# Below this many patients the one-call path is faster. XGBoost's own call costs ~15 us per patient
# whatever the model's size; the pattern path ~0.3-0.45 ms per tree (a DMatrix, a call, the split
# tests) plus that per representative. Measured crossovers: ~700 patients for 16 trees, ~1,900 for 78.
MIN_ROWS = 256
ROWS_PER_TREE = 30
# With every tree's patterns remembered (below), a warm batch costs table lookups: from this many up.
MIN_ROWS_CACHED = 64
CACHE_SPLITS = 12
CACHE_BYTES = 64 * 2**20
# Codes are built in one int64 per row; trees with more splits take the one-call path.
MAX_SPLITS = 62
# Up to this many splits the patterns are counted in a table (2**splits entries), not sorted.
TABLE_SPLITS = 16


@dataclass(frozen=True)
class _Tree:
    features: np.ndarray  # split feature per internal node
    thresholds: np.ndarray  # float32: XGBoost compares float32 values
    default_left: np.ndarray  # bool
    columns: np.ndarray  # the distinct columns split on


class PathExplainer:
    """SHAP contributions (n x columns, without the bias column) equal to XGBoost's own."""

    def __init__(self, booster: xgb.Booster) -> None:
        self.booster = booster
        model = json.loads(booster.save_raw("json"))["learner"]
        gb = model["gradient_booster"]
        self.trees: list[_Tree] | None = None
        if gb.get("name") == "gbtree" and int(model["learner_model_param"].get("num_class", "0")) <= 1:
            trees = []
            for t in gb["model"]["trees"]:
                left = np.asarray(t["left_children"])
                inner = np.flatnonzero(left != -1)
                if len(inner) > MAX_SPLITS or any(t["split_type"][i] != 0 for i in inner):
                    trees = None  # categorical splits or deep trees: XGBoost's own path
                    break
                split_on = np.asarray(t["split_indices"])[inner]
                trees.append(_Tree(split_on, np.asarray(t["split_conditions"], dtype=np.float32)[inner],
                                   np.asarray(t["default_left"], dtype=bool)[inner], np.unique(split_on)))
            self.trees = trees
        # one single-tree booster per tree: XGBoost explains a slice of a model, not a range of it
        self._slices = [booster[t:t + 1] for t in range(len(self.trees))] if self.trees else []
        for s in self._slices:
            s.set_param({"nthread": 1})  # see RiskModel: OpenMP wake-ups cost more than these calls
        # Each tree's contributions per pattern, remembered (the same numbers whoever has the
        # pattern): once a model's common patterns are seen, explaining a batch is a table lookup
        # per tree and XGBoost is called only for patterns not seen before. Trees of up to
        # CACHE_SPLITS splits, within CACHE_BYTES in all.
        self._cache: list[tuple[np.ndarray, np.ndarray] | None] = []
        budget = CACHE_BYTES
        for tree in self.trees or []:
            size = (1 << len(tree.features)) * (len(tree.columns) * 4 + 1)
            if len(tree.features) <= CACHE_SPLITS and size <= budget:
                budget -= size
                self._cache.append((np.zeros(1 << len(tree.features), dtype=bool),
                                    np.zeros((1 << len(tree.features), len(tree.columns)), dtype=np.float32)))
            else:
                self._cache.append(None)
        self._all_cached = bool(self._cache) and all(x is not None for x in self._cache)
        n_cols = int(model["learner_model_param"]["num_feature"])
        # the bias column (base score plus each tree's expected value) is the same for every patient
        self.bias = float(booster.predict(xgb.DMatrix(np.full((1, n_cols), np.nan), missing=np.nan, nthread=1),
                                          pred_contribs=True, validate_features=False)[0, -1])

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-column SHAP values (float32, n x columns) for the model matrix X (NaN missing)."""
        n = len(X)
        few = n < (MIN_ROWS_CACHED if self._all_cached else max(MIN_ROWS, ROWS_PER_TREE * len(self.trees or [])))
        if self.trees is None or few:
            return self.booster.predict(xgb.DMatrix(X, missing=np.nan, nthread=1), pred_contribs=True,
                                        validate_features=False)[:, :-1]
        cols = np.ascontiguousarray(X.T, dtype=np.float32)  # one contiguous row per column
        nan = np.isnan(cols)
        out = np.zeros((n, X.shape[1]), dtype=np.float32)
        rows = np.arange(n)
        for tree, one, cache in zip(self.trees, self._slices, self._cache):
            code = np.zeros(n, dtype=np.int64)
            for k, (f, thr, dl) in enumerate(zip(tree.features, tree.thresholds, tree.default_left)):
                left = cols[f] < thr  # NaN compares False: set below
                left[nan[f]] = dl
                code |= left.astype(np.int64) << k
            if cache is not None:
                known, table = cache
                new = np.flatnonzero(np.bincount(code[~known[code]], minlength=len(known)))
                if len(new):
                    rep = np.empty(len(known), dtype=np.int64)
                    rep[code] = rows  # any row of a pattern represents it
                    part = one.predict(xgb.DMatrix(X[rep[new]], missing=np.nan, nthread=1), pred_contribs=True,
                                       validate_features=False)
                    table[new] = part[:, tree.columns]
                    known[new] = True  # after the values: a concurrent call reads a pattern only once it is filled
                out[:, tree.columns] += table[code]
                continue
            if len(tree.features) <= TABLE_SPLITS:  # a lookup table instead of a sort
                size = 1 << len(tree.features)
                rep = np.full(size, -1, dtype=np.int64)
                rep[code] = rows  # any row of a pattern represents it
                seen = np.flatnonzero(rep >= 0)
                slot = np.empty(size, dtype=np.int64)
                slot[seen] = np.arange(len(seen))
                first, inverse = rep[seen], slot[code]
            else:
                _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
            part = one.predict(xgb.DMatrix(X[first], missing=np.nan, nthread=1), pred_contribs=True,
                               validate_features=False)
            # a tree gives exactly zero to the columns it does not split on: add only its own
            out[:, tree.columns] += part[:, tree.columns][inverse]
        return out
