"""What a registry's data manager reads after an import: the report (on the result and as JSON), every
problem word for word (row, column, the value as exported, the allowed values) and the order they come in
(docs/MUTATION.md lists the mutants these tests kill)."""

from __future__ import annotations

import json
import textwrap

import pandas as pd
import pytest

from feature_store import contract as c
from feature_store.import_cohort import (
    ImportResult,
    _as_exported,
    _decide,
    import_cohort,
)
from feature_store.mapping import Mapping
from feature_store.validate import Problem
from tests.fixtures.registry import SMALL_MAPPING
from tests.fixtures.registry import export_and_mapping as _files

BASE = SMALL_MAPPING + "  n_liver_metastases: {source: n_mets}\n"
HEADER = "pid,Age,Sex,n_mets,pve_date,progressed"
ROWS = ["p1,61,1,3,2024-01-10,0", "p2,55,2,1,2024-02-11,1", "p3,70,1,7,2024-03-12,0"]
INVALID = ("1 of 3 rows are invalid (fix them, or write the valid rows with --drop-invalid, up to --max-drop 10% "
           "of rows)")


def test_the_report_of_a_written_import_says_what_was_mapped_and_where_it_went(tmp_path):
    mapping = BASE + textwrap.dedent("""
        scores: {fong_crs: {source: fong}}
        not_collected: [primary_side, ras_status]
        study: {population: pve_only, site: Hospital A}
    """)
    src, m = _files(tmp_path, mapping, HEADER + ",fong", [r + ",2" for r in ROWS])
    out, report = tmp_path / "cohort.parquet", tmp_path / "reports" / "2024" / "import.json"
    res = import_cohort(src, m, out, report=report)  # the report's folders are made
    unmapped = [n for n in c.fine_feature_names()
                if n not in ("age_years", "sex", "n_liver_metastases", "primary_side", "ras_status")]
    assert res.report() == {
        "ok": True, "reason": None, "rows_in": 3, "rows_out": 3, "dropped_rows": [], "dropped_split": [],
        "warnings": [], "features": ["age_years", "sex", "n_liver_metastases"],
        "not_collected": ["primary_side", "ras_status"], "unmapped": unmapped, "recorded_scores": ["fong_crs"],
        "study_design": {"population": "pve_only", "site": "Hospital A"}, "problems": [], "written": str(out)}
    assert report.read_text() == json.dumps(res.report(), indent=2)  # indented, for a person to read


def test_the_report_of_a_refused_import_lists_each_problem_and_writes_nothing(tmp_path):
    src, m = _files(tmp_path, BASE, HEADER, [ROWS[0], "p2,150,2,1,2024-02-11,1", ROWS[2]])
    out = tmp_path / "cohort.parquet"
    res = import_cohort(src, m, out)
    assert res.cohort is not None and not out.exists()  # validated, but not written
    rep = res.report()
    assert (rep["ok"], rep["reason"], rep["rows_in"], rep["rows_out"], rep["written"]) == (False, INVALID, 3, 0, None)
    assert rep["problems"] == [{"row": 2, "column": "age_years", "value": "150",
                                "rule": "outside the allowed range 18 to 100 years", "source": "'Age' = 150"}]


def test_an_empty_export_is_named_as_such(tmp_path):
    src, m = _files(tmp_path, BASE, HEADER, [])
    res = import_cohort(src, m, tmp_path / "cohort.parquet")
    assert res.problems == [Problem(None, "*", None, "the file has no data rows")]
    assert res.reason == "the file has no data rows" and res.report()["rows_out"] == 0


def test_without_an_output_file_nothing_is_written_and_the_report_says_why(tmp_path):
    src, m = _files(tmp_path, BASE, HEADER, ROWS)
    res = import_cohort(src, m, None)
    assert not res.ok and res.reason == "no output file given"
    assert res.report()["rows_out"] == 0 and res.report()["written"] is None


