"""Request and response bodies of the service's routes (pydantic: validation and the OpenAPI schema).

The ones whose documented example is a patient are made for the served model's inputs."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from itertools import repeat
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from ehr.examples import record_to_bundle
from feature_store import contract as c
from feature_store.record import record_struct

MAX_OUTCOMES = 10_000
OUTPUTS = ("full", "probabilities")


class PatientStructs(list):  # type: ignore[type-arg]
    """A records batch as msgspec read it: one Struct per patient (no dict per patient); `columns`
    gives the values by field, as the batch route validates and scores them."""

    def columns(self) -> dict[str, list[Any]]:
        """Field -> one value per patient (None: absent or null), contract order; a field no patient
        gives is left out, as when no patient's object has the key."""
        names = record_struct().__struct_fields__
        out = {}
        for name, values in zip(names, zip(*map(msgspec.structs.astuple, self))):
            if values.count(None) < len(values):
                out[name] = list(values)
        return out


def record_columns(patients: list[dict[str, Any]] | PatientStructs, accepted: tuple[str, ...]) -> dict[str, list[Any]]:
    """A records batch as columns (field -> one value per patient; absent and null both None): the
    contract's fields in its order, then any other key a patient gave (reported as unknown)."""
    if isinstance(patients, PatientStructs):
        return patients.columns()
    names = set().union(*patients)
    order = [f for f in accepted if f in names] + sorted(names - set(accepted))
    return {k: list(map(dict.get, patients, repeat(k))) for k in order}


@lru_cache(maxsize=1)
def _records_decoder() -> Any:
    batch = msgspec.defstruct("BatchStruct", [
        ("patients", Annotated[list[record_struct()], msgspec.Meta(min_length=1)]),  # type: ignore[misc]
        ("partial", bool, False), ("output", Literal[OUTPUTS], "full")], forbid_unknown_fields=True)  # type: ignore[valid-type]
    return msgspec.json.Decoder(batch)


def read_records(body: bytes | str) -> tuple[PatientStructs, bool, str] | None:
    """A records batch body read straight into typed Structs; None when msgspec refuses anything in
    it (a wrong type, a value out of range, an unknown field, malformed JSON): the request model then
    reads it and words every problem. What msgspec accepts, the request model and the batch
    validator accept too (same types and bounds, from the contract); the validator still checks it."""
    try:
        doc = _records_decoder().decode(body)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None
    return PatientStructs(doc.patients), doc.partial, doc.output


def batch_request_model(features: tuple[str, ...]) -> type[BaseModel]:
    class BatchRequest(BaseModel):
        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={"example": {"patients": [c.example_record(features), c.example_record(features)],
                                           "partial": False}},
        )
        patients: list[dict[str, Any]] = Field(
            ..., min_length=1, description="Patients, each with the fields of PatientRecord (see /v1/predict).")
        partial: StrictBool = Field(False, description="Score the valid patients even if some are invalid.")
        output: Literal["full", "probabilities"] = Field(
            "full", description="`probabilities`: each patient's probability and risk band only (no clinical "
            "scores, factors or missing inputs), for bulk scoring; `full`: everything /v1/predict answers.")

        @classmethod
        def model_validate_json(cls, json_data: Any, **kwargs: Any) -> "BatchRequest":
            """BentoML reads the body with this. A plainly valid body is read by msgspec into Structs
            (a third of the time of a dict per patient); anything else as pydantic reads it."""
            fast = read_records(json_data)
            if fast is None:
                return super().model_validate_json(json_data, **kwargs)
            patients, partial, output = fast
            return cls.model_construct(patients=patients, partial=partial, output=output)

    return BatchRequest


def fhir_bundle_model(features: tuple[str, ...]) -> type[BaseModel]:
    class FhirBundle(BaseModel):
        """A FHIR R4 Bundle (transaction, batch, collection or searchset: what EHRs and their test
        tools export) holding one patient's resources."""
        # dated today so the documented example is never stale for the mapping
        model_config = ConfigDict(extra="allow", json_schema_extra={"example": record_to_bundle(
            c.example_record(features), when=datetime.now(timezone.utc).date().isoformat())})
        # Checked by the route (ehr/fhir_in.py: bundle_problem), which names the field and the allowed values;
        # the request model's own message would name an internal class.
        resourceType: Any = Field(None, description="Required: Bundle.", json_schema_extra={"enum": ["Bundle"]})
        type: Any = Field(None, description="Required: the Bundle type.",
                          json_schema_extra={"enum": ["transaction", "batch", "collection", "searchset"]})
        entry: Any = Field(None, json_schema_extra={"type": "array", "items": {"type": "object"}})

    return FhirBundle


class Factor(BaseModel):
    feature: str
    value: Any = None
    contribution_log_odds: float
    direction: str


class PredictionResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {
        "probability": 0.27, "risk_band": "intermediate", "band_thresholds": {"low_below": 0.15, "high_from": 0.35},
        "clinical_scores": {"tumour_burden_score": 6.3, "fong_crs": 3.0, "game_score": 2.0, "m_crs": 1.0,
                            "game_group": "medium"},
        "top_factors": [{"feature": "n_liver_metastases", "value": 5, "contribution_log_odds": 0.21,
                         "direction": "raises risk"}],
        "missing_inputs": [], "unused_inputs": [],
        "missing_handling": "left missing; the model follows its learned default branch",
        "model": {"name": "pve-progression-risk", "version": "1", "alias": "champion", "data_kind": "simulated",
                  "bento_tag": "pve-progression-risk:v1", "run_id": "...", "feature_contract_version": "1.0.0"},
        "data_kind": "simulated", "notice": "Research use only ..."}})
    probability: float = Field(..., ge=0, le=1, description="Calibrated risk of progression (0-1)")
    risk_band: str
    band_thresholds: dict[str, float]
    clinical_scores: dict[str, Any]
    top_factors: list[Factor]
    missing_inputs: list[str]
    unused_inputs: list[str] = Field(default_factory=list, description="Contract features given that the served "
                                     "model does not use")
    missing_handling: str
    model: dict[str, str]
    data_kind: str
    notice: str
    question_note: str | None = Field(None, description="Present when the training cohort answers a different "
                                      "question than progression between PVE and the planned resection")
    predicted_outcome: str | None = Field(None, description="With question_note: what this model's risk is a "
                                          "risk of, as its training cohort defined it")


class Outcome(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON's 0 is not false, "true" is not true
    prediction_id: str = Field(..., min_length=1, max_length=80, pattern=r"^[A-Za-z0-9-]+$",
                               description="The prediction_id of a /v1/predict, batch or FHIR answer")
    outcome: bool = Field(..., description="Progression observed (true) or not (false)")


class OutcomesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"outcomes": [
        {"prediction_id": "3f1c0b6d2a8e4f7fb1d9c0a2e5f6a7b8", "outcome": False}]}})
    # the bound is in the description and enforced by the handler: BentoML's copy of this model loses
    # maxItems, and a body over the route's size limit is refused with 413 before any schema is read
    outcomes: list[Outcome] = Field(..., min_length=1,
                                    description=f"At most {MAX_OUTCOMES:,} outcomes per call (400 beyond that)")


class PrefillRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"token": "tq3V9sPpJ0r3n1bRk2oQxY7cL4aHf8dE"}})
    token: str = Field(..., max_length=64, description="The token from a CDS card's calculator link (#prefill=...)")
