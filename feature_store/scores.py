"""Derived clinical scores, computed from the record (never asked of the user).

All functions are vectorised over a cohort table with contract column names; a
score whose inputs are missing is NaN (never a guess).  `scores_for_record` is
the one-patient convenience used by the service.

These scores were built for survival after resection, not for progression after
PVE: they are the clinicians' yardstick, reported beside the model.

Each score item is read from the contract's coarse form (a flag such as "more than one
liver tumour"), derived from the fine value where there is one (`derive_coarse`): so a
registry that kept only the flags gets the same scores, and the cut-offs are written once,
in the contract.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from feature_store.contract import TBS_BANDS
from feature_store.columns import column_length, column_values
from feature_store.coarse import derive_coarse

SCORE_NAMES = ("tumour_burden_score", "fong_crs", "game_score", "m_crs")
# What each score was built for, shown beside its value (calculator page, model metadata).
SCORE_NOTES: dict[str, dict[str, str]] = {
    "tumour_burden_score": {"name": "Tumour burden score (TBS)", "built_for":
                            "Overall survival after resection of colorectal liver metastases (Sasaki 2018)."},
    "fong_crs": {"name": "Fong clinical risk score (0-5)", "built_for":
                 "Recurrence and survival after hepatectomy for colorectal metastases (Fong 1999)."},
    "game_score": {"name": "GAME score", "built_for":
                   "Overall survival after resection, genetic and morphological (Margonis 2018)."},
    "m_crs": {"name": "Modified clinical risk score (m-CRS)", "built_for":
              "Survival after resection, with RAS status (Brudvik 2019)."},
}


Columns = Mapping[str, Any]  # a DataFrame, or a dict of equal-length lists/arrays


def _num(frame: Columns, name: str) -> np.ndarray:
    n = column_length(frame)
    if name not in frame:
        return np.full(n, np.nan)
    values, missing = column_values(frame, name, n)
    out = np.full(n, np.nan)
    out[~missing] = values[~missing].astype("float64")
    return out


def _flag(frame: Columns, name: str, true_values: tuple[Any, ...] = (True,)) -> np.ndarray:
    """1.0 / 0.0 / NaN for a boolean or a category compared with its 'positive' values."""
    n = column_length(frame)
    if name not in frame:
        return np.full(n, np.nan)
    values, missing = column_values(frame, name, n)
    missing = missing | (values == "unknown")
    out = np.zeros(n)
    for t in true_values:
        out[values == t] = 1.0
    out[missing] = np.nan
    return out


def tumour_burden_score(frame: pd.DataFrame) -> np.ndarray:
    """Sasaki, Ann Surg 2018: sqrt(largest diameter (cm)^2 + number of metastases^2)."""
    return np.sqrt(_num(frame, "largest_metastasis_cm") ** 2 + _num(frame, "n_liver_metastases") ** 2)


_SCORE_ITEMS = ("multiple_liver_metastases", "largest_metastasis_over_5cm", "cea_over_200", "cea_20_or_more",
                "disease_free_interval_under_12_months", "tumour_burden_band")


def _items(frame: Columns) -> dict[str, Any]:
    return derive_coarse(frame, _SCORE_ITEMS)[0]


def fong_crs(frame: Columns) -> np.ndarray:
    return _fong_crs(_items(frame))


def _fong_crs(items: dict[str, Any]) -> np.ndarray:
    """Fong, Ann Surg 1999: one point each for node-positive primary, DFI < 12 months,
    more than one tumour, largest > 5 cm, CEA > 200 ng/mL (0-5)."""
    parts = [_flag(items, "node_positive_primary"), _flag(items, "disease_free_interval_under_12_months"),
             _flag(items, "multiple_liver_metastases"), _flag(items, "largest_metastasis_over_5cm"),
             _flag(items, "cea_over_200")]
    return np.sum(parts, axis=0)  # NaN if any part is NaN


def game_score(frame: Columns) -> np.ndarray:
    return _game_score(_items(frame))


def _game_score(items: dict[str, Any]) -> np.ndarray:
    """Margonis, Br J Surg 2018: KRAS mutant 1, CEA >= 20 ng/mL 1, node-positive primary 1,
    TBS 3-8 1 / >= 9 2, extrahepatic disease 2 (0-7). We use RAS status for KRAS."""
    tbs_points = (_flag(items, "tumour_burden_band", (TBS_BANDS[1],))
                  + 2.0 * _flag(items, "tumour_burden_band", (TBS_BANDS[2],)))
    parts = [
        _flag(items, "ras_status", ("mutant",)),
        _flag(items, "cea_20_or_more"),
        _flag(items, "node_positive_primary"),
        tbs_points,
        2.0 * _flag(items, "extrahepatic_disease"),
    ]
    return np.sum(parts, axis=0)


def game_group(score: float) -> str | None:
    """GAME groups: 0-1 low, 2-3 medium, >= 4 high."""
    if score is None or math.isnan(score):
        return None
    return "low" if score <= 1 else "medium" if score <= 3 else "high"


def m_crs(frame: Columns) -> np.ndarray:
    return _m_crs(_items(frame))


def _m_crs(items: dict[str, Any]) -> np.ndarray:
    """Brudvik, Ann Surg 2019: one point each for RAS mutant, node-positive primary, largest > 5 cm (0-3)."""
    parts = [
        _flag(items, "ras_status", ("mutant",)),
        _flag(items, "node_positive_primary"),
        _flag(items, "largest_metastasis_over_5cm"),
    ]
    return np.sum(parts, axis=0)


def score_arrays(frame: Columns) -> dict[str, np.ndarray]:
    items = _items(frame)  # the coarse items derived once for all three scores (a per-request path)
    return {
        "tumour_burden_score": tumour_burden_score(frame),
        "fong_crs": _fong_crs(items),
        "game_score": _game_score(items),
        "m_crs": _m_crs(items),
    }


# Each score's items: (what the item is, the coarse or plain feature read for it).
SCORE_ITEMS: dict[str, tuple[tuple[str, str], ...]] = {
    "tumour_burden_score": (("number of liver metastases", "n_liver_metastases"),
                            ("largest metastasis diameter", "largest_metastasis_cm")),
    "fong_crs": (("node-positive primary", "node_positive_primary"),
                 ("disease-free interval under 12 months", "disease_free_interval_under_12_months"),
                 ("more than one liver metastasis", "multiple_liver_metastases"),
                 ("largest metastasis over 5 cm", "largest_metastasis_over_5cm"),
                 ("CEA over 200 ng/mL", "cea_over_200")),
    "game_score": (("RAS mutation", "ras_status"), ("CEA 20 ng/mL or more", "cea_20_or_more"),
                   ("node-positive primary", "node_positive_primary"), ("tumour burden band", "tumour_burden_band"),
                   ("extrahepatic disease", "extrahepatic_disease")),
    "m_crs": (("RAS mutation", "ras_status"), ("node-positive primary", "node_positive_primary"),
              ("largest metastasis over 5 cm", "largest_metastasis_over_5cm")),
}


def item_coverage(frame: Columns, score: str) -> list[tuple[str, int]]:
    """Per item of a score: how many patients have it (directly, from its fine value, or settled by another
    recorded item such as synchronous metastases for the disease-free interval)."""
    items = _items(frame)
    n = column_length(frame)
    out = []
    for label, name in SCORE_ITEMS[score]:
        source = items if name in items else frame
        if name not in source:
            out.append((label, 0))
            continue
        values, missing = column_values(source, name, n)
        missing = missing | (np.asarray(values, dtype=object) == "unknown")
        out.append((label, int((~missing).sum())))
    return out


def why_not_computed(frame: Columns, score: str) -> str | None:
    """Which items keep a score from being computed, by name (None when every patient has it)."""
    n = column_length(frame)
    coverage = item_coverage(frame, score)
    absent = [label for label, k in coverage if k == 0]
    partial = [f"{label} ({n - k} of {n} patients)" for label, k in coverage if 0 < k < n]
    if absent:
        return (f"{', '.join(absent)} not recorded in this cohort (nor a coarse form or an item that settles it)"
                + (f"; also missing for some patients: {', '.join(partial)}" if partial else ""))
    if partial:
        return f"computed where every item is known; missing for some patients: {', '.join(partial)}"
    return None


def compute_scores(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(score_arrays(frame), index=frame.index)


def scores_for_record(record: dict[str, Any]) -> dict[str, float | None]:
    arrays = score_arrays({k: [v] for k, v in record.items()})
    return {k: (None if math.isnan(v[0]) else float(v[0])) for k, v in arrays.items()}
