"""Real-cohort import: an institutional export + a mapping file -> validated Parquet.

The mapping (YAML, see `feature_store/mapping_example.yaml`) says per target
feature which source column feeds it, its unit, sentinels meaning missing and
category recoding; which features the registry did not collect; which columns hold
the id, dates, outcome and any clinical score it recorded; and the study design.
A cohort's features are what it recorded: nothing is required of it but an outcome, and not even
that of patients imported to be scored (`pverisk score`; training refuses a cohort without one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from feature_store import contract as c
from feature_store.coarse import derive_coarse
from feature_store.mapping import ColumnMap, Mapping, load_mapping
from feature_store.simulate import conform
from feature_store.study import write_with_design
from feature_store.units import UNIT_FACTORS
from feature_store.validate import Problem, validate_frame

DAYS_PER_MONTH = 365.25 / 12


@dataclass
class ImportResult:
    cohort: pd.DataFrame | None
    problems: list[Problem]
    rows_in: int
    dropped_rows: list[int] = field(default_factory=list)
    written: Path | None = None
    # why nothing was written (None when written)
    reason: str | None = None
    features: list[str] = field(default_factory=list)  # contract features the cohort recorded
    not_collected: list[str] = field(default_factory=list)  # declared by the mapping
    unmapped: list[str] = field(default_factory=list)  # neither mapped nor declared: treated as not collected
    recorded_scores: list[str] = field(default_factory=list)
    study_design: dict[str, Any] = field(default_factory=dict)
    dropped_split: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.written is not None

    def report(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "rows_in": self.rows_in,
            "rows_out": 0 if self.cohort is None or not self.ok else int(len(self.cohort)),
            "dropped_rows": self.dropped_rows,
            "dropped_split": self.dropped_split,
            "warnings": self.warnings,
            "features": self.features,
            "not_collected": self.not_collected,
            "unmapped": self.unmapped,
            "recorded_scores": self.recorded_scores,
            "study_design": self.study_design,
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
    """Compare sentinels and codes by value: 1, 1.0, '1' and '1.0' are the same code, and so
    are -999, -999.0 and '-999' (a re-saved CSV turns integers into floats)."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    text = str(v).strip()
    try:
        x = float(text)
    except ValueError:
        return text
    if x != x or x in (float("inf"), float("-inf")):
        return text
    return str(int(x)) if x.is_integer() else repr(x)


def _sniff_hint(raw: pd.DataFrame, mapping: Mapping) -> str:
    if raw.shape[1] == 1:
        header = str(raw.columns[0])
        for d in (";", "\t", "|", ","):
            if d != mapping.delimiter and d in header:
                return f" (the file has one column {header[:40]!r}: is the delimiter {d!r}? set `delimiter` in the mapping)"
    return ""


def map_columns(raw: pd.DataFrame, mapping: Mapping) -> tuple[pd.DataFrame, list[Problem]]:
    """Rename, recode, convert units and blank sentinels; report missing source columns."""
    wanted: list[tuple[str, ColumnMap]] = [*([(c.OUTCOME, mapping.outcome)] if mapping.outcome else []),
                                           *mapping.columns.items(),
                                           *[(c.RECORDED_SCORE_PREFIX + k, v) for k, v in mapping.scores.items()]]
    if mapping.non_resection_reason is not None:
        wanted.append((c.NON_RESECTION_REASON, mapping.non_resection_reason))
    problems = _absent_sources(raw, mapping, wanted)
    if problems:
        return pd.DataFrame(index=raw.index), problems
    global_missing = {_norm(v) for v in mapping.missing_values}
    out = pd.DataFrame(index=raw.index)
    for target, cm in wanted:
        sentinels = global_missing | {_norm(v) for v in cm.missing_values}
        if cm.source:
            out[target] = _mapped_column(raw[cm.source], target, cm, sentinels)
        else:
            out[target], bad_dates = _interval(raw, target, cm, sentinels, mapping.date_format)
            problems += bad_dates
    if mapping.id_column:
        out[c.PATIENT_ID] = raw[mapping.id_column].astype("string")
    dated = [(c.EVENT_TIMESTAMP, mapping.decision_date), (c.OUTCOME_DATE, mapping.outcome_date),
             *[(c.RECORDED_AT_PREFIX + g, src) for g, src in mapping.record_dates.items()]]
    for meta, src in dated:
        if src:
            dates = pd.to_datetime(raw[src], errors="coerce", format=mapping.date_format)
            bad = dates.isna().to_numpy() & ~raw[src].map(_norm).isin(global_missing).to_numpy()
            problems += [Problem(int(i) + 1, meta, str(raw[src].iloc[i])[:40], "not a date") for i in np.flatnonzero(bad)]
            out[meta] = dates
    return out, problems


