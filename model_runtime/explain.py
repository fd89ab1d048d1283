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
from typing import Any

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
        classes = int(model["learner_model_param"].get("num_class", "0"))
        if classes > 1:  # the risk is one margin per patient (RiskModel applies one sigmoid)
            raise ValueError(f"explanations need a single-output model (one margin per patient); this booster "
                             f"has {classes} classes")
        self.trees: list[_Tree] | None = None
        if gb.get("name") == "gbtree":
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
        # every tree remembered: the tables laid end to end, looked up for all trees at once
        self._flat = _Flat(self.trees, self._cache, n_cols) if self._all_cached else None  # type: ignore[arg-type]
        # the bias column (base score plus each tree's expected value) is the same for every patient
        self.bias = float(booster.predict(xgb.DMatrix(np.full((1, n_cols), np.nan), missing=np.nan, nthread=1),
                                          pred_contribs=True, validate_features=False)[0, -1])

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-column SHAP values (float32, n x columns) for the model matrix X (NaN missing)."""
        n = len(X)
        few = n < (MIN_ROWS_CACHED if self._all_cached else max(MIN_ROWS, ROWS_PER_TREE * len(self.trees or [])))
        if self._flat is not None:
            # a few patients: only when every pattern they take is known (else XGBoost's one call,
            # cheaper than one call per tree to learn the new patterns)
            out = self._flat.contributions(X, self._fill if not few else None)
            if out is not None:
                return out
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

    def _fill(self, t: int, code: np.ndarray, X: np.ndarray) -> None:
        """Learn tree t's patterns not seen before from XGBoost (one row of X represents each)."""
        known, table = self._cache[t]  # type: ignore[misc]
        new = np.flatnonzero(np.bincount(code[~known[code]], minlength=len(known)))
        if not len(new):
            return
        rep = np.empty(len(known), dtype=np.int64)
        rep[code] = np.arange(len(code))  # any row of a pattern represents it
        part = self._slices[t].predict(xgb.DMatrix(X[rep[new]], missing=np.nan, nthread=1), pred_contribs=True,
                                       validate_features=False)
        table[new] = part[:, self.trees[t].columns]  # type: ignore[index]
        known[new] = True  # after the values: a concurrent call reads a pattern only once it is filled

    def warm(self, rows: int = 4096, seed: int = 0) -> None:
        """Learn the patterns ahead of the first patients, from synthetic rows: each column takes,
        at random, a value just below or at one of its split thresholds, or is missing, so most
        combinations of split directions occur. The tables hold per-pattern values, whoever has the
        pattern: no patient data is involved, and XGBoost is called once per tree."""
        if self._flat is None:
            return
        rng = np.random.default_rng(seed)
        X = np.full((rows, self._flat.n_cols), np.nan)
        for col in range(self._flat.n_cols):
            thresholds = np.unique(np.concatenate([t.thresholds[t.features == col] for t in self.trees or []]))
            if not len(thresholds):
                continue
            below = np.nextafter(thresholds, np.float32(-np.inf))
            choices = np.concatenate([thresholds, below, [np.nan]]).astype(np.float64)
            X[:, col] = rng.choice(choices, size=rows)
        self.contributions(X)


