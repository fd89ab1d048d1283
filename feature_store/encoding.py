"""Encoding: a cohort table or a request's columns -> the float64 model matrix, in contract order.

Missing stays NaN (XGBoost handles it natively; the logistic baseline imputes); ordered categories
are one ordinal column, others one-hot."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

import numpy as np
import pandas as pd

from feature_store import contract as c
from feature_store.columns import column_length, column_values, is_missing


@lru_cache(maxsize=32)
def _plan(names: tuple[str, ...]) -> tuple[tuple[c.Feature, tuple[int, ...], dict[Any, float]], ...]:
    """Per chosen feature: its model-matrix column indices and, for ordered categories, the codes."""
    plan = []
    j = 0
    for f in c.FEATURES:
        if f.name not in names:
            continue
        width = len(f.model_columns())
        codes = {cat: float(i) for i, cat in enumerate(f.known_categories)} if f.ordered else {}
        plan.append((f, tuple(range(j, j + width)), codes))
        j += width
    return tuple(plan)


def encode_array(frame: Mapping[str, Any], names: list[str] | None = None) -> np.ndarray:
    """Cohort table or dict of columns -> float64 model matrix (n x len(c.model_columns)).

    Works on a DataFrame and on a plain dict of lists alike, so a batch request is encoded
    by the same code as a training table. Missing stays NaN: XGBoost handles it natively;
    the logistic baseline imputes.
    """
    chosen = tuple(c.fine_feature_names() if names is None else names)
    c.check_no_leakage(chosen)
    plan = _plan(chosen)
    n = column_length(frame)
    out = np.full((n, sum(len(cols) for _, cols, _ in plan)), np.nan)
    for f, cols, codes in plan:
        values, missing = column_values(frame, f.name, n)
        if f.kind in (c.Kind.NUMBER, c.Kind.INTEGER, c.Kind.BOOLEAN):
            out[~missing, cols[0]] = values[~missing].astype("float64")
        elif n > 32:  # category codes from a hash table, not a comparison per value and level
            level = pd.Categorical(values, categories=f.categories).codes.astype("int64")  # -1: absent/other
            if f.ordered:
                rank = np.array([codes.get(cat, np.nan) for cat in f.categories] + [np.nan])
                out[:, cols[0]] = rank[level]  # -1 indexes the trailing NaN
            else:
                unknown = missing | np.isin(level, [f.categories.index(u) for u in f.unknown_categories])
                for j, col in zip(cols, f.model_columns()):
                    ind = (level == f.categories.index(col.split("__", 1)[1])).astype("float64")
                    ind[unknown] = np.nan
                    out[:, j] = ind
        elif f.ordered:
            out[:, cols[0]] = [np.nan if m else codes.get(v, np.nan) for v, m in zip(values, missing)]
        else:
            for unknown in f.unknown_categories:
                missing = missing | (values == unknown)
            for j, col in zip(cols, f.model_columns()):
                ind = (values == col.split("__", 1)[1]).astype("float64")
                ind[missing] = np.nan
                out[:, j] = ind
    return out


def encode_record(record: Mapping[str, Any], names: list[str] | None = None) -> np.ndarray:
    """One patient -> 1 x p model matrix, in plain Python (numpy's per-call overhead, paid
    once per feature in encode_array, would cost more than the model). Tests check it equals
    encode_array on whole simulated cohorts."""
    plan = _plan(tuple(c.fine_feature_names() if names is None else names))
    row = [np.nan] * sum(len(cols) for _, cols, _ in plan)
    for f, cols, codes in plan:
        v = record.get(f.name)
        if is_missing(v):
            continue
        if f.kind in (c.Kind.NUMBER, c.Kind.INTEGER, c.Kind.BOOLEAN):
            row[cols[0]] = float(v)
        elif f.ordered:
            row[cols[0]] = codes.get(v, np.nan)
        elif v not in f.unknown_categories:
            for j, col in zip(cols, f.model_columns()):
                row[j] = 1.0 if col.split("__", 1)[1] == v else 0.0
    return np.array([row], dtype="float64")


def encode(frame: pd.DataFrame, names: list[str] | None = None) -> pd.DataFrame:
    """Cohort table (contract names and values) -> float64 model matrix as a DataFrame."""
    chosen = c.fine_feature_names() if names is None else names
    return pd.DataFrame(encode_array(frame, chosen), columns=c.model_columns(chosen), index=frame.index)