def _absent_sources(raw: pd.DataFrame, mapping: Mapping, wanted: list[tuple[str, ColumnMap]]) -> list[Problem]:
    """A whole-column problem for every source column the mapping names and the file lacks."""
    problems: list[Problem] = []
    present = set(map(str, raw.columns))
    hint = _sniff_hint(raw, mapping)
    for target, cm in wanted:
        for src in cm.source_columns():
            if src not in present:
                problems.append(Problem(None, target, None, f"source column {src!r} not in the file{hint}"))
    for meta, src in ((c.PATIENT_ID, mapping.id_column), (c.EVENT_TIMESTAMP, mapping.decision_date),
                      (c.OUTCOME_DATE, mapping.outcome_date)):
        if src and src not in present:
            problems.append(Problem(None, meta, None, f"source column {src!r} not in the file{hint}"))
    return problems


def _mapped_column(raw: pd.Series, target: str, cm: ColumnMap, sentinels: set[str]) -> pd.Series:
    """One source column in contract terms: sentinels blanked, codes recoded, units converted."""
    col = raw.astype("object").map(lambda v: None if v is None or _norm(v) in sentinels else v)
    if cm.recode:
        recode = {_norm(k): v for k, v in cm.recode.items()}
        # unknown codes are kept as written so validation reports them
        col = col.map(lambda v: recode.get(_norm(v), v) if v is not None else None)
    if cm.unit is not None and target in c.BY_NAME:
        factor = UNIT_FACTORS[(c.BY_NAME[target].unit, cm.unit)]
        num = pd.to_numeric(col, errors="coerce")
        converted = (num * factor).astype("object")
        # non-numbers pass through unchanged for the validator to name
        col = converted.where(num.notna(), col)
    return col


def _interval(raw: pd.DataFrame, target: str, cm: ColumnMap, sentinels: set[str], date_format: str | None
              ) -> tuple[pd.Series, list[Problem]]:
    """Months (or weeks) between two date columns, and the dates that do not parse."""
    problems: list[Problem] = []
    a, b = cm.months_between or cm.weeks_between  # type: ignore[misc]
    start = pd.to_datetime(raw[a].where(~raw[a].map(_norm).isin(sentinels)), errors="coerce", format=date_format)
    end = pd.to_datetime(raw[b].where(~raw[b].map(_norm).isin(sentinels)), errors="coerce", format=date_format)
    for col, parsed in ((a, start), (b, end)):
        given = ~raw[col].map(_norm).isin(sentinels).to_numpy() & raw[col].notna().to_numpy()
        bad = given & parsed.isna().to_numpy()
        fmt = f" with date_format {date_format!r}" if date_format else ""
        if bad.any() and bad.sum() == given.sum():  # the format, not the rows, is wrong
            problems.append(Problem(None, target, None, f"none of the dates in {col!r} parse{fmt}: "
                                                        "check `date_format` in the mapping"))
        else:
            problems += [Problem(int(i) + 1, target, str(raw[col].iloc[i])[:40],
                                 f"{col}: not a date{fmt}") for i in np.flatnonzero(bad)]
    days = (end - start).dt.days.astype("float64")
    return ((days / DAYS_PER_MONTH).round(1) if cm.months_between else (days / 7).round(1)), problems


