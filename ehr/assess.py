"""From a chart to a prediction: map it onto the contract, refuse what the contract refuses, decline
patients the model is not for, and score only when enough is known. Shared by the CDS Hooks service
and POST /v1/predict/fhir."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ehr.cds_gather import Entries
from ehr.fhir_map import map_chart
from ehr.fhir_read import REFUSED, Mapped, Problem
from ehr.settings import EhrSettings
from feature_store import contract as c
from feature_store.clinical import clinical_record
from feature_store.columns import is_missing
from feature_store.record import patient_model


def refused_fields(record: dict[str, Any], features: list[str] | tuple[str, ...] | None = None
                   ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Keep the values the contract accepts; (feature, problem) for the ones it refuses, no values."""
    model = patient_model(tuple(features) if features is not None else None)
    refused: list[tuple[str, str]] = []
    fields = dict(record)
    for _ in range(len(fields) + 1):
        try:
            model.model_validate(fields)
            break
        except ValidationError as exc:
            errors = exc.errors(include_input=False)
            bad = {str(e["loc"][0]) for e in errors if e["loc"] and e["type"] != "missing"}
            if not bad:
                break
            for name in sorted(bad):
                refused.append((name, next(e["msg"] for e in errors if e["loc"] and e["loc"][0] == name)))
                fields.pop(name, None)
    return fields, refused


# Why no risk is given, by the name the log line uses. The first two are the model not applying (no card);
# the others are a chart that cannot be read safely, and say so.
NOT_APPLICABLE = {
    "deceased": "the patient is deceased",
    "no_liver_metastasis": "no active liver-metastasis Condition in the chart",
    "unreadable": "a field that decides whether the model applies could not be read",
    "unresolved_references": "the chart refers to its patient through urn:uuid references that no entry with that "
                             "fullUrl resolves (a prefetch cut out of a transaction Bundle): send server references "
                             "(Patient/<id>), or the Bundle's entries with their fullUrls and the Patient entry",
}


def declined(mapped: Mapped) -> str | None:
    """Why the chart gets no risk (a key of NOT_APPLICABLE), or None. Fails closed: an unreadable safety
    field is never taken as alive or active."""
    if mapped.deceased:
        return "deceased"
    if mapped.unreadable:
        return "unreadable"
    if mapped.liver_metastasis:
        return None
    return "unresolved_references" if mapped.unresolved_liver else "no_liver_metastasis"


def reason(a: "Assessment") -> str:
    """The plain reason behind a decline, naming the unreadable fields (never values)."""
    why = NOT_APPLICABLE[a.declined or "no_liver_metastasis"]
    if a.declined == "unreadable" and a.mapped:
        why += ": " + "; ".join(a.mapped.unreadable)
    return why


@dataclass
class Assessment:
    prediction: dict[str, Any] | None
    record: dict[str, Any]
    notes: list[str]
    share: float
    missing_required: list[str]
    basis: list[str]
    patient_id: str | None
    mapped: Mapped | None = None
    # Why no risk is given at all: an identity conflict, or an applicability check that declined.
    identity_conflict: str | None = None
    declined: str | None = None
    # Inputs the chart lacked that the online feature store had, fresh: name -> age in days.
    from_store: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return self.mapped.counts() if self.mapped else {}


def assess(resources: list[dict[str, Any]] | Entries, risk: Any, settings: EhrSettings,
           decision: datetime | None = None, patient_id: str | None = None,
           problems: list[Problem] | None = None, fhir_server: str | None = None) -> Assessment:
    """FHIR resources -> contract record -> a prediction, or None when too little is known, the
    chart is someone else's, or the patient is not a candidate (deceased, no liver metastasis, a safety
    field unreadable). Shared by the CDS service and POST /v1/predict/fhir."""
    entries = [e if isinstance(e, tuple) else (None, e) for e in resources]
    mapped = map_chart(entries, decision=decision, patient_id=patient_id, problems=problems, fhir_server=fhir_server)
    if mapped.identity_conflict:
        return Assessment(None, {}, mapped.notes, 0.0, [], [], mapped.patient_id, mapped,
                          identity_conflict=mapped.identity_conflict)
    record, refused = refused_fields(mapped.record, risk.features)
    for name, msg in refused:
        mapped.problems.append(Problem(REFUSED, "input", f"{msg}; refused", name))
    return score_assessment(Assessment(None, record, mapped.notes, 0.0, [], mapped.basis, mapped.patient_id, mapped,
                                       declined=declined(mapped)), risk, settings)


def score_assessment(a: Assessment, risk: Any, settings: EhrSettings) -> Assessment:
    """Score a.record when enough of it is known (the served model's own inputs decide; a coarse input
    counts when its fine value is there)."""
    derived, _ = risk.derive({k: [v] for k, v in a.record.items()})
    present = [f for f in risk.features if not is_missing(derived[f][0] if f in derived else None)]
    a.share = len(present) / len(risk.features)
    a.missing_required = [f for f in risk.required if f not in present]
    enough = not a.declined and not a.missing_required and a.share >= settings.cds_min_input_share
    a.prediction = risk.score_record(a.record) if enough else None
    return a


def missing_from_chart(a: Assessment, risk: Any) -> list[str]:
    """The served model's inputs (and fine sources) the chart did not give."""
    return [f for f in c.input_names(risk.features) if is_missing(a.record.get(f))]


def fill_from_store(a: Assessment, values: dict[str, Any], ages: dict[str, float], risk: Any,
                    settings: EhrSettings) -> Assessment:
    """Inputs the chart lacked, taken from the online feature store's fresh values, then scored again."""
    wanted = missing_from_chart(a, risk)
    taken = clinical_record({f: values[f] for f in wanted if f in values})
    if not taken:
        return a
    a.record = {**a.record, **taken}
    a.from_store = {f: ages[f] for f in taken}
    return score_assessment(a, risk, settings)
