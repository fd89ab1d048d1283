"""CDS Hooks 2.0 shapes (the specification's tables as pydantic models), the discovery document and
the prefetch templates the served model's inputs call for."""

from __future__ import annotations

import uuid
from functools import lru_cache
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ehr.chart_observations import observation_queries
from feature_store import contract as c
from feature_store import standard_codes as sc
from feature_store.codes import LOCAL_SYSTEM, RXNORM
from feature_store.standard_codes import local_code

SERVICE_ID = "pve-progression-risk"


# --- shapes from the CDS Hooks 2.0 specification ------------------------------------------
class FhirAuthorization(BaseModel):
    model_config = ConfigDict(strict=True)  # the JSON types documented, no coercion
    # RFC 6750 b64token: it goes into an HTTP header (a 500 once, for a token HTTP cannot carry)
    access_token: str = Field(..., pattern=r"^[A-Za-z0-9\-._~+/]+=*$")
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None


class HookContext(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    userId: str | None = None
    # a FHIR id: it goes into the prefetch queries' URLs (found by benchmarks.bench_fuzz: a 500 once)
    patientId: str = Field(..., pattern=r"^[A-Za-z0-9\-.]{1,64}$")
    encounterId: str | None = None


class CDSRequest(BaseModel):
    model_config = ConfigDict(strict=True)  # the JSON types documented, no coercion
    # any string parses (another hook gets a 400 that says which one is served); documented as the one
    hook: str = Field(..., json_schema_extra={"enum": ["patient-view"]})
    hookInstance: str
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: HookContext
    prefetch: dict[str, Any] | None = None


class Source(BaseModel):
    label: str
    url: str | None = None
    topic: dict[str, str] | None = None


class Link(BaseModel):
    label: str
    url: str
    type: Literal["absolute", "smart"] = "absolute"
    appContext: str | None = None


class OverrideReason(BaseModel):
    code: str
    system: str
    display: str


class Card(BaseModel):
    uuid: str = Field(default_factory=lambda: str(uuid.uuid4()))
    summary: str = Field(..., max_length=140)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    overrideReasons: list[OverrideReason] | None = None
    links: list[Link] | None = None


class CardsResponse(BaseModel):
    cards: list[Card]


class ServiceDefinition(BaseModel):
    hook: str
    title: str
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class Discovery(BaseModel):
    services: list[ServiceDefinition]


class FeedbackItem(BaseModel):
    model_config = ConfigDict(strict=True)  # the JSON types documented, no coercion
    card: str
    outcome: Literal["accepted", "overridden"]
    overrideReason: dict[str, Any] | None = None
    acceptedSuggestions: list[dict[str, Any]] | None = None
    outcomeTimestamp: str = Field(..., json_schema_extra={"format": "date-time"})

    @field_validator("outcomeTimestamp")
    @classmethod
    def _iso(cls, v: str) -> str:
        datetime.fromisoformat(v.replace("Z", "+00:00"))
        return v


class Feedback(BaseModel):
    model_config = ConfigDict(strict=True)  # the JSON types documented, no coercion
    feedback: list[FeedbackItem]


OVERRIDE_REASONS = [
    OverrideReason(code="already-considered", system="urn:pverisk:override-reason", display="Already considered"),
    OverrideReason(code="data-incorrect", system="urn:pverisk:override-reason", display="Input data incorrect"),
    OverrideReason(code="not-a-pve-candidate", system="urn:pverisk:override-reason",
                   display="Not a PVE candidate"),
]


# Prefetch keys a model needs beyond the core three, and the inputs each one carries. An EHR that leaves one
# out (and gives no fhirServer to fetch it) still gets a card: those inputs are read from the other keys.
OPTIONAL_KEYS = {
    "tumours": ("n_liver_metastases", "largest_metastasis_cm", "bilobar_disease"),
    "medications": ("chemo_cycles_pre_pve", "bevacizumab_pre_pve"),
    "medication_requests": ("chemo_cycles_pre_pve", "bridging_chemo_planned"),
    "orders": ("planned_interval_weeks", "bridging_chemo_planned"),
    "procedures": ("planned_interval_weeks",),
}


def prefetch_templates(features: list[str] | tuple[str, ...] | None = None) -> dict[str, str]:
    """The prefetch templates for these model inputs (computed once per model: every call asks)."""
    return dict(_templates(tuple(features) if features is not None else None))


@lru_cache(maxsize=8)
def _templates(features: tuple[str, ...] | None) -> dict[str, str]:
    """The prefetch the served model's inputs call for, from the mapping table (feature_store/standard_codes.py):
    the Patient; the problem list (small; mCODE codes cancers by any SNOMED CT or ICD-10 concept with a
    bodySite, which no short code list covers); the Observations coded for the inputs (US Core labs, tumour
    markers, Tumor Size, TNM N category, genomic variants and regions studied, local codes); and, for the
    inputs that need them, the liver tumours, cancer medications, and the PVE and hepatectomy orders."""
    used = set(c.input_names(features)) if features is not None else set(c.feature_names())
    obs = [f"{c.LOINC}|{code}" for name, codes in observation_queries().items() if name in used for code in codes]
    if used & {"n_liver_metastases", "largest_metastasis_cm", "bilobar_disease"}:
        obs.append("|".join(sc.TUMOR_SIZE))
    if "node_positive_primary" in used:
        obs += ["|".join(x) for x in sc.N_CATEGORY_CODES]
    if used & {"ras_status", "braf_v600e"}:
        obs += ["|".join(sc.VARIANT), "|".join(sc.REGION_STUDIED)]
    obs += [f"{LOCAL_SYSTEM}|{f.name}" for f in c.features() if f.name in used and local_code(f.name)]
    meds = ",".join(f"{RXNORM}|{code}" for code in {**sc.CHEMOTHERAPY, **sc.BEVACIZUMAB})
    out = {
        "patient": "Patient/{{context.patientId}}",
        "conditions": "Condition?patient={{context.patientId}}",
        "observations": "Observation?patient={{context.patientId}}&code=" + ",".join(dict.fromkeys(obs)),
    }
    optional = {
        "tumours": "BodyStructure?patient={{context.patientId}}",
        "medications": "MedicationAdministration?patient={{context.patientId}}&code=" + meds,
        "medication_requests": "MedicationRequest?patient={{context.patientId}}&code=" + meds,
        "orders": "ServiceRequest?patient={{context.patientId}}&status=active,draft,on-hold,completed",
        "procedures": "Procedure?patient={{context.patientId}}&code=" + "|".join(sc.EMBOLIZATION),
    }
    out.update({k: v for k, v in optional.items() if used & set(OPTIONAL_KEYS[k])})
    return out


def discovery(features: list[str] | tuple[str, ...] | None = None) -> Discovery:
    return Discovery(services=[ServiceDefinition(
        hook="patient-view", id=SERVICE_ID, title="PVE progression risk (research use only)",
        description="Risk that colorectal liver metastases progress between portal vein embolization and "
                    "resection, with the clinical scores and the main factors. Research use only.",
        prefetch=prefetch_templates(features),
        usageRequirements="Research use only. Needs the Patient, the problem list and the Observations in the "
                          "prefetch templates (or FHIR server access); the other keys (tumours, medications, "
                          "orders) add the inputs they carry when given. References must resolve: server "
                          "references (Patient/<id>), or urn:uuid references with their entries in the prefetch.",
    )])