def _recorded_scores(frame: pd.DataFrame, rows: np.ndarray) -> tuple[pd.DataFrame, list[Problem]]:
    """Recorded score columns as numbers; text that is not a number is a problem."""
    problems: list[Problem] = []
    out = frame.copy()
    for col in [x for x in frame.columns if str(x).startswith(c.RECORDED_SCORE_PREFIX)]:
        raw = frame[col].astype("object")
        missing = raw.isna().to_numpy() | raw.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy()
        num = pd.to_numeric(raw.where(~missing, None), errors="coerce").astype("float64")
        bad = ~missing & num.isna().to_numpy()
        problems += [Problem(int(rows[i]), col, str(raw.iloc[i])[:60], "recorded score is not a number")
                     for i in np.flatnonzero(bad)]
        out[col] = num
    return out, problems


def _non_resection(frame: pd.DataFrame, rows: np.ndarray) -> list[Problem]:
    if c.NON_RESECTION_REASON not in frame:
        return []
    col = frame[c.NON_RESECTION_REASON].astype("object")
    bad = col.notna().to_numpy() & ~col.isin(c.NON_RESECTION_REASONS).to_numpy()
    return [Problem(int(rows[i]), c.NON_RESECTION_REASON, str(col.iloc[i])[:60],
                    f"unknown reason; allowed one of {', '.join(c.NON_RESECTION_REASONS)} (recode it in the mapping)")
            for i in np.flatnonzero(bad)]


def _contradictions(frame: pd.DataFrame, rows: np.ndarray) -> list[Problem]:
    """A coarse column that disagrees with the fine column beside it (flag 0 with a count of 2)."""
    coarse = [f.name for f in c.features() if f.coarse and f.name in frame
              and any(src in frame for src in f.derivation.sources)]  # type: ignore[union-attr]
    if not coarse:
        return []
    _, conflicts = derive_coarse(frame, coarse)
    return [Problem(int(rows[i]), name, _shown(frame[name].iloc[i]),
                    f"contradicts {', '.join(c.BY_NAME[name].derivation.sources)} "  # type: ignore[union-attr]
                    f"(rule: {c.BY_NAME[name].derivation.rule})")  # type: ignore[union-attr]
            for name, bad in conflicts.items() for i in bad]


def _flags_mapped_as_counts(mapped: pd.DataFrame, mapping: Mapping) -> list[Problem]:
    """A count column holding only 0 and 1 is a registry's flag ("more than one metastasis"), not a count:
    read as a count, every 1 would be "one metastasis". A whole-column problem naming the coarse form to
    map it to instead."""
    out = []
    for target, cm in mapping.columns.items():
        f = c.BY_NAME[target]
        forms = [g.name for g in c.coarse_forms(target)]
        if f.kind is not c.Kind.INTEGER or not forms or cm.source is None or target not in mapped:
            continue
        values = pd.to_numeric(mapped[target], errors="coerce").dropna()
        if len(values) and set(values.unique()) <= {0, 1} and (values == 0).any():
            out.append(Problem(None, target, None, (
                f"column {cm.source!r} holds only 0 and 1: it looks like a flag, not a count (read as a count, every "
                f"1 would be one metastasis and every 0 is out of range); map it to {forms[0]} (the coarse form: "
                f"{c.BY_NAME[forms[0]].description}) instead of {target}")))
    return out


def _shown(v: Any) -> str | None:
    return None if v is None or v is pd.NA else str(v)[:60]


def _unit_hints(mapped: pd.DataFrame, cleaned: pd.DataFrame, mapping: Mapping, problems: list[Problem]
                ) -> list[str]:
    """Out-of-range values that another unit would bring into range: say which unit to map."""
    hints = []
    for target, cm in mapping.columns.items():
        f = c.BY_NAME[target]
        if cm.unit is not None or f.kind not in (c.Kind.NUMBER, c.Kind.INTEGER) or cm.source is None:
            continue
        out = [p for p in problems if p.column == target and p.rule.startswith("outside")]
        values = pd.to_numeric(mapped[target], errors="coerce").dropna()
        if len(out) < max(3, 0.1 * len(values)):
            continue
        for (to, unit), factor in UNIT_FACTORS.items():
            if to != f.unit or unit == f.unit:
                continue
            inside = ((values * factor >= f.minimum) & (values * factor <= f.maximum)).mean()
            if inside >= 0.98:
                hints.append(f"{target}: {len(out)} values outside {f.range_text}; read as {unit} they would all "
                             f"be in range: is the source in {unit}? add `unit: {unit}` under columns.{target}")
    return hints


