"""The import's value rules, one column at a time: sentinels and codes compared by value, recodes that never
undo a blanked sentinel, intervals from two date columns (weeks and months, sentinel dates, a date format)
and the dates that do not parse, word for word (docs/MUTATION.md lists the mutants these tests kill)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_store.import_cohort import _interval, _mapped_column, _norm
from feature_store.mapping import ColumnMap
from feature_store.validate import Problem


@pytest.mark.parametrize("value, normal", [
    (True, "True"), (3, "3"), (np.int64(3), "3"), (-999.0, "-999"), (2.5, "2.5"), (np.float32(4.0), "4"),
    (" -999 ", "-999"), ("1.0", "1"), ("2.50", "2.5"), ("abc", "abc"), ("nan", "nan"), ("inf", "inf"),
    ("-inf", "-inf"), ("NaN", "NaN"), ("Infinity", "Infinity"),  # not numbers: compared as written
])
def test_sentinels_and_codes_are_compared_by_value(value, normal):
    assert _norm(value) == normal


def test_a_recode_never_undoes_a_blanked_sentinel():
    raw = pd.Series(["-999", "1", "None", "2"])
    cm = ColumnMap(source="x", recode={"None": "unknown", 1: "mutant"})
    assert _mapped_column(raw, "ras_status", cm, {"-999"}).tolist() == [None, "mutant", "unknown", "2"]


def _dates(start, end):
    return pd.DataFrame({"a": start, "b": end})


def test_weeks_between_two_dates_with_sentinel_dates_left_missing():
    raw = _dates(["2024-01-01", "-999", "2024-01-01"], ["2024-01-15", "2024-02-01", "2024-01-11"])
    weeks, problems = _interval(raw, "planned_interval_weeks", ColumnMap(weeks_between=("a", "b")), {"-999"}, None)
    assert weeks.iloc[0] == 2.0 and np.isnan(weeks.iloc[1]) and weeks.iloc[2] == 1.4 and problems == []
    months, _ = _interval(raw, "x", ColumnMap(months_between=("a", "b")), {"-999"}, None)
    assert months.iloc[0] == round(14 / (365.25 / 12), 1)


def test_a_date_format_is_used_for_both_columns():
    raw = _dates(["01/02/2024"], ["08/02/2024"])  # day first: 1 and 8 February, not 2 January and 2 August
    weeks, problems = _interval(raw, "w", ColumnMap(weeks_between=("a", "b")), set(), "%d/%m/%Y")
    assert weeks.tolist() == [1.0] and problems == []


def test_a_date_that_does_not_parse_is_named_by_row_and_a_wrong_format_once():
    raw = _dates(["2024-01-01", "soon", "2024-01-01"], ["2024-01-15", "2024-01-15", "2024-01-15"])
    _, problems = _interval(raw, "w", ColumnMap(weeks_between=("a", "b")), set(), None)
    assert problems == [Problem(2, "w", "soon", "a: not a date")]
    raw = _dates(["2024-01-01", "2024-01-02"], ["x" * 50, "2024-01-15"])
    _, problems = _interval(raw, "w", ColumnMap(weeks_between=("a", "b")), set(), "%Y-%m-%d")
    assert problems == [Problem(1, "w", "x" * 40, "b: not a date with date_format '%Y-%m-%d'")]
    _, problems = _interval(_dates(["01.02.2024"], ["03.02.2024"]), "w", ColumnMap(weeks_between=("a", "b")), set(),
                            "%Y-%m-%d")
    assert problems == [Problem(None, "w", None, "none of the dates in 'a' parse with date_format '%Y-%m-%d': check "
                                                 "`date_format` in the mapping"),
                        Problem(None, "w", None, "none of the dates in 'b' parse with date_format '%Y-%m-%d': check "
                                                 "`date_format` in the mapping")]
