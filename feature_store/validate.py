"""Column-wise validation of a cohort table against the feature contract.

Vectorised (one pass per column, never one object per row) so the same code checks
a 100,000-row training file and a 10,000-row batch request.  Every problem is
reported at once with its row, column, value and rule.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from feature_store import contract as c

TRUE_TEXT = {"true", "1", "yes", "y", "t", "1.0"}
FALSE_TEXT = {"false", "0", "no", "n", "f", "0.0"}


@dataclass(frozen=True)
class Problem:
    row: int | None  # 1-based data row (header excluded); None for a whole-column problem
    column: str
    value: str | None
    rule: str
    # imports: the export's own column and value as exported ("'Max size (mm)' = -12 mm"), beside the
    # contract's column and converted value
    source: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CohortValidationError(ValueError):
    """A cohort table broke the contract; `problems` lists every bad row and column."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        rows = {p.row for p in problems if p.row is not None}
        super().__init__(
            f"{len(problems)} problem(s) in {len(rows)} row(s): "
            + "; ".join(f"row {p.row} {p.column}={p.value!r}: {p.rule}" for p in problems[:5])
            + (" ..." if len(problems) > 5 else "")
        )


def _show(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return str(v)[:60]


_blank = np.frompyfunc(lambda v: isinstance(v, str) and not v.strip(), 1, 1)


def _is_missing(series: pd.Series) -> np.ndarray:
    if series.dtype != object:  # typed columns (numbers, bools from JSON) cannot hold blank text
        return series.isna().to_numpy()
    obj = series.to_numpy()
    return pd.isna(obj) | _blank(obj).astype(bool)


def _problems(mask: np.ndarray, series: pd.Series, column: str, rule: str, row_numbers: np.ndarray) -> list[Problem]:
    idx = np.flatnonzero(mask)
    values = series.to_numpy(dtype=object)
    return [Problem(int(row_numbers[i]), column, _show(values[i]), rule) for i in idx]


_is_bool = np.frompyfunc(lambda v: isinstance(v, bool), 1, 1)
_is_real = np.frompyfunc(lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool), 1, 1)


def _not_a_json_number(series: pd.Series, json_types: bool) -> np.ndarray:
    """Cells of a number column that hold a boolean (or, for JSON, anything but a number). Typed
    columns need no look at their cells; only mixed (object) columns are checked one by one."""
    if series.dtype == bool:
        return np.ones(len(series), dtype=bool)
    if series.dtype != object:
        return np.zeros(len(series), dtype=bool)
    values = series.to_numpy()
    if json_types:
        return ~pd.isna(values) & ~_is_real(values).astype(bool)
    return _is_bool(values).astype(bool)


def _not_a_json_boolean(series: pd.Series) -> np.ndarray:
    if series.dtype == bool:
        return np.zeros(len(series), dtype=bool)
    if series.dtype != object:
        return np.ones(len(series), dtype=bool)
    return ~_is_bool(series.to_numpy()).astype(bool)