def test_whole_column_problems_come_first_then_rows_in_order(tmp_path):
    mapping = BASE + ("  disease_free_interval_months: {months_between: [prim, met]}\n"
                      "  planned_interval_weeks: {weeks_between: [embol, surg]}\n")
    header = HEADER + ",prim,met,embol,surg"
    dates = ",2020-01-01,2021-01-01,2024-01-10,soon"
    rows = [ROWS[0] + dates.replace("2020-01-01", "unknown"),
            ROWS[1].replace("2024-02-11", "soon") + dates,
            ROWS[2].replace("2024-03-12", "x" * 50) + dates,
            "p4,66,2,2,NA,1" + dates]  # a sentinel date is missing, not wrong
    src, m = _files(tmp_path, mapping, header, rows)
    res = import_cohort(src, m, tmp_path / "cohort.parquet")
    assert res.problems == [
        Problem(None, "planned_interval_weeks", None,
                "none of the dates in 'surg' parse: check `date_format` in the mapping"),
        Problem(1, "disease_free_interval_months", "unknown", "prim: not a date"),
        Problem(2, c.EVENT_TIMESTAMP, "soon", "not a date"),
        Problem(3, c.EVENT_TIMESTAMP, "x" * 40, "not a date"),
    ]
    assert res.reason == ("planned_interval_weeks: none of the dates in 'surg' parse: check `date_format` in the "
                          "mapping (a whole-column problem: dropping rows cannot fix it; fix the mapping or the "
                          "export)")


def test_a_date_column_the_export_lacks_is_named(tmp_path):
    src, m = _files(tmp_path, BASE, HEADER.replace("pve_date", "date_pve"), ROWS)
    res = import_cohort(src, m, tmp_path / "cohort.parquet")
    assert res.problems == [Problem(None, c.EVENT_TIMESTAMP, None, "source column 'pve_date' not in the file")]


def test_a_row_problem_names_the_exported_cell_from_the_first_row_on(tmp_path):
    src, m = _files(tmp_path, BASE, HEADER, ["p1,61," + "x" * 50 + ",3,2024-01-10,0", *ROWS[1:]])
    res = import_cohort(src, m, tmp_path / "cohort.parquet")
    assert res.problems == [Problem(1, "sex", "x" * 50, "unknown category; allowed one of female, male",
                                    source="'Sex' = " + "x" * 40)]


def test_a_problem_that_cannot_be_traced_to_an_exported_cell_is_left_as_it_is():
    raw = pd.DataFrame({"Sex": ["1", "2", "3"]})
    mapping = Mapping.model_validate({"columns": {"sex": {"source": "Sex"}, "age_years": {"source": "Age"}}})
    untraceable = [Problem(None, "sex", None, "whole column"), Problem(0, "sex", "x", "before the first row"),
                   Problem(4, "sex", "x", "after the last row"), Problem(2, "age_years", "x", "no such column"),
                   Problem(2, c.OUTCOME, "x", "not mapped under columns")]
    assert _as_exported(untraceable, raw, mapping) == untraceable
    assert _as_exported([Problem(3, "sex", "3", "r")], raw, mapping) == [Problem(3, "sex", "3", "r", "'Sex' = 3")]


def test_a_whole_column_problem_stops_the_write_whatever_found_it():
    cohort = pd.DataFrame({"age_years": [61.0, 55.0]})
    result = ImportResult(cohort=cohort, problems=[Problem(None, "age_years", None, "wrong")], rows_in=2)
    _decide(result, [], drop_invalid=True, max_drop=1.0)
    assert result.reason == "a whole column is wrong: dropping rows cannot fix it (fix the mapping or the export)"
    stated = ImportResult(cohort=cohort, problems=[Problem(None, "age_years", None, "wrong")], rows_in=2,
                          reason="age_years: wrong")
    _decide(stated, [], drop_invalid=True, max_drop=1.0)
    assert stated.reason == "age_years: wrong"  # the first reason found is the one given


def test_an_unknown_non_resection_reason_names_the_allowed_ones(tmp_path):
    mapping = BASE + "non_resection_reason: {source: why, recode: {1: none, 2: progression, 3: insufficient_flr}}\n"
    rows = [ROWS[0] + ",1", ROWS[1] + ",9", ROWS[2] + ",2", "p4,60,1,2,2024-04-01,0," + "x" * 70,
            "p5,60,2,2,2024-04-02,0,NA", "p6,60,2,2,2024-04-03,0,3"]
    src, m = _files(tmp_path, mapping, HEADER + ",why", rows)
    out = tmp_path / "cohort.parquet"
    res = import_cohort(src, m, out, drop_invalid=True, max_drop=0.5)
    allowed = ("unknown reason; allowed one of none, progression, insufficient_flr, complication, other "
               "(recode it in the mapping)")
    assert res.problems == [Problem(2, c.NON_RESECTION_REASON, "9", allowed),
                            Problem(4, c.NON_RESECTION_REASON, "x" * 60, allowed)]
    written = pd.read_parquet(out)
    assert written[c.NON_RESECTION_REASON].tolist() == ["none", "progression", pd.NA, "insufficient_flr"]


