"""Examples in the OpenAPI document (serving/openapi.py): request bodies for the routes BentoML does not
describe, and a 200 answer for every route, so that integrators see each shape filled in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from feature_store import contract as c
from ehr.examples import record_to_bundle

PROBE_EXAMPLE = "\"OK\""
METRICS_EXAMPLE = 'pverisk_predictions_total{endpoint="predict",model_name="pve-progression-risk",...} 3.0'
PROBE_PATHS = ("/livez", "/readyz", "/healthz")


def request_examples(features: tuple[str, ...]) -> dict[str, Any]:
    """Request examples for the routes whose bodies BentoML does not describe (the CDS app reads
    raw JSON so that a malformed prefetch is a 400 with our message)."""
    record = c.example_record(features)
    bundle = record_to_bundle(record, patient_id="example",
                              when=datetime.now(timezone.utc).date().isoformat())
    return {
        "/v1/prefill": {"token": "tq3V9sPpJ0r3n1bRk2oQxY7cL4aHf8dE"},
        "/cds-services/pve-progression-risk": {
            "hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"patientId": "example", "userId": "Practitioner/example"},
            "prefetch": {"patient": next(e["resource"] for e in bundle["entry"]
                                         if e["resource"]["resourceType"] == "Patient"),
                         "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": [
                             e for e in bundle["entry"] if e["resource"]["resourceType"] == "Condition"]},
                         "observations": {"resourceType": "Bundle", "type": "searchset", "entry": [
                             e for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]}}},
        "/cds-services/pve-progression-risk/feedback": {"feedback": [
            {"card": "9368d37b-283f-44a0-93ea-547cebab93ed", "outcome": "overridden",
             "overrideReason": {"reason": {"code": "already-considered", "system": "urn:pverisk:override-reason"}},
             "outcomeTimestamp": "2026-01-15T10:00:00Z"}]},
    }


def response_example(path: str, method: str, model: dict[str, str], features: tuple[str, ...],
                     discovery_example: dict[str, Any] | None) -> tuple[str, Any] | None:
    """The media type and example of a route's 200 answer, or None where the route has none."""
    if path in PROBE_PATHS:
        return "text/plain", PROBE_EXAMPLE
    if path == "/metrics":
        return "text/plain", METRICS_EXAMPLE
    if path == "/cds-services/":
        return None if discovery_example is None else ("application/json", discovery_example)
    if path == "/v1/prefill":
        # only the POST answers with inputs (the link's token is spent by it)
        return ("application/json", {"inputs": c.example_record(features), "expires_in_seconds": 900}) \
            if method == "post" else None
    build = _JSON_EXAMPLES.get(path)
    return None if build is None else ("application/json", build(model, features))


def _model_example(model: dict[str, str], features: tuple[str, ...]) -> dict[str, Any]:
    return {
        "model": {"name": model.get("name"), "version": model.get("version"), "alias": model.get("alias"),
                  "data_kind": model.get("data_kind")},
        "features": list(features), "model_card": {"intended_use": {"purpose": "..."}},
        "ehr_coverage": {"standard_inputs": 20, "total_inputs": 24, "standard_share": 0.833,
                         "local_only": ["extrahepatic_disease", "chemo_response", "sflr_percent",
                                        "embolic_agent"], "inputs": ["..."]}}


def _cards_example(model: dict[str, str], features: tuple[str, ...]) -> dict[str, Any]:
    return {"cards": [{
        "summary": "PVE progression risk 27% (intermediate) - research use only", "indicator": "info",
        "detail": "**Estimated risk of liver progression between PVE and resection: 27% ...",
        "source": {"label": "pve-progression-risk v1 (simulated data)", "url": "https://host/model"},
        "links": [{"label": "Open in the risk calculator (prefilled; link valid 15 minutes, once)",
                   "url": "https://host/#prefill=<token>", "type": "absolute"}]}]}


def _batch_example(model: dict[str, str], features: tuple[str, ...]) -> dict[str, Any]:
    return {
        "n_scored": 1, "n_invalid": 1, "unused_inputs": [], "model": {"name": model.get("name"),
                                                                      "version": model.get("version")},
        "data_kind": model.get("data_kind"), "notice": "Research use only ...",
        "results": [{"index": 0, "probability": 0.27, "risk_band": "intermediate", "...": "..."},
                    {"index": 1, "errors": [{"field": "age_years",
                                             "problem": "outside the allowed range 18 to 100 years"}]}]}


def _fhir_example(model: dict[str, str], features: tuple[str, ...]) -> dict[str, Any]:
    return {
        "probability": 0.27, "risk_band": "intermediate", "...": "the fields of /v1/predict",
        "fhir_risk_assessment": {"resourceType": "RiskAssessment", "status": "final",
                                 "subject": {"reference": "Patient/example"},
                                 "prediction": [{"probabilityDecimal": 0.27}]}}


def _outcomes_example(model: dict[str, str], features: tuple[str, ...]) -> dict[str, Any]:
    return {
        "recorded": 1, "unknown_prediction_ids": [], "performance": {str(model.get("version")): {
            "alias": model.get("alias"), "n": 412, "events": 101, "auroc": 0.71,
            "calibration_in_the_large": -0.01, "brier": 0.17}}}


def _monitoring_example(model: dict[str, str], features: tuple[str, ...]) -> dict[str, Any]:
    return {
        "model": {"model_name": model.get("name"), "model_version": model.get("version")},
        "patients": 400, "thresholds": {"psi": 0.2, "missing_share_change": 0.15, "min_patients": 100},
        "features": {"age_years": {"psi": 1.55, "missing_share": 0.0, "reference_missing_share": 0.0,
                                   "drift": 1, "bins": ["<=49", "...", "missing"],
                                   "window_counts": [0, "...", 0], "reference_counts": [88, "...", 0]}},
        "score_psi": 0.05, "score_quantiles": {"0.5": 0.27}, "risk_bands": {"low": 34, "intermediate": 265,
                                                                             "high": 101}}


_JSON_EXAMPLES: dict[str, Callable[[dict[str, str], tuple[str, ...]], Any]] = {
    "/v1/model": _model_example,
    "/cds-services/pve-progression-risk": _cards_example,
    "/cds-services/pve-progression-risk/feedback": lambda model, features: {},
    "/v1/predict/batch": _batch_example,
    "/v1/predict/fhir": _fhir_example,
    "/v1/outcomes": _outcomes_example,
    "/v1/monitoring": _monitoring_example,
}
