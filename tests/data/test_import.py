"""Real-cohort import with deliberately dirty exports."""

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from feature_store import contract as c
from feature_store.import_cohort import import_cohort
from pverisk.cli import app

MAPPING = textwrap.dedent("""
    delimiter: ","
    missing_values: ["", "NA", "-999"]
    id_column: pid
    decision_date: pve_date
    outcome:
      source: progressed
      recode: {1: true, 0: false}
    columns:
      age_years: {source: Age}
      sex: {source: Sex, recode: {1: male, 2: female}}
      node_positive_primary: {source: N, recode: {1: true, 2: false}}
      n_liver_metastases: {source: n_mets}
      largest_metastasis_cm: {source: max_mm, unit: mm}
      cea_ng_ml: {source: CEA, unit: ug/L}
      sflr_percent: {source: sflr, unit: fraction}
      bilirubin_mg_dl: {source: bili, unit: umol/L}
      ras_status: {source: RAS, recode: {wt: wild_type, mut: mutant}}
      disease_free_interval_months: {months_between: [prim_date, met_date]}
""")
HEADER = "pid,Age,Sex,N,n_mets,max_mm,CEA,sflr,bili,RAS,prim_date,met_date,pve_date,progressed"
CLEAN_ROWS = [
    "p1,61,1,1,3,42,12.5,0.31,10.26,wt,2020-01-01,2021-01-01,2021-03-01,0",
    "p2,55,2,2,7,25,-999,0.28,NA,mut,2020-05-01,2020-05-01,2020-07-01,1",
    "p3,70,1,2,1,80,250,0.40,17.1,NA,2019-01-01,2020-07-01,2020-09-01,0",
]


def _write(tmp_path: Path, rows: list[str], header: str = HEADER, name: str = "export.csv") -> Path:
    p = tmp_path / name
    p.write_text("\n".join([header, *rows]) + "\n")
    return p


@pytest.fixture
def mapping(tmp_path):
    p = tmp_path / "mapping.yaml"
    p.write_text(MAPPING)
    return p


def test_clean_file_is_mapped_converted_and_written(tmp_path, mapping):
    out = tmp_path / "cohort.parquet"
    res = import_cohort(_write(tmp_path, CLEAN_ROWS), mapping, out)
    assert res.ok and res.problems == []
    df = pd.read_parquet(out)
    r1, r2, r3 = df.iloc[0], df.iloc[1], df.iloc[2]
    assert r1["largest_metastasis_cm"] == pytest.approx(4.2)  # mm -> cm
    assert r1["sflr_percent"] == pytest.approx(31.0)  # fraction -> %
    assert r1["bilirubin_mg_dl"] == pytest.approx(0.6)  # umol/L -> mg/dL
    assert r1["sex"] == "male" and r2["sex"] == "female"
    assert bool(r1["node_positive_primary"]) and not bool(r2["node_positive_primary"])
    assert pd.isna(r2["cea_ng_ml"]) and pd.isna(r2["bilirubin_mg_dl"])  # sentinels
    assert pd.isna(r3["ras_status"])
    assert r1["disease_free_interval_months"] == pytest.approx(12.0)  # dates -> months
    assert list(df[c.OUTCOME]) == [False, True, False]
    assert df[c.EVENT_TIMESTAMP].iloc[0] == pd.Timestamp("2021-03-01")


