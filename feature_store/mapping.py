"""The mapping file of a cohort import (YAML; commented example: feature_store/mapping_example.yaml):
per contract feature its source column, unit, sentinels and recoding; the id, date and outcome columns;
recorded scores; what the registry did not collect; and the study design."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from feature_store import contract as c
from feature_store.study import StudyDesign
from feature_store.units import UNIT_FACTORS


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
    # Kept for older mappings; the study block's progression_definition is the place for it.
    progression_definition: str | None = None
    study: StudyDesign | None = None
    # None: patients to score (`pverisk score`), not a cohort to train on (training refuses it).
    outcome: ColumnMap | None = None
    non_resection_reason: ColumnMap | None = None
    columns: dict[str, ColumnMap] = Field(default_factory=dict)
    # Contract features this registry did not record: absent from the cohort, never invented.
    not_collected: list[str] = Field(default_factory=list)
    # Clinical scores the registry recorded itself (fong_crs, game_score, m_crs,
    # tumour_burden_score, or a local score's name): baselines, never inputs.
    scores: dict[str, ColumnMap] = Field(default_factory=dict)
    # Date columns of each source's records (contract source groups: laboratory, imaging, ...): the
    # feature store dates each record by them (point-in-time training). Absent: the decision date.
    record_dates: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _targets_known(self) -> "Mapping":
        unknown = [t for t in [*self.columns, *self.not_collected] if t not in c.BY_NAME]
        if unknown:
            raise ValueError(f"not features of the contract: {', '.join(unknown)} "
                             "(see feature_store/DATA_DICTIONARY.md for the names)")
        both = [t for t in self.not_collected if t in self.columns]
        if both:
            raise ValueError(f"both mapped under `columns` and listed as `not_collected`: {', '.join(both)}")
        for target, cm in self.columns.items():
            unit = c.BY_NAME[target].unit
            if cm.unit is not None and (unit, cm.unit) not in UNIT_FACTORS:
                known = sorted(s for t, s in UNIT_FACTORS if t == unit)
                raise ValueError(f"columns.{target}.unit: no conversion from {cm.unit!r} to {unit!r}; known: {known}")
        unknown_sources = [g for g in self.record_dates if g not in c.SOURCE_GROUPS]
        if unknown_sources:
            raise ValueError(f"record_dates: not source groups of the contract: {', '.join(unknown_sources)}; "
                             f"known: {', '.join(c.SOURCE_GROUPS)}")
        bad_scores = [k for k in self.scores if not k.replace("_", "").isalnum()]
        if bad_scores:
            raise ValueError(f"scores: names must be letters, digits and underscores: {', '.join(bad_scores)}")
        if self.progression_definition is not None:
            if self.progression_definition not in c.PROGRESSION_DEFINITIONS:
                raise ValueError(f"progression_definition must be one of {', '.join(c.PROGRESSION_DEFINITIONS)}")
            design = self.study or StudyDesign()
            if design.progression_definition not in (None, self.progression_definition):
                raise ValueError("progression_definition differs from study.progression_definition")
            self.study = design.model_copy(update={"progression_definition": self.progression_definition})
        return self

    def design(self) -> StudyDesign | None:
        return self.study


class MappingError(ValueError):
    """The mapping file is wrong: each problem names the mapping key, in plain words."""

    def __init__(self, path: Path, problems: list[str]):
        self.problems = problems
        super().__init__(f"mapping {path}: " + "; ".join(problems))


def _plain_error(e: dict[str, Any]) -> str:
    where = ".".join(str(x) for x in e["loc"]) or "(top level)"
    kind = e["type"]
    if kind == "missing":
        return f"`{where}` is required but not given"
    if kind == "extra_forbidden":
        return f"`{where}` is not a mapping key we know (check its spelling and indentation)"
    if kind in ("model_type", "dict_type"):
        return f"`{where}` should be a block of keys (for a column: `{{source: COLUMN}}`)"
    if kind == "literal_error":
        return f"`{where}`: {e['msg'].replace('Input should be', 'should be')}"
    msg = e["msg"].removeprefix("Value error, ")
    return f"`{where}`: {msg}"


def load_mapping(path: Path) -> Mapping:
    """Read and check a mapping; MappingError names every wrong key in plain words."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise MappingError(path, [f"not valid YAML{where}"]) from None
    if not isinstance(raw, dict):
        raise MappingError(path, ["the file should hold mapping keys (outcome, columns, ...), not a list or text"])
    try:
        return Mapping.model_validate(raw)
    except ValidationError as exc:
        raise MappingError(path, [_plain_error(e) for e in exc.errors(include_input=False)]) from None
