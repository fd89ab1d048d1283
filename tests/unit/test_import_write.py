"""What an import puts on disk and which rows it leaves out: ids and dates as exported, the study design and
what the mapping said in the file's metadata, the rows --drop-invalid drops (up to --max-drop, never all),
how the dropped rows split by group, and the export formats read (docs/MUTATION.md lists the mutants these
tests kill)."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

from feature_store import contract as c
from feature_store.import_cohort import dropped_split, import_cohort, read_source
from feature_store.mapping import Mapping
from feature_store.study import read_cohort_metadata
from tests.fixtures.registry import SMALL_MAPPING
from tests.fixtures.registry import export_and_mapping as _files

BASE = SMALL_MAPPING
HEADER = "pid,Age,Sex,pve_date,progressed"
ROWS = ["p1,61,1,2024-01-10,0", "p2,150,2,2024-02-11,1", "p3,70,1,2024-03-12,0", "p4,58,1,2024-04-13,1"]


def test_the_written_cohort_carries_the_design_and_what_the_mapping_said(tmp_path):
    mapping = BASE + textwrap.dedent("""
        not_collected: [ras_status]
        scores: {fong_crs: {source: fong}}
        study: {population: pve_only, site: Hospital A, progression_definition: RECIST 1.1}
    """)
    src, m = _files(tmp_path, mapping, HEADER + ",fong", [r + ",1" for r in ROWS])
    out = tmp_path / "cohort.parquet"
    res = import_cohort(src, m, out, drop_invalid=True, max_drop=0.25)  # 1 of 4: exactly the most allowed
    assert res.ok and res.dropped_rows == [2]
    assert read_cohort_metadata(out) == {
        "study_design": {"population": "pve_only", "site": "Hospital A", "progression_definition": "RECIST 1.1"},
        "not_collected": ["ras_status"], "unmapped": res.unmapped, "recorded_scores": ["fong_crs"],
        "source_rows": 4, "dropped_rows": 1, "has_outcome": True}
    written = pd.read_parquet(out)
    assert written[c.PATIENT_ID].tolist() == ["p1", "p3", "p4"]  # the invalid second row left out
    assert written[c.PROGRESSION_DEFINITION].tolist() == ["RECIST 1.1"] * 3
    assert written[c.EVENT_TIMESTAMP].tolist() == [pd.Timestamp(d) for d in ("2024-01-10", "2024-03-12",
                                                                               "2024-04-13")]
    assert len(res.cohort) == 3 and res.report()["rows_out"] == 3
    assert {"column": "sex", "level": "female", "dropped": 1, "share_of_dropped": 1.0, "share_of_all": 0.25} \
        in res.dropped_split


def test_patients_to_score_are_written_without_an_outcome_and_rows_named_as_in_the_export(tmp_path):
    mapping = BASE.replace("id_column: pid\n", "").replace(
        "outcome: {source: progressed, recode: {1: true, 0: false}}\n", "")
    src, m = _files(tmp_path, mapping, HEADER, ROWS)
    out = tmp_path / "to_score.parquet"
    assert import_cohort(src, m, out, drop_invalid=True, max_drop=0.5).ok
    assert read_cohort_metadata(out)["has_outcome"] is False
    assert pd.read_parquet(out)[c.PATIENT_ID].tolist() == ["ROW-1", "ROW-3", "ROW-4"]


def test_a_mapping_that_maps_no_column_still_keeps_one_row_per_patient(tmp_path):
    src, m = _files(tmp_path, "not_collected: [primary_side]\n", "anything", ["a", "b", "c"])
    out = tmp_path / "cohort.parquet"
    res = import_cohort(src, m, out)
    assert res.ok and pd.read_parquet(out)[c.PATIENT_ID].tolist() == ["ROW-1", "ROW-2", "ROW-3"]


def test_when_every_row_is_invalid_nothing_is_written(tmp_path):
    src, m = _files(tmp_path, BASE, HEADER, [r.replace(",61,", ",9,").replace(",70,", ",7,").replace(",58,", ",5,")
                                             for r in ROWS])
    out = tmp_path / "cohort.parquet"
    res = import_cohort(src, m, out, drop_invalid=True, max_drop=1.0)
    assert res.reason == "no valid rows left to write" and not res.ok and not out.exists()


def test_dates_sentinels_and_ids_are_read_as_the_mapping_says(tmp_path):
    mapping = BASE.replace("  age_years: {source: Age}", "  age_years: {source: Age, missing_values: [999]}") + \
        'date_format: "%d/%m/%Y"\nrecord_dates: {laboratory: lab_date}\n'
    rows = ["007,61,1,01/02/2024,0,03/01/2024", "p2,999,2,02/03/2024,1,soon", "p3,70,1,03/04/2024,0,NA"]
    src, m = _files(tmp_path, mapping, HEADER + ",lab_date", rows)
    res = import_cohort(src, m, None)
    lab = c.RECORDED_AT_PREFIX + "laboratory"
    assert [(p.row, p.column, p.value, p.rule) for p in res.problems] == [(2, lab, "soon", "not a date")]
    assert np.isnan(res.cohort["age_years"].iloc[1])  # 999 is this column's own sentinel, not an age of 999
    assert import_cohort(src, m, tmp_path / "cohort.parquet", drop_invalid=True, max_drop=0.5).ok
    written = pd.read_parquet(tmp_path / "cohort.parquet")
    assert written[c.PATIENT_ID].tolist() == ["007", "p3"]
    assert written[c.EVENT_TIMESTAMP].tolist() == [pd.Timestamp("2024-02-01"), pd.Timestamp("2024-04-03")]
    assert written[lab].iloc[0] == pd.Timestamp("2024-01-03") and pd.isna(written[lab].iloc[1])


def _cohort(n: int, **columns) -> pd.DataFrame:
    return pd.DataFrame({k: v for k, v in columns.items()}, index=range(n))


def test_the_dropped_rows_split_by_outcome_and_every_category_column():
    cohort = _cohort(6, **{c.OUTCOME: [True, False, False, True, False, False],
                           "sex": ["female", "male", "male", "female", "male", "male"],
                           "ras_status": ["mutant", None, "wild_type", None, "wild_type", "mutant"]})
    rows, warnings = dropped_split(cohort, np.array([True, True, False, True, False, False]))
    assert rows == [  # primary_side, between sex and ras_status in the contract, is not in this cohort
        {"column": c.OUTCOME, "level": "False", "dropped": 1, "share_of_dropped": 0.333, "share_of_all": 0.667},
        {"column": c.OUTCOME, "level": "True", "dropped": 2, "share_of_dropped": 0.667, "share_of_all": 0.333},
        {"column": "sex", "level": "female", "dropped": 2, "share_of_dropped": 0.667, "share_of_all": 0.333},
        {"column": "sex", "level": "male", "dropped": 1, "share_of_dropped": 0.333, "share_of_all": 0.667},
        {"column": "ras_status", "level": "missing", "dropped": 2, "share_of_dropped": 0.667, "share_of_all": 0.333},
        {"column": "ras_status", "level": "mutant", "dropped": 1, "share_of_dropped": 0.333, "share_of_all": 0.333},
        {"column": "ras_status", "level": "wild_type", "dropped": 0, "share_of_dropped": 0.0, "share_of_all": 0.333},
    ]
    assert warnings == []  # three dropped rows are too few to call a pattern
    assert dropped_split(cohort, np.zeros(6, dtype=bool)) == ([], [])


@pytest.mark.parametrize("n, n_female, dropped_female, dropped_male, warned", [
    (20, 10, 5, 0, "sex=female: 100% of the dropped rows against 50% of all rows"),  # twice its share, exactly
    (24, 6, 3, 3, "sex=female: 50% of the dropped rows against 25% of all rows"),  # half the dropped rows, exactly
    (20, 10, 4, 0, None),  # four dropped rows: too few
    (24, 7, 3, 3, None),  # 50% of the dropped against 29%: under twice its share
])
def test_a_warning_names_the_group_the_dropped_rows_concentrate_in(n, n_female, dropped_female, dropped_male,
                                                                   warned):
    sex = np.array(["female"] * n_female + ["male"] * (n - n_female), dtype=object)
    dropped = np.zeros(n, dtype=bool)
    dropped[:dropped_female] = True
    dropped[n_female:n_female + dropped_male] = True
    _, warnings = dropped_split(_cohort(n, sex=sex), dropped)
    assert warnings == ([] if warned is None else [
        f"dropped rows concentrate in {warned}; the written cohort under-represents this group"])


def test_tab_separated_and_other_delimiters_are_read_as_the_mapping_says(tmp_path):
    tsv = tmp_path / "export.tsv"
    tsv.write_text("pid\tAge\np1\t61\np2\tNA\n")
    got = read_source(tsv, Mapping(delimiter=";"))  # .tsv is tab-separated whatever the mapping says
    assert got.columns.tolist() == ["pid", "Age"] and got["Age"].tolist() == ["61", "NA"]  # as written
    semi = tmp_path / "export.csv"
    semi.write_text("pid;Age\np1;61,5\n")
    assert read_source(semi, Mapping(delimiter=";")).to_dict("list") == {"pid": ["p1"], "Age": ["61,5"]}


def test_excel_exports_are_read_from_the_named_sheet_with_ids_as_written(tmp_path):
    path = tmp_path / "export.xlsx"
    with pd.ExcelWriter(path) as xl:
        pd.DataFrame({"note": ["cover sheet"]}).to_excel(xl, sheet_name="About", index=False)
        pd.DataFrame({"pid": [101, 102, None], "Age": [61, 55, 70]}).to_excel(xl, sheet_name="Patients", index=False)
    got = read_source(path, Mapping(sheet="Patients"))
    assert got["pid"].astype("string").tolist()[:2] == ["101", "102"]  # not 101.0: cells as written
    old = tmp_path / "export.xls"  # an Excel file by its name, whatever its format inside
    old.write_bytes(path.read_bytes())
    assert read_source(old, Mapping(sheet="Patients"))["Age"].tolist() == [61, 55, 70]