GROUP_CONCENTRATION = 2.0  # a group's share of dropped rows this many times its share of all rows


def dropped_split(cohort: pd.DataFrame, dropped: np.ndarray) -> tuple[list[dict[str, Any]], list[str]]:
    """How dropped rows split by outcome, sex and every category column, beside the share of each
    group in the whole file; a warning where the dropped rows concentrate in one group."""
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    n_drop = int(dropped.sum())
    if not n_drop:
        return rows, warnings
    columns = [c.OUTCOME] + [f.name for f in c.features() if f.kind is c.Kind.CATEGORY]  # sex is one
    for col in dict.fromkeys(columns):
        if col not in cohort:
            continue
        values = cohort[col].astype("object").where(cohort[col].notna(), "missing").astype(str).to_numpy()
        for level in sorted(set(values)):
            in_group = values == level
            share_all = float(in_group.mean())
            share_dropped = float((in_group & dropped).sum() / n_drop)
            rows.append({"column": col, "level": level, "dropped": int((in_group & dropped).sum()),
                         "share_of_dropped": round(share_dropped, 3), "share_of_all": round(share_all, 3)})
            if n_drop >= 5 and share_dropped >= 0.5 and share_dropped >= GROUP_CONCENTRATION * share_all:
                warnings.append(f"dropped rows concentrate in {col}={level}: {share_dropped:.0%} of the dropped "
                                f"rows against {share_all:.0%} of all rows; the written cohort under-represents "
                                "this group")
    return rows, warnings


def import_cohort(
    source: Path,
    mapping_path: Path,
    out: Path | None,
    *,
    drop_invalid: bool = False,
    max_drop: float = 0.10,
    report: Path | None = None,
) -> ImportResult:
    """Map, validate and (only if clean, or with drop_invalid within max_drop) write the cohort.

    Raises MappingError for a wrong mapping file. `result.reason` says why nothing was written.
    """
    mapping = load_mapping(mapping_path)
    raw = read_source(source, mapping)
    result = ImportResult(cohort=None, problems=[], rows_in=int(len(raw)), not_collected=list(mapping.not_collected),
                          recorded_scores=sorted(mapping.scores),
                          study_design=mapping.design().stated() if mapping.design() else {})
    result.features = [f.name for f in c.features() if f.name in mapping.columns]
    result.unmapped = [f.name for f in c.features() if not f.coarse and f.name not in mapping.columns
                       and f.name not in mapping.not_collected
                       and not any(g.name in mapping.columns for g in c.coarse_forms(f.name))]
    if raw.empty:
        result.problems.append(Problem(None, "*", None, "the file has no data rows"))
        result.reason = "the file has no data rows"
    else:
        _map_and_validate(raw, mapping, result)
    result.problems.sort(key=lambda p: (p.row if p.row is not None else 0, p.column))
    bad = sorted({p.row for p in result.problems if p.row is not None})
    _decide(result, bad, drop_invalid, max_drop)
    if result.cohort is not None and result.reason is None:
        _write(result, bad, out, mapping)
    if report is not None:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(json.dumps(result.report(), indent=2))
    return result


