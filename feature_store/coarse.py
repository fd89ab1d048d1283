"""Coarse forms at work: deriving them from fine values, checking a given flag against its fine
value, and whether a required input is given in either form. The rules themselves are in the
contract (`Feature.derivation`)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from feature_store import contract as c
from feature_store.columns import column_length, column_values
from feature_store.derivations import IMPLICATIONS


def derive_coarse(frame: Mapping[str, Any], names: list[str] | tuple[str, ...]) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """Fill each coarse feature in `names` from its fine source(s) where the coarse value is absent.

    Returns the columns (a dict; the input is not changed) and, per coarse feature, the rows
    where its given value contradicts the fine one (for the caller to report). A recorded coarse
    value is kept where no fine value exists.
    """
    n = column_length(frame)
    out: dict[str, Any] = dict(frame.items()) if not isinstance(frame, pd.DataFrame) else {
        k: frame[k].to_numpy(dtype=object) for k in frame.columns}
    conflicts: dict[str, list[int]] = {}
    for name in names:
        f = c.BY_NAME[name]
        if f.derivation is None or not any(s in frame for s in f.derivation.sources):
            continue
        derived = f.derivation.compute(frame, n)
        given, missing = column_values(frame, name, n)
        known = np.not_equal(derived, None).astype(bool)  # elementwise on objects: derivable rows
        have = ~missing & known
        if have.any():
            bad = [i for i in np.flatnonzero(have) if _plain_value(given[i]) != derived[i]]
            if bad:
                conflicts[name] = bad
        # the fine value wins where there is one: a flag is its summary, never the other way round
        out[name] = derived if missing.all() else np.where(known, derived, np.where(missing, None, given))
    for name in names:
        _implied(out, name, n)
    return out, conflicts


def _implied(out: dict[str, Any], name: str, n: int) -> None:
    """Fill a coarse value that another recorded item settles (contract: IMPLICATIONS), where still missing."""
    rule = IMPLICATIONS.get(name)
    if rule is None or rule.source not in out:
        return
    source, source_missing = column_values(out, rule.source, n)
    settles = ~source_missing & np.array([_plain_value(v) == rule.when for v in source], dtype=bool)
    if not settles.any():
        return
    current = out[name] if name in out else np.full(n, None, dtype=object)
    values, missing = column_values({name: current}, name, n)
    filled = np.asarray(values, dtype=object).copy()
    filled[missing] = None
    filled[missing & settles] = rule.value
    out[name] = filled


def satisfies(name: str, columns: Mapping[str, Any]) -> np.ndarray:
    """Rows where a (required) feature is given, directly or through its fine source(s)."""
    n = column_length(columns)
    _, missing = column_values(columns, name, n)
    d = c.BY_NAME[name].derivation
    if d is None:
        return ~missing
    derived = d.compute(columns, n)
    return ~missing | np.array([v is not None for v in derived], dtype=bool)


def required_text(name: str) -> str:
    """How a required feature may be given, for error messages."""
    d = c.BY_NAME[name].derivation
    return f"{name} (or {', '.join(d.sources)}, from which it derives)" if d else name


def _plain_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v
