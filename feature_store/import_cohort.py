"""Real-cohort import: an institutional export + a mapping file -> validated Parquet.

The mapping (YAML, see `feature_store/mapping_example.yaml`) says per target
feature which source column feeds it, its unit, sentinels meaning missing and
category recoding; and which columns hold the id, dates and outcome.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from feature_store import contract as c
from feature_store.simulate import conform
from feature_store.units import UNIT_FACTORS
from feature_store.validate import Problem, validate_frame

DAYS_PER_MONTH = 365.25 / 12


class ColumnMap(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str | None = None
    unit: str | None = None
    missing_values: list[Any] = Field(default_factory=list)
    recode: dict[Any, Any] = Field(default_factory=dict)
    # Dates instead of an interval: months (or weeks) between two date columns.
    months_between: tuple[str, str] | None = None
    weeks_between: tuple[str, str] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "ColumnMap":
        given = [x for x in (self.source, self.months_between, self.weeks_between) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of source, months_between, weeks_between")
        return self

    def source_columns(self) -> list[str]:
        return [self.source] if self.source else list(self.months_between or self.weeks_between or ())


class Mapping(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delimiter: str = ","
    sheet: str | int | None = None
    missing_values: list[Any] = Field(default_factory=lambda: ["", "NA", "N/A", "n/a", "-999", "-99", "."])
    id_column: str | None = None
    decision_date: str | None = None
    outcome_date: str | None = None
    date_format: str | None = None
    progression_definition: str = "RECIST 1.1"
    outcome: ColumnMap
    columns: dict[str, ColumnMap]

    @model_validator(mode="after")
    def _targets_known(self) -> "Mapping":
        unknown = [t for t in self.columns if t not in c.BY_NAME]
        if unknown:
            raise ValueError(f"targets not in the feature contract: {', '.join(unknown)}")
        for target, cm in self.columns.items():
            unit = c.BY_NAME[target].unit
            if cm.unit is not None and (unit, cm.unit) not in UNIT_FACTORS:
                known = sorted(s for t, s in UNIT_FACTORS if t == unit)
                raise ValueError(f"{target}: no conversion from {cm.unit!r} to {unit!r}; known: {known}")
        if self.progression_definition not in c.PROGRESSION_DEFINITIONS:
            raise ValueError(f"progression_definition must be one of {c.PROGRESSION_DEFINITIONS}")
        return self


def load_mapping(path: Path) -> Mapping:
    return Mapping.model_validate(yaml.safe_load(Path(path).read_text()))


@dataclass
class ImportResult:
    cohort: pd.DataFrame | None
    problems: list[Problem]
    rows_in: int
    dropped_rows: list[int] = field(default_factory=list)
    written: Path | None = None

    @property
    def ok(self) -> bool:
        return self.written is not None

    def report(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows_in": self.rows_in,
            "rows_out": 0 if self.cohort is None or not self.ok else int(len(self.cohort)),
            "dropped_rows": self.dropped_rows,
            "problems": [p.as_dict() for p in self.problems],
            "written": str(self.written) if self.written else None,
        }


def read_source(path: Path, mapping: Mapping) -> pd.DataFrame:
    """Read CSV/TSV, Parquet or Excel as text, so sentinels and codes are seen as written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path).astype("object")
    if suffix in (".xlsx", ".xls"):
        return pd.read_excel(path, sheet_name=mapping.sheet or 0, dtype=object)
    if path.stat().st_size == 0:
        return pd.DataFrame()
    sep = "\t" if suffix == ".tsv" else mapping.delimiter
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _norm(v: Any) -> str:
    """Compare sentinels and codes as text: 1, 1.0 and '1' are the same code."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def _sniff_hint(raw: pd.DataFrame, mapping: Mapping) -> str:
    if raw.shape[1] == 1:
        header = str(raw.columns[0])
        for d in (";", "\t", "|", ","):
            if d != mapping.delimiter and d in header:
                return f" (the file has one column {header[:40]!r}: is the delimiter {d!r}? set `delimiter` in the mapping)"
    return ""


def map_columns(raw: pd.DataFrame, mapping: Mapping) -> tuple[pd.DataFrame, list[Problem]]:
    """Rename, recode, convert units and blank sentinels; report missing source columns."""
    problems: list[Problem] = []
    present = set(map(str, raw.columns))
    hint = _sniff_hint(raw, mapping)
    wanted: list[tuple[str, ColumnMap]] = [(c.OUTCOME, mapping.outcome), *mapping.columns.items()]
    for target, cm in wanted:
        for src in cm.source_columns():
            if src not in present:
                problems.append(Problem(None, target, None, f"source column {src!r} not in the file{hint}"))
    for meta, src in ((c.PATIENT_ID, mapping.id_column), (c.EVENT_TIMESTAMP, mapping.decision_date),
                      (c.OUTCOME_DATE, mapping.outcome_date)):
        if src and src not in present:
            problems.append(Problem(None, meta, None, f"source column {src!r} not in the file{hint}"))
    if problems:
        return pd.DataFrame(index=raw.index), problems

    global_missing = {_norm(v) for v in mapping.missing_values}
    out = pd.DataFrame(index=raw.index)
    for target, cm in wanted:
        sentinels = global_missing | {_norm(v) for v in cm.missing_values}
        if cm.source:
            col = raw[cm.source].astype("object").map(lambda v: None if v is None or _norm(v) in sentinels else v)
            if cm.recode:
                recode = {_norm(k): v for k, v in cm.recode.items()}
                # unknown codes are kept as written so validation reports them
                col = col.map(lambda v: recode.get(_norm(v), v) if v is not None else None)
            if cm.unit is not None:
                factor = UNIT_FACTORS[(c.BY_NAME[target].unit, cm.unit)]
                num = pd.to_numeric(col, errors="coerce")
                converted = (num * factor).astype("object")
                # non-numbers pass through unchanged for the validator to name
                col = converted.where(num.notna(), col)
            out[target] = col
        else:
            a, b = cm.months_between or cm.weeks_between  # type: ignore[misc]
            start = pd.to_datetime(raw[a].where(~raw[a].map(_norm).isin(sentinels)), errors="coerce",
                                   format=mapping.date_format)
            end = pd.to_datetime(raw[b].where(~raw[b].map(_norm).isin(sentinels)), errors="coerce",
                                 format=mapping.date_format)
            days = (end - start).dt.days.astype("float64")
            out[target] = (days / DAYS_PER_MONTH).round(1) if cm.months_between else (days / 7).round(1)
    if mapping.id_column:
        out[c.PATIENT_ID] = raw[mapping.id_column].astype("string")
    for meta, src in ((c.EVENT_TIMESTAMP, mapping.decision_date), (c.OUTCOME_DATE, mapping.outcome_date)):
        if src:
            dates = pd.to_datetime(raw[src], errors="coerce", format=mapping.date_format)
            bad = dates.isna().to_numpy() & ~raw[src].map(_norm).isin(global_missing).to_numpy()
            problems += [Problem(int(i) + 1, meta, str(raw[src].iloc[i])[:40], "not a date") for i in np.flatnonzero(bad)]
            out[meta] = dates
    return out, problems


def import_cohort(
    source: Path,
    mapping_path: Path,
    out: Path | None,
    *,
    drop_invalid: bool = False,
    report: Path | None = None,
) -> ImportResult:
    """Map, validate and (only if clean, or with drop_invalid) write the cohort."""
    mapping = load_mapping(mapping_path)
    raw = read_source(source, mapping)
    result = ImportResult(cohort=None, problems=[], rows_in=int(len(raw)))
    if raw.empty:
        result.problems.append(Problem(None, "*", None, "the file has no data rows"))
    else:
        mapped, problems = map_columns(raw, mapping)
        result.problems += problems
        if not any(p.row is None for p in problems):
            # required pre-PVE features that are not mapped come back as whole-column problems
            cleaned, vproblems = validate_frame(mapped, require_outcome=True)
            result.problems += vproblems
            cleaned[c.PROGRESSION_DEFINITION] = mapping.progression_definition
            cleaned[c.NON_RESECTION_REASON] = np.where(cleaned[c.OUTCOME].fillna(False), "progression", "none")
            if c.PATIENT_ID not in cleaned:
                cleaned[c.PATIENT_ID] = [f"ROW-{i + 1}" for i in range(len(cleaned))]
            result.cohort = cleaned
    result.problems.sort(key=lambda p: (p.row if p.row is not None else 0, p.column))
    column_level = any(p.row is None for p in result.problems)
    bad = sorted({p.row for p in result.problems if p.row is not None})
    if result.cohort is not None and not column_level and (not bad or drop_invalid):
        keep = np.ones(len(result.cohort), dtype=bool)
        keep[np.array(bad, dtype=int) - 1] = False
        result.dropped_rows = bad
        kept = result.cohort[keep]
        if len(kept) and out is not None:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            conform(kept.reset_index(drop=True)).to_parquet(out, index=False)
            result.written = Path(out)
            result.cohort = kept
        elif not len(kept):
            result.problems.append(Problem(None, "*", None, "no valid rows left to write"))
    if report is not None:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(json.dumps(result.report(), indent=2))
    return result

