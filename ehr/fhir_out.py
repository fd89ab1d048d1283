"""A prediction as a FHIR R4 RiskAssessment (validated with fhir.resources' R4B models)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

from fhir.resources.R4B.riskassessment import RiskAssessment

OUTCOME_CODING = {
    "text": "Progression of colorectal liver metastases between portal vein embolization and planned resection",
}
RISK_PROBABILITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/risk-probability"
BAND_TO_QUALITATIVE = {"low": ("low", "Low likelihood"), "intermediate": ("moderate", "Moderate likelihood"),
                       "high": ("high", "High likelihood")}


def risk_assessment(prediction: dict[str, Any], patient_ref: str | None = None, basis: list[str] | None = None,
                    occurrence: datetime | None = None) -> dict[str, Any]:
    """Build and validate a RiskAssessment; returns its JSON form."""
    model = prediction["model"]
    code, display = BAND_TO_QUALITATIVE[prediction["risk_band"]]
    device = {
        "resourceType": "Device",
        "id": "model",
        "deviceName": [{"name": model["name"], "type": "model-name"}],
        "version": [{"value": str(model["version"])}],
        "note": [{"text": prediction["notice"]}],
    }
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": str(uuid.uuid4()),
        "contained": [device],
        "status": "final",
        "subject": {"reference": patient_ref or "Patient/unknown"},
        "occurrenceDateTime": (occurrence or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        "method": {"text": f"{model['name']} v{model['version']} (XGBoost, calibrated; data: "
                           f"{prediction['data_kind']})"},
        "performer": {"reference": "#model", "display": f"{model['name']} v{model['version']}"},
        "basis": [{"reference": ref} for ref in (basis or [])],
        "prediction": [{
            # a model trained on another outcome says which in the outcome's text, not under our coding
            "outcome": OUTCOME_CODING if not prediction.get("predicted_outcome") else {
                "text": prediction["predicted_outcome"]},
            "probabilityDecimal": prediction["probability"],
            "qualitativeRisk": {"coding": [{"system": RISK_PROBABILITY_SYSTEM, "code": code, "display": display}]},
        }],
        "note": [{"text": prediction["notice"]}] + (
            [{"text": prediction["question_note"]}] if prediction.get("question_note") else []),
    }
    if not prediction.get("predicted_outcome"):  # the intended question's window; unknown for others
        resource["prediction"][0]["whenRange"] = {
            "low": {"value": 3, "unit": "wk", "system": "http://unitsofmeasure.org", "code": "wk"},
            "high": {"value": 8, "unit": "wk", "system": "http://unitsofmeasure.org", "code": "wk"}}
    if not resource["basis"]:
        del resource["basis"]
    validated = RiskAssessment.model_validate(resource)
    return json.loads(validated.model_dump_json(exclude_none=True))


# FHIR issue-type codes (http://hl7.org/fhir/issue-type) for the problems the mapper reports.
ISSUE_CODE = {"stale": "business-rule", "unit": "value", "bound": "value", "other_patient": "security",
              "malformed": "structure", "future": "business-rule", "undated": "required",
              "unknown_code": "code-invalid", "imprecise_date": "informational", "conflict": "conflict",
              "refused": "value", "identity": "conflict", "not_applicable": "not-supported",
              "insufficient": "incomplete", "partial": "incomplete", "absent": "incomplete"}


def operation_outcome(issues: list[tuple[str, str, str]]) -> dict[str, Any]:
    """(severity, kind, diagnostics) triples as a validated R4 OperationOutcome (FHIR clients read
    this shape); diagnostics never carry submitted values."""
    from fhir.resources.R4B.operationoutcome import OperationOutcome

    resource = {"resourceType": "OperationOutcome",
                "issue": [{"severity": sev, "code": ISSUE_CODE.get(kind, "processing"), "diagnostics": text}
                          for sev, kind, text in issues] or [{"severity": "information", "code": "informational"}]}
    return json.loads(OperationOutcome.model_validate(resource).model_dump_json(exclude_none=True))
