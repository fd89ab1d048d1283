"""FHIR R4 resources -> a contract record: the source adapter for EHR data.

Driven by the feature contract's codes: an Observation counts for a feature only when
its `system` AND `code` match one of the feature's codes (never the text: LOINC 2039-6
collides with a race code of the same digits). Quantities are converted from UCUM to the
contract unit; the latest value at or before the decision date wins; values older than
a configured age are stale and ignored.

Features without a standard code are read from Observations coded in the project's
local code system (LOCAL_SYSTEM, code = contract feature name), as sites do with local codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Iterable

from feature_store import contract as c
from feature_store.units import UCUM_TO_UNIT, UNIT_FACTORS

LOCAL_SYSTEM = "urn:pverisk:feature"
LIVER_METASTASIS = {(c.SNOMED, "94381002"), (c.ICD10, "C78.7")}
ICD10_SYSTEMS = {c.ICD10, "http://hl7.org/fhir/sid/icd-10-cm"}
VALID_STATUS = {"final", "amended", "corrected", "preliminary", "registered"}
# Features the mapper derives from Patient/Condition rather than Observations.
DEMOGRAPHIC = {"age_years", "sex", "primary_side"}


@dataclass
class Mapped:
    record: dict[str, Any]
    basis: list[str] = field(default_factory=list)  # references to the resources used
    notes: list[str] = field(default_factory=list)  # ignored, stale or unconvertible inputs
    liver_metastasis: bool = False
    patient_id: str | None = None


def _parse_when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            dt = datetime.combine(date.fromisoformat(value[:10]), datetime.min.time())
        except ValueError:
            return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _observed_at(obs: dict[str, Any]) -> datetime | None:
    return _parse_when(obs.get("effectiveDateTime") or (obs.get("effectivePeriod") or {}).get("end")
                       or (obs.get("effectivePeriod") or {}).get("start") or obs.get("issued"))


def _codings(resource: dict[str, Any], key: str = "code") -> list[tuple[str, str]]:
    return [(cd.get("system", ""), cd.get("code", "")) for cd in (resource.get(key) or {}).get("coding", [])]


def _feature_codes() -> dict[tuple[str, str], tuple[c.Feature, c.Code | None]]:
    out: dict[tuple[str, str], tuple[c.Feature, c.Code | None]] = {}
    for f in c.features():
        if f.name in DEMOGRAPHIC:
            continue
        out[(LOCAL_SYSTEM, f.name)] = (f, None)
        for code in f.codes:
            if code.unit is not None:  # only quantities have an unambiguous value mapping
                out[(code.system, code.code)] = (f, code)
    return out


FEATURE_CODES = _feature_codes()


def observation_queries() -> dict[str, list[str]]:
    """LOINC codes per feature (prefetch templates and FHIR searches use them)."""
    out: dict[str, list[str]] = {}
    for (system, code), (f, _) in FEATURE_CODES.items():
        if system == c.LOINC:
            out.setdefault(f.name, []).append(code)
    return out


def _observation_value(obs: dict[str, Any], f: c.Feature) -> tuple[Any, str | None]:
    """(value in contract terms, problem or None)."""
    if "valueQuantity" in obs:
        q = obs["valueQuantity"]
        if q.get("value") is None:
            return None, "quantity without a value"
        unit = UCUM_TO_UNIT.get(q.get("code") or q.get("unit") or "", q.get("code") or q.get("unit"))
        if f.unit and unit and unit != f.unit:
            factor = UNIT_FACTORS.get((f.unit, unit))
            if factor is None:
                return None, f"unit {unit!r} cannot be converted to {f.unit}"
            return float(q["value"]) * factor, None
        return float(q["value"]), None
    if "valueInteger" in obs:
        return obs["valueInteger"], None
    if "valueBoolean" in obs:
        return bool(obs["valueBoolean"]), None
    if "valueCodeableConcept" in obs:
        codes = [cd.get("code") for cd in obs["valueCodeableConcept"].get("coding", [])]
        hit = next((x for x in codes if x in f.categories), None)
        return (hit, None) if hit else (None, "coded value not in the contract's categories")
    if "valueString" in obs and f.kind is c.Kind.CATEGORY:
        return (obs["valueString"], None) if obs["valueString"] in f.categories else (None, "unknown category")
    return None, "no usable value"


def primary_side(code: str) -> str | None:
    """ICD-10 primary site -> sidedness: C18.0-C18.4 right, C18.5-C18.7 and C19 left, C20 rectum."""
    m = re.fullmatch(r"C(\d\d)\.?(\d)?.*", code.upper())
    if not m:
        return None
    block, sub = m.group(1), m.group(2)
    if block == "18" and sub is not None:
        return "right_colon" if int(sub) <= 4 else "left_colon" if int(sub) <= 7 else None
    return {"19": "left_colon", "20": "rectum"}.get(block)


def map_resources(resources: Iterable[dict[str, Any]], decision: datetime | None = None,
                  max_age_days: int = 120) -> Mapped:
    """Map a patient's Patient, Condition and Observation resources onto the contract."""
    decision = decision or datetime.now(timezone.utc)
    out = Mapped(record={})
    latest: dict[str, tuple[datetime, Any, str]] = {}
    for res in resources:
        if not isinstance(res, dict):
            continue
        rtype, rid = res.get("resourceType"), res.get("id", "")
        ref = f"{rtype}/{rid}"
        if rtype == "Patient":
            out.patient_id = rid
            born = _parse_when(res.get("birthDate"))
            if born:
                years = (decision - born).days / 365.25
                out.record["age_years"] = round(years, 1)
            if res.get("gender") in ("male", "female"):
                out.record["sex"] = res["gender"]
            out.basis.append(ref)
        elif rtype == "Condition":
            if (res.get("verificationStatus") or {}).get("coding", [{}])[0].get("code") in ("refuted",
                                                                                          "entered-in-error"):
                continue
            codings = _codings(res)
            if any(cd in LIVER_METASTASIS for cd in codings):
                out.liver_metastasis = True
                out.basis.append(ref)
            for system, code in codings:
                if system in ICD10_SYSTEMS and (side := primary_side(code)):
                    out.record["primary_side"] = side
                    out.basis.append(ref)
        elif rtype == "Observation":
            if res.get("status") not in VALID_STATUS:
                continue
            match = next((FEATURE_CODES[cd] for cd in _codings(res) if cd in FEATURE_CODES), None)
            if match is None:
                continue
            f, _ = match
            when = _observed_at(res)
            if when is None or when > decision:
                out.notes.append(f"{ref}: {f.name} observed after the decision date or undated, ignored")
                continue
            if (decision - when).days > max_age_days:
                out.notes.append(f"{ref}: {f.name} older than {max_age_days} days, ignored as stale")
                continue
            value, problem = _observation_value(res, f)
            if problem:
                out.notes.append(f"{ref}: {f.name}: {problem}")
                continue
            if f.name not in latest or when > latest[f.name][0]:
                latest[f.name] = (when, value, ref)
    for name, (_, value, ref) in latest.items():
        out.record[name] = value
        out.basis.append(ref)
    return out


def bundle_resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """Resources of a FHIR Bundle (collection or searchset)."""
    return [e["resource"] for e in bundle.get("entry") or [] if isinstance(e, dict) and "resource" in e]


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
            unit = loinc.unit if loinc else f.unit
            obs["valueQuantity"] = {"value": v, "unit": unit, "system": c.UCUM, "code": unit}
        entries.append(obs)
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in entries]}
