"""Study design of a cohort: population, outcome, horizon, dates, site.

A cohort says what it is (the import mapping's `study` block; the simulator states its own);
the design travels with the cohort file (Parquet metadata), the MLflow run, the model card,
`GET /v1/model` and every prediction response. Nothing is invented: a field the mapping does
not give is absent, never defaulted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The question the product answers (domain brief): progression of liver disease between PVE and
# the planned resection, in patients who had PVE, predicted at the PVE decision.
INTENDED_POPULATION = "pve_only"
INTENDED_OUTCOME = "progression_before_resection"
INTENDED_QUESTION = ("progression of liver disease between PVE and the planned resection, in patients "
                     "who had PVE")

Population = Literal["pve_only", "pve_and_other", "all_resected", "other"]
Outcome = Literal["progression_before_resection", "non_resection_any_reason", "recurrence_after_resection",
                  "other"]
POPULATION_TEXT = {
    "pve_only": "patients who had PVE",
    "pve_and_other": "PVE patients and others",
    "all_resected": "all resected patients (PVE in some)",
    "other": "another population",
}
OUTCOME_TEXT = {
    "progression_before_resection": "progression between PVE and the planned resection",
    "non_resection_any_reason": "non-resection for any reason",
    "recurrence_after_resection": "recurrence after resection",
    "other": "another outcome",
}
# The moment a cohort's inputs describe. The model answers at the PVE decision; a registry that dates its
# values at resection (or at diagnosis) describes patients later (or earlier) than that.
PredictionTime = Literal["pve_decision", "diagnosis_of_metastases", "resection", "other"]
PREDICTION_TIME_TEXT = {
    "pve_decision": "the PVE decision",
    "diagnosis_of_metastases": "the diagnosis of the liver metastases",
    "resection": "the time of resection",
    "other": "another moment",
}
INTENDED_PREDICTION_TIME = "pve_decision"
PARQUET_KEY = b"pverisk"


class StudyDesign(BaseModel):
    """What a cohort is. Every field optional: absent means the source did not say."""

    model_config = ConfigDict(extra="forbid")
    population: Population | None = None
    population_description: str | None = None
    pve_patients: int | None = Field(None, ge=0, description="patients who had PVE, when the population is wider")
    outcome: Outcome | None = None
    outcome_definition: str | None = None
    progression_definition: Literal["RECIST 1.1", "volumetric", "clinical"] | None = None
    horizon_months: float | None = Field(None, gt=0)
    # the moment the inputs describe (the values as they were then)
    prediction_time: PredictionTime | None = None
    date_range: tuple[str, str] | None = None
    site: str | None = None

    def stated(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


SIMULATED_DESIGN = StudyDesign(
    population="pve_only", population_description="simulated PVE candidates (literature-grounded generator)",
    outcome="progression_before_resection", progression_definition="RECIST 1.1",
    outcome_definition="progression of liver disease between PVE and planned resection (RECIST 1.1) or as the "
                       "reason resection was not done",
    horizon_months=2.0, site="simulated", prediction_time="pve_decision",
)


def question_note(design: StudyDesign | None) -> str | None:
    """One sentence when the cohort answers a different (or an unstated) question; None when it
    matches the intended one."""
    if design is None or (design.population is None and design.outcome is None):
        return ("The training cohort's population and outcome were not stated, so the model may answer a "
                f"different question than {INTENDED_QUESTION}.")
    differs = []
    if design.population != INTENDED_POPULATION:
        differs.append(f"population: {POPULATION_TEXT.get(design.population or '', 'not stated')}")
    if design.outcome != INTENDED_OUTCOME:
        horizon = f" within {design.horizon_months:g} months" if design.horizon_months else ""
        differs.append(f"outcome: {OUTCOME_TEXT.get(design.outcome or '', 'not stated')}{horizon}")
    if design.prediction_time not in (None, INTENDED_PREDICTION_TIME):
        differs.append(f"inputs describe {PREDICTION_TIME_TEXT[design.prediction_time]}, not the PVE decision")
    if not differs:
        return None
    return (f"This model was trained on a cohort that answers a different question ({'; '.join(differs)}) "
            f"than the intended one ({INTENDED_QUESTION}); read its risks in that light.")


def prediction_time_text(design: dict[str, Any] | None) -> str:
    """The moment a cohort's inputs describe, in words, for the card."""
    stated = (design or {}).get("prediction_time")
    if stated is None:
        return ("not stated by the cohort (the model is meant for the PVE decision; check that the inputs were "
                "recorded before it)")
    if stated == INTENDED_PREDICTION_TIME:
        return PREDICTION_TIME_TEXT[stated]
    return (f"{PREDICTION_TIME_TEXT[stated]}, as the cohort states: its inputs describe patients then, not at the "
            "PVE decision the model is meant for")


def predicted_outcome(design: dict[str, Any] | None) -> str:
    """What a model's risk is a risk of, in words: the intended outcome unless the training cohort
    stated another (then its own definition)."""
    if design and design.get("outcome") not in (None, INTENDED_OUTCOME):
        text = design.get("outcome_definition") or OUTCOME_TEXT.get(design["outcome"], "another outcome")
        horizon = design.get("horizon_months")
        return text + (f" (within {horizon:g} months)" if horizon and "month" not in text else "")
    return "liver progression between PVE and resection"


def write_with_design(frame: Any, path: Path, design: StudyDesign | None, extra: dict[str, Any] | None = None) -> None:
    """Write a cohort to Parquet with its study design in the file's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    payload = {"study_design": design.stated() if design else None, **(extra or {})}
    meta[PARQUET_KEY] = json.dumps(payload, default=str).encode()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(meta), path)


def read_cohort_metadata(path: Path) -> dict[str, Any]:
    """The pverisk metadata of a Parquet cohort ({} for other files or none written)."""
    if Path(path).suffix.lower() != ".parquet":
        return {}
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(PARQUET_KEY)
    return json.loads(raw) if raw else {}


def design_from_metadata(meta: dict[str, Any]) -> StudyDesign | None:
    stated = meta.get("study_design")
    return StudyDesign.model_validate(stated) if stated else None

