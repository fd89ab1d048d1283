"""Column helpers shared by the contract's rules, validation and encoding: a column is a list, an array
or a DataFrame column; None, NaN and pd.NA are missing."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd


def is_missing(v: Any) -> bool:
    """None, NaN and pd.NA are missing values."""
    return v is None or v is pd.NA or (isinstance(v, float) and v != v)


def missing_mask(values: np.ndarray) -> np.ndarray:
    """is_missing over an array. A plain loop for a few values: pd.isna costs more than one
    patient's whole encoding."""
    if len(values) <= 32:
        return np.fromiter((is_missing(v) for v in values), dtype=bool, count=len(values))
    return pd.isna(values)


def column_length(frame: Mapping[str, Any]) -> int:
    """Rows of a DataFrame or of a dict of equal-length columns."""
    return len(frame) if isinstance(frame, pd.DataFrame) else len(next(iter(frame.values()), []))


def column_values(frame: Mapping[str, Any], name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A column as an object array (None missing) or, given floats, a float array (NaN missing),
    and its missing mask."""
    if name not in frame:
        return np.full(n, None, dtype=object), np.ones(n, dtype=bool)
    values = np.asarray(frame[name]).reshape(-1)
    if values.dtype.kind == "f":  # a float column stays one: NaN is its missing (no object per cell)
        return values, np.isnan(values)
    values = values.astype(object)
    missing = missing_mask(values)
    if missing.any():  # pd.NA refuses comparison (`NA == "x"` is NA): missing is None from here on
        values = values.copy()
        values[missing] = None
    return values, missing