def test_recorded_scores_are_numbers_blank_is_missing_and_text_a_problem(tmp_path):
    mapping = BASE + 'missing_values: ["NA"]\nscores: {fong_crs: {source: fong}}\n'
    fong = ["2", "", "  ", "high", "NA", "3.0", "x" * 70]
    rows = [f"p{i},60,1,2,2024-01-0{i},0,{v}" for i, v in enumerate(fong, start=1)]
    src, m = _files(tmp_path, mapping, HEADER + ",fong", rows)
    out = tmp_path / "cohort.parquet"
    res = import_cohort(src, m, out, drop_invalid=True, max_drop=0.5)
    col = c.RECORDED_SCORE_PREFIX + "fong_crs"
    assert res.problems == [Problem(4, col, "high", "recorded score is not a number"),
                            Problem(7, col, "x" * 60, "recorded score is not a number")]
    written = pd.read_parquet(out)
    assert written[c.PATIENT_ID].tolist() == ["p1", "p2", "p3", "p5", "p6"]
    assert written[col].tolist() == pytest.approx([2.0, float("nan"), float("nan"), float("nan"), 3.0],
                                                  nan_ok=True)


def test_a_coarse_form_contradicting_its_fine_sources_names_them_all_and_its_value(tmp_path):
    mapping = BASE + textwrap.indent("largest_metastasis_cm: {source: max_cm}\ntumour_burden_band: {source: tbs}\n"
                                     "multiple_liver_metastases: {source: many}\n", "  ")
    rows = [ROWS[0] + ",4.2,3_to_8,1", ROWS[1] + ",2.0,9_or_more,1", ROWS[2] + ",6.0,9_or_more,1"]
    src, m = _files(tmp_path, mapping, HEADER + ",max_cm,tbs,many", rows)
    res = import_cohort(src, m, tmp_path / "cohort.parquet")
    assert res.problems == [
        Problem(2, "multiple_liver_metastases", "True",
                "contradicts n_liver_metastases (rule: n_liver_metastases > 1)"),
        Problem(2, "tumour_burden_band", "9_or_more",
                "contradicts n_liver_metastases, largest_metastasis_cm (rule: TBS = sqrt(largest_metastasis_cm^2 + "
                "n_liver_metastases^2): < 3, 3-8, >= 9)"),
    ]


def test_a_post_pve_column_the_mapping_fills_is_validated_like_any_other(tmp_path):
    """Found by these tests: degree_hypertrophy_pp mapped from the export went unvalidated (999 written as is,
    text crashed the write with a traceback)."""
    mapping = BASE + "  degree_hypertrophy_pp: {source: dh}\n"
    src, m = _files(tmp_path, mapping, HEADER + ",dh", [ROWS[0] + ",999", ROWS[1] + ",abc", ROWS[2] + ",8.5"])
    res = import_cohort(src, m, tmp_path / "cohort.parquet")
    assert res.problems == [
        Problem(1, "degree_hypertrophy_pp", "999", "outside the allowed range -20 to 60 percentage points",
                "'dh' = 999"),
        Problem(2, "degree_hypertrophy_pp", "abc", "not a number; allowed -20 to 60 percentage points", "'dh' = abc")]


def test_every_recorded_score_column_has_its_problems_named(tmp_path):
    mapping = BASE + "scores: {fong_crs: {source: fong}, game_score: {source: game}}\n"
    rows = [ROWS[0] + ",high,1", ROWS[1] + ",1,low", ROWS[2] + ",2,3"]
    src, m = _files(tmp_path, mapping, HEADER + ",fong,game", rows)
    res = import_cohort(src, m, tmp_path / "cohort.parquet")
    assert res.problems == [Problem(1, c.RECORDED_SCORE_PREFIX + "fong_crs", "high", "recorded score is not a number"),
                            Problem(2, c.RECORDED_SCORE_PREFIX + "game_score", "low", "recorded score is not a number")]


def test_a_count_recorded_only_as_its_coarse_form_is_not_called_unmapped(tmp_path):
    mapping = BASE.replace("n_liver_metastases: {source: n_mets}", "multiple_liver_metastases: {source: n_mets}")
    src, m = _files(tmp_path, mapping, HEADER, [r.replace(",3,", ",1,").replace(",7,", ",0,") for r in ROWS])
    res = import_cohort(src, m, tmp_path / "cohort.parquet")
    assert res.ok and res.features == ["age_years", "sex", "multiple_liver_metastases"]
    assert "n_liver_metastases" not in res.unmapped and "largest_metastasis_cm" in res.unmapped