def test_every_bad_row_and_column_is_reported_and_nothing_written(tmp_path, mapping):
    rows = CLEAN_ROWS + [
        "p4,150,1,1,3,42,12,0.3,10,wt,2020-01-01,2021-01-01,2021-03-01,0",  # age 150
        "p5,60,3,1,0,42,12,0.3,10,wt,2020-01-01,2021-01-01,2021-03-01,0",  # sex code 3, 0 metastases
        "p6,60,1,1,3,0,12,0.3,10,maybe,2020-01-01,2021-01-01,2021-03-01,",  # size 0, unknown RAS, no outcome
        "p7,60,1,1,2.5,42,abc,0.3,10,wt,2020-01-01,2021-01-01,2021-03-01,1",  # fractional count, CEA text
        "p8,60,1,1,3,42,12,31,10,wt,2020-01-01,2021-01-01,2021-03-01,0",  # sflr given in % not fraction
    ]
    out = tmp_path / "cohort.parquet"
    report = tmp_path / "report.json"
    res = import_cohort(_write(tmp_path, rows), mapping, out, report=report)
    assert not res.ok and not out.exists()
    found = {(p.row, p.column) for p in res.problems}
    assert found == {
        (4, "age_years"), (5, "sex"), (5, "n_liver_metastases"), (6, "largest_metastasis_cm"),
        (6, "ras_status"), (6, c.OUTCOME), (7, "n_liver_metastases"), (7, "cea_ng_ml"), (8, "sflr_percent"),
    }
    by = {(p.row, p.column): p for p in res.problems}
    assert by[(4, "age_years")].value == "150" and "18 to 100 years" in by[(4, "age_years")].rule
    assert "allowed one of female, male" in by[(5, "sex")].rule
    assert by[(8, "sflr_percent")].value == "3100.0" and "5 to 80 %" in by[(8, "sflr_percent")].rule
    # the export's own column and value beside the contract's (trial: only "-1.2000000000000002" cm was shown)
    assert by[(8, "sflr_percent")].source == "'sflr' = 31 fraction"
    assert by[(6, "largest_metastasis_cm")].source == "'max_mm' = 0 mm" and by[(4, "age_years")].source == "'Age' = 150"
    rep = json.loads(report.read_text())
    assert rep["ok"] is False and len(rep["problems"]) == 9 and rep["written"] is None


def test_drop_invalid_writes_valid_rows_and_reports_dropped(tmp_path, mapping):
    rows = CLEAN_ROWS + ["p4,150,1,1,3,42,12,0.3,10,wt,2020-01-01,2021-01-01,2021-03-01,0"]
    out = tmp_path / "cohort.parquet"
    res = import_cohort(_write(tmp_path, rows), mapping, out, drop_invalid=True, max_drop=0.5)
    assert res.ok and res.dropped_rows == [4]
    assert len(pd.read_parquet(out)) == 3
    # the dropped row's groups are reported beside their share of the file
    assert {"column": "sex", "level": "male", "dropped": 1, "share_of_dropped": 1.0, "share_of_all": 0.75} \
        in res.dropped_split


def test_drop_invalid_is_bounded_by_max_drop(tmp_path, mapping):
    rows = CLEAN_ROWS + ["p4,150,1,1,3,42,12,0.3,10,wt,2020-01-01,2021-01-01,2021-03-01,0"]
    out = tmp_path / "cohort.parquet"
    res = import_cohort(_write(tmp_path, rows), mapping, out, drop_invalid=True)  # default 10%: 1 of 4 is 25%
    assert not res.ok and not out.exists()
    assert "would drop 1 of 4 rows (25%), more than --max-drop 10%" in res.reason


def test_mapped_source_column_absent_from_the_file(tmp_path, mapping):
    header = HEADER.replace("n_mets", "num_mets")
    res = import_cohort(_write(tmp_path, CLEAN_ROWS, header), mapping, tmp_path / "o.parquet", drop_invalid=True)
    assert not res.ok
    assert any(p.row is None and p.column == "n_liver_metastases" and "'n_mets' not in the file" in p.rule
               for p in res.problems)
    assert "fix the mapping or the export" in res.reason  # dropping rows cannot help


