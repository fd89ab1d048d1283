"""A contract record as a FHIR Bundle (the mapping run backwards): the documented example of
POST /v1/predict/fhir and charts for tests and benchmarks. Never a real patient."""

from __future__ import annotations

from typing import Any

from ehr.chart_observations import DEMOGRAPHIC
from feature_store.codes import LOCAL_SYSTEM
from feature_store import contract as c
from feature_store.units import CONTRACT_UCUM


def record_to_bundle(record: dict[str, Any], patient_id: str = "example", when: str = "2026-01-15") -> dict[str, Any]:
    """A contract record as a FHIR collection Bundle (the inverse mapping; documentation examples)."""
    entries: list[dict[str, Any]] = []
    patient: dict[str, Any] = {"resourceType": "Patient", "id": patient_id}
    if record.get("sex"):
        patient["gender"] = record["sex"]
    if record.get("age_years") is not None:
        patient["birthDate"] = f"{int(when[:4]) - int(record['age_years'])}{when[4:]}"
    entries.append(patient)
    entries.append({"resourceType": "Condition", "id": "liver-metastases", "subject": {"reference": f"Patient/{patient_id}"},
                    "code": {"coding": [{"system": c.SNOMED, "code": "94381002"}]}})
    side_code = {"right_colon": "C18.2", "left_colon": "C18.7", "rectum": "C20"}.get(record.get("primary_side") or "")
    if side_code:
        entries.append({"resourceType": "Condition", "id": "primary", "subject": {"reference": f"Patient/{patient_id}"},
                        "code": {"coding": [{"system": c.ICD10, "code": side_code}]}})
    for f in c.features():
        v = record.get(f.name)
        if f.name in DEMOGRAPHIC or v is None:
            continue
        loinc = next((x for x in f.codes if x.system == c.LOINC and x.unit), None)
        code = {"system": c.LOINC, "code": loinc.code} if loinc else {"system": LOCAL_SYSTEM, "code": f.name}
        obs: dict[str, Any] = {"resourceType": "Observation", "id": f.name.replace("_", "-"), "status": "final",
                               "subject": {"reference": f"Patient/{patient_id}"}, "code": {"coding": [code]},
                               "effectiveDateTime": when}
        if f.kind is c.Kind.BOOLEAN:
            obs["valueBoolean"] = bool(v)
        elif f.kind is c.Kind.CATEGORY:
            obs["valueCodeableConcept"] = {"coding": [{"system": LOCAL_SYSTEM, "code": v}]}
        elif f.kind is c.Kind.INTEGER:
            obs["valueInteger"] = int(v)
        else:
            unit = loinc.unit if loinc else CONTRACT_UCUM.get(f.unit or "", f.unit)
            obs["valueQuantity"] = {"value": v, "unit": unit, "system": c.UCUM, "code": unit}
        entries.append(obs)
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in entries]}