def parse_boolean(series: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Text/number/bool -> nullable boolean; second value marks unparseable entries."""
    if series.dtype == bool:  # already booleans (JSON true/false): nothing to parse
        return series.astype("boolean"), np.zeros(len(series), dtype=bool)
    if isinstance(series.dtype, pd.BooleanDtype):  # typed with missing values (Arrow, Parquet)
        return series, np.zeros(len(series), dtype=bool)
    missing = _is_missing(series)
    if series.dtype == object and all(isinstance(v, bool) for v in series.to_numpy()[~missing]):
        out = series.astype("object").where(~missing, None).astype("boolean")
        return out, np.zeros(len(series), dtype=bool)
    text = series.astype("object").where(~missing, None).map(lambda v: "" if v is None else str(v).strip().lower())
    is_true = text.isin(TRUE_TEXT).to_numpy()
    is_false = text.isin(FALSE_TEXT).to_numpy()
    bad = ~missing & ~is_true & ~is_false
    out = pd.array([True if t else False if f else pd.NA for t, f in zip(is_true, is_false)], dtype="boolean")
    return pd.Series(out, index=series.index), bad


def validate_frame(
    frame: pd.DataFrame,
    *,
    names: list[str] | None = None,
    required: list[str] | tuple[str, ...] = (),
    require_outcome: bool = False,
    row_numbers: np.ndarray | None = None,
    json_types: bool = False,
) -> tuple[pd.DataFrame, list[Problem]]:
    """Check and normalise a cohort table.

    Returns the table cast to the contract dtypes (bad cells set to missing) and the
    list of problems.  `names` limits the features checked (default: every feature
    present). Which features are required is the caller's (a model's) business, never the
    contract's: a cohort's features are what it recorded.

    A boolean is never a number (`true` is not one metastasis). `json_types` (a JSON request, not
    a cohort file) also refuses what only a text file excuses: numbers as text, 1/0 or "yes" as
    booleans, blank text as missing.
    """
    rows = np.arange(1, len(frame) + 1) if row_numbers is None else row_numbers
    problems: list[Problem] = []
    out = frame.copy()
    checked = [f for f in c.FEATURES if (names is None and f.name in frame) or (names is not None and f.name in names)]
    for name in required:
        f = c.BY_NAME[name]
        if f.name not in frame:
            problems.append(Problem(None, f.name, None, f"required column missing ({f.description}, {f.range_text})"))
    for f in checked:
        if f.name not in frame:
            continue
        col = frame[f.name]
        missing = col.isna().to_numpy() if json_types else _is_missing(col)
        if f.name in required:
            problems += _problems(missing, col, f.name, f"required value missing; allowed {f.range_text}", rows)
        if f.kind in (c.Kind.NUMBER, c.Kind.INTEGER):
            out[f.name] = _check_number(f, col, missing, json_types, rows, problems)
        elif f.kind is c.Kind.BOOLEAN:
            out[f.name] = _check_boolean(f, col, missing, json_types, rows, problems)
        else:
            out[f.name] = _check_category(f, col, missing, json_types, rows, problems)
    if require_outcome:
        _check_outcome(frame, out, rows, problems)
    if c.PATIENT_ID in frame:
        dup = frame[c.PATIENT_ID].duplicated(keep="first").to_numpy() & ~_is_missing(frame[c.PATIENT_ID])
        # ids are pseudonymous but still never shown: report the row only
        problems += [Problem(int(rows[i]), c.PATIENT_ID, None, "duplicate patient id") for i in np.flatnonzero(dup)]
    problems.sort(key=lambda p: (p.row if p.row is not None else 0, p.column))
    return out, problems


# Each check below appends its problems to the caller's list (the order they are found in is kept for
# problems of the same row and column) and returns the column cast, its bad cells missing.

def _check_number(f: c.Feature, col: pd.Series, missing: np.ndarray, json_types: bool, rows: np.ndarray,
                  problems: list[Problem]) -> np.ndarray:
    num = (col.astype("float64") if col.dtype.kind in "fiu" else
           pd.to_numeric(col.astype("object").where(~missing, None), errors="coerce").astype("float64"))
    arr = num.to_numpy()
    not_number = ~missing & (np.isnan(arr) | _not_a_json_number(col, json_types))
    problems += _problems(not_number, col, f.name, f"not a number; allowed {f.range_text}", rows)
    with np.errstate(invalid="ignore"):
        out_of_range = ~np.isnan(arr) & ((arr < f.minimum) | (arr > f.maximum))
    problems += _problems(out_of_range, col, f.name, f"outside the allowed range {f.range_text}", rows)
    bad = not_number | out_of_range
    if f.kind is c.Kind.INTEGER:
        frac = ~np.isnan(arr) & ~out_of_range & (np.floor(arr) != arr)
        problems += _problems(frac, col, f.name, f"not a whole number; allowed {f.range_text}", rows)
        bad |= frac
    arr = arr.copy()
    arr[bad] = np.nan
    return arr


def _check_boolean(f: c.Feature, col: pd.Series, missing: np.ndarray, json_types: bool, rows: np.ndarray,
                   problems: list[Problem]) -> pd.Series:
    parsed, bad = parse_boolean(col)
    if json_types:
        bad = bad | (~missing & _not_a_json_boolean(col))
    problems += _problems(bad, col, f.name, "not a boolean; allowed true or false" if json_types
                          else "not a boolean; allowed true/false (or 1/0, yes/no)", rows)
    parsed[bad] = pd.NA
    return parsed


def _check_category(f: c.Feature, col: pd.Series, missing: np.ndarray, json_types: bool, rows: np.ndarray,
                    problems: list[Problem]) -> pd.Series:
    text = col.astype("object").where(~missing, None)
    # strip only when needed, and only in files: JSON has exact strings (as /v1/predict)
    if not json_types and not text.isin(f.categories).to_numpy()[~missing].all():
        text = text.map(lambda v: None if v is None else str(v).strip())
    bad = ~missing & ~text.isin(f.categories).to_numpy()
    problems += _problems(bad, col, f.name, f"unknown category; allowed {f.range_text}", rows)
    text[bad | missing] = None
    return text.astype("string")


def _check_outcome(frame: pd.DataFrame, out: pd.DataFrame, rows: np.ndarray, problems: list[Problem]) -> None:
    """The outcome of a training cohort: present, and true or false on every row."""
    if c.OUTCOME not in frame:
        problems.append(Problem(None, c.OUTCOME, None, "outcome column missing (true/false)"))
        return
    parsed, bad = parse_boolean(frame[c.OUTCOME])
    missing = _is_missing(frame[c.OUTCOME])
    problems += _problems(bad | missing, frame[c.OUTCOME], c.OUTCOME,
                          "outcome must be true or false, never missing", rows)
    out[c.OUTCOME] = parsed
