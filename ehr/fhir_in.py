"""POST /v1/predict/fhir: one patient's FHIR Bundle in, the risk and a RiskAssessment out.

Kept out of service.py so the endpoint there stays one call. Same mapping and the same checks
as the CDS Hooks service (identity, applicability, enough data); the answers differ only in
shape: 422 with the reason and an OperationOutcome where CDS Hooks gives a 412 or no card.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timezone
from typing import Any

from ehr.fhir_read import Problem, bundle_entries
from ehr.assess import assess, reason
from ehr.fhir_out import operation_outcome, risk_assessment
from ehr.settings import EhrSettings

logger = logging.getLogger("pverisk.fhir")


def _reject(status: int, body: dict[str, Any], kinds: list[str]) -> tuple[int, dict[str, Any]]:
    # one line per rejected request: status and problem kinds, no patient data, no traceback
    logger.warning("fhir rejected status=%d problems=%s", status, ",".join(sorted(set(kinds))) or "-")
    return status, body


def parse_decision_date(value: str | None) -> datetime | None:
    """`?decision_date=YYYY-MM-DD` (retrospective research use); ValueError when not a past date."""
    if not value:
        return None
    day = date.fromisoformat(value)
    if day > datetime.now(timezone.utc).date():
        raise ValueError("in the future")
    # the end of that day: results of the decision day count
    return datetime.combine(day, time(23, 59, 59), tzinfo=timezone.utc)


def _problem_list(problems: list[Problem]) -> list[dict[str, Any]]:
    return [{"kind": p.kind, "resource": p.ref, "feature": p.feature, "problem": p.message} for p in problems]


BUNDLE_TYPES = ("transaction", "batch", "collection", "searchset")


def bundle_problem(bundle: Any) -> str | None:
    """What makes a body not one patient's Bundle, in words that name the field and the allowed values (never
    the value sent, nor an internal class)."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return "resourceType: must be Bundle (one patient's chart as a FHIR Bundle)"
    if bundle.get("type") not in BUNDLE_TYPES:
        return f"type: Bundle type not supported; send one of {', '.join(BUNDLE_TYPES)}"
    if bundle.get("entry") is not None and not isinstance(bundle.get("entry"), list):
        return "entry: must be a list of Bundle entries"
    return None


def predict_bundle(bundle: dict[str, Any], risk: Any, settings: EhrSettings, decision_date: str | None = None
                   ) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for one patient's Bundle (transaction, batch, collection or searchset)."""
    if (problem := bundle_problem(bundle)) is not None:
        return _reject(400, {"error": "not a supported FHIR Bundle", "detail": [problem]}, ["bundle"])
    try:
        decision = parse_decision_date(decision_date)
    except ValueError:
        return _reject(400, {"error": "decision_date: not an ISO date (YYYY-MM-DD) on or before today"},
                       ["decision_date"])
    problems: list[Problem] = []
    entries = bundle_entries(bundle, problems)
    a = assess(entries, risk, settings, decision=decision, problems=problems)
    mapped = a.mapped
    listed = _problem_list(mapped.problems) if mapped else []
    if a.identity_conflict:
        return _reject(422, {"error": f"identity conflict: {a.identity_conflict}", "problems": listed,
                             "operation_outcome": operation_outcome([("error", "identity", a.identity_conflict)])},
                       ["identity"])
    if a.declined:
        why = reason(a)
        prefix = "not assessed" if a.declined in ("unreadable", "unresolved_references") else "not applicable"
        return _reject(422, {"error": f"{prefix}: {why}", "not_applicable": a.declined, "problems": listed,
                             "operation_outcome": operation_outcome([("error", "not_applicable", why)])},
                       [a.declined])
    if a.prediction is None:
        need = settings.cds_min_input_share
        text = (f"not enough data to estimate the risk responsibly: {a.share:.0%} of the model's inputs found in "
                f"the chart, at least {need:.0%} needed (PVERISK_SERVE_CDS_MIN_INPUT_SHARE)"
                + (f", and every required input: {', '.join(a.missing_required)} missing" if a.missing_required else ""))
        return _reject(422, {
            "error": text, "share_of_inputs": round(a.share, 2), "min_share_of_inputs": need,
            "missing_required": a.missing_required,
            "missing_inputs": [f for f in risk.features if a.record.get(f) is None],
            "inputs": a.record, "input_sources": mapped.sources if mapped else {}, "notes": a.notes,
            "problems": listed, "problem_counts": a.counts(),
            "operation_outcome": operation_outcome(
                [("error", "insufficient", f"{text}; missing required: {', '.join(a.missing_required) or 'none'}")]
                + [("warning", p.kind, p.text()) for p in (mapped.problems if mapped else [])][:100])},
            ["insufficient", *a.counts()])
    ra = risk_assessment(a.prediction, f"Patient/{a.patient_id}" if a.patient_id else None, a.basis, decision)
    return 200, {**a.prediction, "inputs": a.record, "input_sources": mapped.sources if mapped else {},
                 "notes": a.notes, "problems": listed, "problem_counts": a.counts(), "fhir_risk_assessment": ra}
