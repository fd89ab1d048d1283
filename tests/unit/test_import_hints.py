"""The import's hints, word for word: a count column holding a 0/1 flag, a unit the mapping forgot, a
delimiter the mapping got wrong; and where no hint is due, none (docs/MUTATION.md lists the mutants these
tests kill)."""

from __future__ import annotations

import textwrap

import pytest

from feature_store.import_cohort import import_cohort
from feature_store.validate import Problem

BASE = textwrap.dedent("""
    outcome: {source: progressed, recode: {1: true, 0: false}}
    columns:
      age_years: {source: Age}
""")


def _import(tmp_path, columns: str, header: str, rows: list[str], **kw):
    m = tmp_path / "mapping.yaml"
    m.write_text(BASE + textwrap.indent(textwrap.dedent(columns), "  "))
    src = tmp_path / "export.csv"
    src.write_text("\n".join([header, *rows]) + "\n")
    return import_cohort(src, m, tmp_path / "cohort.parquet", **kw)


FLAG_RULE = ("column 'n_mets' holds only 0 and 1: it looks like a flag, not a count (read as a count, every 1 would "
             "be one metastasis and every 0 is out of range); map it to multiple_liver_metastases (the coarse form: "
             "More than one liver metastasis (coarse form of the count)) instead of n_liver_metastases")


@pytest.mark.parametrize("flags", [["0", "1", "1"], ["0", "0", "NA"]])
def test_a_count_column_holding_a_flag_names_the_coarse_form_to_map_it_to(tmp_path, flags):
    res = _import(tmp_path, "n_liver_metastases: {source: n_mets}\n", "Age,n_mets,progressed",
                  [f"60,{f},0" for f in flags], drop_invalid=True, max_drop=1.0)
    assert res.problems == [Problem(None, "n_liver_metastases", None, FLAG_RULE)]
    assert res.reason == (f"n_liver_metastases: {FLAG_RULE} (a whole-column problem: dropping rows cannot fix it; "
                          "fix the mapping or the export)")


@pytest.mark.parametrize("columns, values", [
    ("n_liver_metastases: {source: n_mets}", ["1", "1", "1"]),  # one metastasis each: a count, not a flag
    ("cea_ng_ml: {source: n_mets}", ["0", "1", "1"]),  # a CEA of 0 or 1 ng/mL is a value
    ("chemo_cycles_pre_pve: {source: n_mets}", ["0", "1", "0"]),  # a count with no coarse form
])
def test_zeros_and_ones_are_a_flag_only_in_a_count_that_has_a_coarse_form(tmp_path, columns, values):
    res = _import(tmp_path, columns + "\n", "Age,n_mets,progressed", [f"60,{v},0" for v in values])
    assert res.ok and res.problems == []


def test_text_in_a_count_column_is_a_row_problem_not_a_crash(tmp_path):
    res = _import(tmp_path, "n_liver_metastases: {source: n_mets}\n", "Age,n_mets,progressed",
                  ["60,3,0", "60,abc,0", "60,0,0"])
    assert [(p.row, p.column, p.rule) for p in res.problems] == [
        (2, "n_liver_metastases", "not a number; allowed 1 to 100 count"),
        (3, "n_liver_metastases", "outside the allowed range 1 to 100 count")]


def _unit_hint(target: str, n_out: int, unit: str, range_text: str) -> str:
    return (f"{target}: {n_out} values outside {range_text}; read as {unit} they would all be in range: is the "
            f"source in {unit}? add `unit: {unit}` under columns.{target}")


def test_a_fraction_mapped_as_a_percentage_is_named_even_at_the_ends_of_the_range(tmp_path):
    res = _import(tmp_path, "sflr_percent: {source: sflr}\n", "Age,sflr,progressed",
                  ["60,0.05,0", "60,0.3,1", "60,0.8,0"])  # 5% and 80% are the contract's own limits
    assert res.warnings == [_unit_hint("sflr_percent", 3, "fraction", "5 to 80 %")]


def test_a_unit_is_named_when_98_percent_of_the_values_would_fit(tmp_path):
    values = ["0.3"] * 49 + ["0.01"]  # 1% is out of range in any unit
    res = _import(tmp_path, "sflr_percent: {source: sflr}\n", "Age,sflr,progressed", [f"60,{v},0" for v in values])
    assert res.warnings == [_unit_hint("sflr_percent", 50, "fraction", "5 to 80 %")]


def test_millimetres_mapped_as_centimetres_are_named_with_only_the_unit_that_fits(tmp_path):
    res = _import(tmp_path, "largest_metastasis_cm: {source: size}\n", "Age,size,progressed",
                  ["60,45,0", "60,35,1", "60,60,0"])
    assert res.warnings == [_unit_hint("largest_metastasis_cm", 3, "mm", "0.2 to 30 cm")]


@pytest.mark.parametrize("columns, header, rows", [
    # most values would not fit in mm either (600 mm is 60 cm)
    ("largest_metastasis_cm: {source: size}", "Age,size,progressed", ["60,45,0", "60,35,1", "60,600,0"]),
    # a few stray values among many are typos, not a unit
    ("largest_metastasis_cm: {source: size}", "Age,size,progressed", ["60,4,0"] * 37 + ["60,45,0"] * 3),
    # the unit is given: the values are wrong, not the mapping
    ("largest_metastasis_cm: {source: size, unit: mm}", "Age,size,progressed", ["60,420,0", "60,450,0", "60,600,0"]),
    # other columns' values out of range say nothing about this one
    ("largest_metastasis_cm: {source: size}", "Age,size,progressed", ["150,4.2,0", "150,3.5,0", "150,6,0", "abc,2,0"]),
    # an interval from two dates has no unit to add
    ("disease_free_interval_months: {months_between: [a, b]}", "Age,a,b,progressed",
     ["60,1990-01-01,2015-01-01,0", "60,1991-01-01,2016-01-01,0", "60,1992-01-01,2017-01-01,0"]),
])
def test_no_unit_hint_where_no_unit_would_help(tmp_path, columns, header, rows):
    res = _import(tmp_path, columns + "\n", header, rows)
    assert not res.ok and res.warnings == []


LONG_HEADER = "patient_number;age_at_pve;sex_code;progressed"


@pytest.mark.parametrize("delimiter, used", [(",", ";"), (",", "\t"), (",", "|"), (";", ",")])
def test_a_wrong_delimiter_is_named_with_the_one_the_file_uses(tmp_path, delimiter, used):
    m = tmp_path / "mapping.yaml"
    m.write_text(f"delimiter: {delimiter!r}\n" + BASE.replace("{source: Age}", "{source: age_at_pve}"))
    src = tmp_path / "export.csv"
    header = LONG_HEADER.replace(";", used)
    src.write_text(header + "\n" + used.join(["p1", "60", "1", "0"]) + "\n")
    res = import_cohort(src, m, tmp_path / "cohort.parquet")
    hint = (f" (the file has one column {header[:40]!r}: is the delimiter {used!r}? set `delimiter` in the "
            "mapping)")
    assert res.problems == [Problem(None, "age_years", None, f"source column 'age_at_pve' not in the file{hint}"),
                            Problem(None, "progression", None, f"source column 'progressed' not in the file{hint}")]


def test_a_file_of_one_column_without_a_delimiter_in_sight_gets_no_guess(tmp_path):
    m = tmp_path / "mapping.yaml"
    m.write_text(BASE)
    src = tmp_path / "export.csv"
    src.write_text("progressed\n0\n1\n")
    res = import_cohort(src, m, tmp_path / "cohort.parquet")
    assert res.problems == [Problem(None, "age_years", None, "source column 'Age' not in the file")]