def test_unmapped_feature_is_absent_not_a_problem(tmp_path):
    """A cohort's features are what it recorded: nothing is required of it but the outcome."""
    m = tmp_path / "m.yaml"
    m.write_text(MAPPING.replace("  n_liver_metastases: {source: n_mets}\n", "")
                 + "not_collected: [primary_side, braf_v600e]\n")
    res = import_cohort(_write(tmp_path, CLEAN_ROWS), m, tmp_path / "o.parquet")
    assert res.ok and res.problems == []
    assert "n_liver_metastases" in res.unmapped and "primary_side" not in res.unmapped
    assert res.not_collected == ["primary_side", "braf_v600e"]
    assert "n_liver_metastases" not in pd.read_parquet(tmp_path / "o.parquet").columns


def test_mapping_mistakes_are_named_in_plain_words(tmp_path):
    from feature_store.mapping import MappingError

    m = tmp_path / "m.yaml"
    m.write_text(MAPPING.replace("  sex: {source: Sex, recode: {1: male, 2: female}}", "  sex: Sex")
                 .replace("decision_date: pve_date", "decison_date: pve_date"))
    with pytest.raises(MappingError) as info:
        import_cohort(_write(tmp_path, CLEAN_ROWS), m, tmp_path / "o.parquet")
    text = str(info.value)
    assert "`columns.sex` should be a block of keys" in text
    assert "`decison_date` is not a mapping key we know" in text
    assert "ColumnMap" not in text and "dictionary" not in text


def test_empty_file(tmp_path, mapping):
    p = tmp_path / "empty.csv"
    p.write_text("")
    res = import_cohort(p, mapping, tmp_path / "o.parquet")
    assert not res.ok and res.problems[0].rule == "the file has no data rows"
    res = import_cohort(_write(tmp_path, [], name="header_only.csv"), mapping, tmp_path / "o.parquet")
    assert not res.ok and res.problems[0].rule == "the file has no data rows"


def test_wrong_delimiter_is_named(tmp_path, mapping):
    rows = [r.replace(",", ";") for r in CLEAN_ROWS]
    res = import_cohort(_write(tmp_path, rows, HEADER.replace(",", ";")), mapping, tmp_path / "o.parquet")
    assert not res.ok
    assert any("is the delimiter ';'" in p.rule for p in res.problems)


def test_parquet_and_excel_sources(tmp_path, mapping):
    df = pd.read_csv(_write(tmp_path, CLEAN_ROWS), dtype=str)
    df.to_parquet(tmp_path / "export.parquet")
    assert import_cohort(tmp_path / "export.parquet", mapping, tmp_path / "a.parquet").ok
    df.to_excel(tmp_path / "export.xlsx", index=False)
    assert import_cohort(tmp_path / "export.xlsx", mapping, tmp_path / "b.parquet").ok


def test_bad_mapping_is_refused(tmp_path):
    m = tmp_path / "m.yaml"
    m.write_text(MAPPING.replace("unit: mm", "unit: inch"))
    with pytest.raises(ValueError, match="columns.largest_metastasis_cm.unit: no conversion from 'inch'"):
        import_cohort(_write(tmp_path, CLEAN_ROWS), m, tmp_path / "o.parquet")


def test_cli_exit_code_table_and_report(tmp_path, mapping):
    rows = CLEAN_ROWS + ["p4,150,1,1,3,42,12,0.3,10,wt,2020-01-01,2021-01-01,2021-03-01,0"]
    src, out, report = _write(tmp_path, rows), tmp_path / "o.parquet", tmp_path / "r.json"
    runner = CliRunner()
    res = runner.invoke(app, ["import-cohort", "--source", str(src), "--mapping", str(mapping),
                              "--out", str(out), "--report", str(report)])
    assert res.exit_code == 1 and not out.exists()
    flat = " ".join(res.output.split())  # rich wraps at the terminal width
    assert "age_years" in flat and "nothing written" in flat and "1 of 4 rows are invalid" in flat
    assert json.loads(report.read_text())["problems"][0]["row"] == 4
    res = runner.invoke(app, ["import-cohort", "--source", str(src), "--mapping", str(mapping),
                              "--out", str(out), "--drop-invalid"])
    assert res.exit_code == 1 and not out.exists() and "more than --max-drop 10%" in " ".join(res.output.split())
    res = runner.invoke(app, ["import-cohort", "--source", str(src), "--mapping", str(mapping),
                              "--out", str(out), "--drop-invalid", "--max-drop", "0.3"])
    assert res.exit_code == 0 and out.exists()
    assert "dropped 1 of 4 rows" in " ".join(res.output.split())