class _Flat:
    """Every tree's pattern table in one buffer, with each tree's split tests and lookups vectorised
    over all trees: a batch costs a few numpy calls per tree splitting on the busiest column, and one
    patient whose patterns are known costs less than XGBoost's own call. Sums in tree order, in
    float32, as the per-tree path and XGBoost do (the same numbers, bit for bit)."""

    CHUNK = 2048  # rows at a time: the (splits x rows) intermediates stay a few MB

    def __init__(self, trees: list[_Tree], caches: list[tuple[np.ndarray, np.ndarray]], n_cols: int) -> None:
        self.n_cols = n_cols
        sizes = np.array([1 << len(t.features) for t in trees])
        widths = np.array([len(t.columns) for t in trees])
        self.known = np.zeros(int(sizes.sum()), dtype=bool)
        self.values = np.zeros(int((sizes * widths).sum()), dtype=np.float32)
        self.known_base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        value_base = np.concatenate([[0], np.cumsum(sizes * widths)[:-1]]).astype(np.int64)
        for t in range(len(trees)):  # the trees' own tables become views into the flat buffers
            known = self.known[self.known_base[t]:self.known_base[t] + sizes[t]]
            table = self.values[value_base[t]:value_base[t] + sizes[t] * widths[t]].reshape(sizes[t], widths[t])
            known[:], table[:] = caches[t]
            caches[t] = (known, table)
        self.feature = np.concatenate([t.features for t in trees]).astype(np.int64)
        self.threshold = np.concatenate([t.thresholds for t in trees]).astype(np.float32)
        self.default_left = np.concatenate([t.default_left for t in trees])
        self.default_left_splits = np.flatnonzero(self.default_left)
        widest = max((len(t.features) for t in trees), default=0)
        self.code_type = np.uint8 if widest <= 8 else np.uint16 if widest <= 16 else np.int64  # less to move
        self.shift = np.concatenate([np.arange(len(t.features)) for t in trees]).astype(self.code_type)
        starts = np.concatenate([[0], np.cumsum([len(t.features) for t in trees])[:-1]])
        self.splitting = np.array([len(t.features) > 0 for t in trees])
        self.split_starts = starts[self.splitting]
        # (tree, column) pairs ordered by column, then tree: reduceat sums each column in tree order
        pairs = sorted((int(col), t, j) for t, tree in enumerate(trees) for j, col in enumerate(tree.columns))
        self.pair_tree = np.array([t for _, t, _ in pairs], dtype=np.int64)
        self.pair_offset = np.array([value_base[t] + j for _, t, j in pairs], dtype=np.int64)
        self.pair_width = widths[self.pair_tree].astype(np.int64)
        columns = np.array([col for col, _, _ in pairs], dtype=np.int64)
        self.columns, starts, counts = np.unique(columns, return_index=True, return_counts=True)
        # each pair's place in a (trees splitting on the column) x (columns) grid, in tree order per column
        self.pair_column = np.repeat(np.arange(len(self.columns)), counts)
        self.pair_rank = np.arange(len(pairs)) - np.repeat(starts, counts)
        self.depth = int(counts.max()) if len(counts) else 0

    def codes(self, X: np.ndarray) -> np.ndarray:
        """Each tree's pattern per row (trees x rows): bit k set when the row goes left at split k."""
        cols = np.ascontiguousarray(X.T, dtype=np.float32)
        left = cols[self.feature] < self.threshold[:, None]  # NaN compares False: the default direction below
        if len(self.default_left_splits):
            left[self.default_left_splits] |= np.isnan(cols[self.feature[self.default_left_splits]])
        codes = np.zeros((len(self.splitting), len(X)), dtype=np.int64)
        if len(self.split_starts):  # the bits of one tree are distinct: their sum is their union
            codes[self.splitting] = np.add.reduceat(left.astype(self.code_type) << self.shift[:, None],
                                                    self.split_starts, axis=0)
        return codes

    def contributions(self, X: np.ndarray, fill: Any) -> np.ndarray | None:
        """SHAP values from the tables; patterns not seen before learnt with `fill(tree, codes, X)`, or
        None (without `fill`) when some are unknown."""
        out = np.zeros((len(X), self.n_cols), dtype=np.float32)
        for start in range(0, len(X), self.CHUNK):
            chunk = X[start:start + self.CHUNK]
            codes = self.codes(chunk)
            unknown = ~self.known[self.known_base[:, None] + codes]
            if unknown.any():
                if fill is None:
                    return None
                for t in np.flatnonzero(unknown.any(axis=1)).tolist():
                    fill(t, codes[t], chunk)
            found = self.values[self.pair_offset[:, None] + codes[self.pair_tree] * self.pair_width[:, None]]
            grid = np.zeros((self.depth, len(self.columns), len(chunk)), dtype=np.float32)
            grid[self.pair_rank, self.pair_column] = found
            # summed one tree at a time, in float32 (numpy's own sums may pair the terms up: other last bits)
            total = np.zeros((len(self.columns), len(chunk)), dtype=np.float32)
            for level in grid:
                total += level
            out[start:start + len(chunk), self.columns] = total.T
        return out

