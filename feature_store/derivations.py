"""Rules by which a coarse feature follows from fine ones (a 0/1 flag from a count, a TBS band from
count and size): the `derivation` of a contract feature. Applied by feature_store/coarse.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from feature_store.columns import column_values


@dataclass(frozen=True)
class Derivation:
    """How a coarse feature follows from fine ones: written once, here, and used by import,
    training, serving and the clinical scores alike."""

    sources: tuple[str, ...]
    rule: str  # the rule in words, for docs, cards and notes
    # columns (dict or DataFrame) and row count -> object array in the coarse feature's terms, None missing
    compute: Callable[[Mapping[str, Any], int], np.ndarray]


def numbers(frame: Mapping[str, Any], name: str, n: int) -> np.ndarray:
    """A numeric column as float64 with NaN for missing (absent column: all NaN)."""
    values, missing = column_values(frame, name, n)
    out = np.full(n, np.nan)
    if (~missing).any():
        out[~missing] = values[~missing].astype("float64")
    return out


def flag(source: str, op: str, cut: float) -> Callable[[Mapping[str, Any], int], np.ndarray]:
    compare = {">": np.greater, ">=": np.greater_equal, "<": np.less}[op]

    def compute(frame: Mapping[str, Any], n: int) -> np.ndarray:
        x = numbers(frame, source, n)
        out = np.full(n, None, dtype=object)
        known = ~np.isnan(x)
        out[known] = compare(x[known], cut)
        return out

    return compute


def threshold(source: str, op: str, cut: float) -> Derivation:
    return Derivation((source,), f"{source} {op} {cut:g}", flag(source, op, cut))


TBS_BANDS = ("under_3", "3_to_8", "9_or_more")


def tbs_band(frame: Mapping[str, Any], n: int) -> np.ndarray:
    tbs = np.sqrt(numbers(frame, "largest_metastasis_cm", n) ** 2 + numbers(frame, "n_liver_metastases", n) ** 2)
    out = np.full(n, None, dtype=object)
    known = ~np.isnan(tbs)
    out[known] = np.where(tbs[known] >= 9, TBS_BANDS[2], np.where(tbs[known] >= 3, TBS_BANDS[1], TBS_BANDS[0]))
    return out


@dataclass(frozen=True)
class Implication:
    """A coarse value another recorded item settles where its own source is missing."""

    source: str
    when: Any  # the source's value that settles it
    value: Any
    rule: str


# A synchronous metastasis is found with (or within 3 months of) the primary: its disease-free interval is 0
# months (the contract's definition), under 12. A metachronous one settles nothing.
IMPLICATIONS: dict[str, Implication] = {
    "disease_free_interval_under_12_months": Implication(
        "synchronous_metastases", True, True,
        "synchronous metastases have a disease-free interval of 0 months, under 12"),
}