def test_example_mapping_is_valid():
    from feature_store.mapping import load_mapping
    m = load_mapping(Path(c.__file__).parent / "mapping_example.yaml")
    assert m.delimiter == ";" and "largest_metastasis_cm" in m.columns


def test_a_flag_contradicting_the_count_beside_it_is_a_problem(tmp_path):
    m = tmp_path / "m.yaml"
    m.write_text(MAPPING + "  multiple_liver_metastases: {source: flag}\n")
    header = HEADER + ",flag"
    rows = [CLEAN_ROWS[0] + ",1", CLEAN_ROWS[1] + ",1", CLEAN_ROWS[2] + ",1"]  # p3 has 1 metastasis
    res = import_cohort(_write(tmp_path, rows, header), m, tmp_path / "o.parquet")
    assert not res.ok
    assert [(p.row, p.column) for p in res.problems] == [(3, "multiple_liver_metastases")]
    assert "contradicts n_liver_metastases (rule: n_liver_metastases > 1)" in res.problems[0].rule


def test_a_wrong_date_format_is_a_whole_column_problem_not_a_silent_blank(tmp_path):
    m = tmp_path / "m.yaml"
    m.write_text(MAPPING + 'date_format: "%d.%m.%Y"\n')
    res = import_cohort(_write(tmp_path, CLEAN_ROWS), m, tmp_path / "o.parquet")
    assert not res.ok
    whole = [p for p in res.problems if p.row is None]
    assert any(p.column == "disease_free_interval_months" and "none of the dates in 'prim_date' parse" in p.rule
               for p in whole)
    assert "dropping rows cannot fix it" in res.reason


def test_a_likely_missing_unit_is_named(tmp_path):
    m = tmp_path / "m.yaml"
    m.write_text(MAPPING.replace("{source: max_mm, unit: mm}", "{source: max_mm}"))
    rows = [r.replace(",42,", ",45,").replace(",25,", ",35,").replace(",80,", ",60,") for r in CLEAN_ROWS]
    res = import_cohort(_write(tmp_path, rows), m, tmp_path / "o.parquet")
    assert not res.ok
    assert any("largest_metastasis_cm" in w and "add `unit: mm`" in w for w in res.warnings), res.warnings


def test_patients_without_an_outcome_import_for_scoring_and_training_refuses_them(tmp_path):
    """A registry export of patients to score has no outcome yet: mapped and validated all the same,
    written for `pverisk score`; training on it is refused, naming the missing outcome."""
    from training.data import CohortValidationError, load_cohort

    m = tmp_path / "m.yaml"
    no_outcome = MAPPING.replace("outcome:\n  source: progressed\n  recode: {1: true, 0: false}\n", "")
    assert "progressed" not in no_outcome
    m.write_text(no_outcome)
    header = HEADER.replace(",progressed", "")
    rows = [r.rsplit(",", 1)[0] for r in CLEAN_ROWS]
    out = tmp_path / "to_score.parquet"
    res = import_cohort(_write(tmp_path, rows, header), m, out)
    assert res.ok, res.problems
    df = pd.read_parquet(out)
    assert c.OUTCOME not in df and len(df) == 3 and df["largest_metastasis_cm"].iloc[0] == pytest.approx(4.2)
    with pytest.raises(CohortValidationError) as info:
        load_cohort(out)
    assert any(p.column == c.OUTCOME for p in info.value.problems)
    bad = [rows[0].replace(",61,", ",140,")]  # still validated: age out of range
    res = import_cohort(_write(tmp_path, bad, header), m, tmp_path / "bad.parquet")
    assert not res.ok and any(p.column == "age_years" for p in res.problems)