def _map_and_validate(raw: pd.DataFrame, mapping: Mapping, result: ImportResult) -> None:
    """The mapped, validated cohort on `result` (or the whole-column reason it cannot be had)."""
    mapped, problems = map_columns(raw, mapping)
    problems += _flags_mapped_as_counts(mapped, mapping)
    result.problems += problems
    whole = [p for p in problems if p.row is None]
    if whole:
        result.reason = (f"{whole[0].column}: {whole[0].rule} (a whole-column problem: dropping rows cannot "
                         "fix it; fix the mapping or the export)")
        return
    rows = np.arange(1, len(mapped) + 1)
    # every contract feature the mapping filled, post-PVE ones too (result.features lists the pre-PVE inputs only)
    cleaned, vproblems = validate_frame(mapped, require_outcome=mapping.outcome is not None)
    cleaned, sproblems = _recorded_scores(cleaned, rows)
    result.warnings += _unit_hints(mapped, cleaned, mapping, vproblems)
    vproblems = _as_exported(vproblems, raw, mapping)
    result.problems += vproblems + sproblems + _non_resection(cleaned, rows) + _contradictions(cleaned, rows)
    design = mapping.design()
    if design and design.progression_definition:
        cleaned[c.PROGRESSION_DEFINITION] = design.progression_definition
    if c.PATIENT_ID not in cleaned:
        cleaned[c.PATIENT_ID] = [f"ROW-{i + 1}" for i in range(len(cleaned))]
    result.cohort = cleaned


def _as_exported(problems: list[Problem], raw: pd.DataFrame, mapping: Mapping) -> list[Problem]:
    """A row's problem names the export's own column and value beside the contract's ('Max size (mm)' = -12 mm
    beside largest_metastasis_cm -1.2): the user fixes the export, not our converted copy of it."""
    out = []
    for p in problems:
        cm = mapping.columns.get(p.column)
        src = cm.source if cm is not None else None
        if p.row is None or src is None or src not in raw.columns or not 1 <= p.row <= len(raw):
            out.append(p)
            continue
        exported = str(raw[src].iloc[p.row - 1])[:40]
        unit = f" {cm.unit}" if cm.unit else ""
        out.append(Problem(p.row, p.column, p.value, p.rule, source=f"{src!r} = {exported}{unit}"))
    return out


def _decide(result: ImportResult, bad: list[int], drop_invalid: bool, max_drop: float) -> None:
    """Why nothing can be written, if anything stops it (result.reason), and the dropped rows' split."""
    column_level = [p for p in result.problems if p.row is None]
    if result.cohort is not None and column_level and result.reason is None:
        result.reason = "a whole column is wrong: dropping rows cannot fix it (fix the mapping or the export)"
    elif result.cohort is not None and bad and not drop_invalid:
        result.reason = (f"{len(bad)} of {result.rows_in} rows are invalid (fix them, or write the valid rows "
                         f"with --drop-invalid, up to --max-drop {max_drop:.0%} of rows)")
    elif result.cohort is not None and bad:
        share = len(bad) / result.rows_in
        dropped = np.zeros(len(result.cohort), dtype=bool)
        dropped[np.array(bad, dtype=int) - 1] = True
        result.dropped_split, result.warnings = dropped_split(result.cohort, dropped)
        if share > max_drop:
            result.reason = (f"--drop-invalid would drop {len(bad)} of {result.rows_in} rows ({share:.0%}), more "
                             f"than --max-drop {max_drop:.0%}: fix the mapping or the export first")
        elif len(bad) == result.rows_in:
            result.reason = "no valid rows left to write"


def _write(result: ImportResult, bad: list[int], out: Path | None, mapping: Mapping) -> None:
    """The valid rows to Parquet with the study design and what the mapping said in its metadata."""
    keep = np.ones(len(result.cohort), dtype=bool)  # type: ignore[arg-type]
    if bad:
        keep[np.array(bad, dtype=int) - 1] = False
        result.dropped_rows = bad
    kept = result.cohort[keep]  # type: ignore[index]
    if out is None:
        result.reason = "no output file given"
        return
    write_with_design(conform(kept.reset_index(drop=True)), Path(out), mapping.design(), {
        "not_collected": result.not_collected, "unmapped": result.unmapped,
        "recorded_scores": result.recorded_scores, "source_rows": result.rows_in,
        "dropped_rows": len(bad), "has_outcome": mapping.outcome is not None})
    result.written = Path(out)
    result.cohort = kept
