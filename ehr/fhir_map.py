"""FHIR R4 resources -> a contract record: the source adapter for EHR data.

Driven by the feature contract's codes: an Observation (or a component of a panel) counts
for a feature only when its `system` AND `code` match one of the feature's codes (never the
text: LOINC 2039-6 collides with a race code of the same digits). Quantities are converted
from UCUM (or the display strings EHRs send) onto the contract unit; the latest readable
value at or before the decision date wins; values older than a configured age are stale.

Whole patient charts are read as they come out of EHRs, so the reader is tolerant and
strict at once: every member is type-checked before use (null, empty, wrongly typed),
a resource that cannot be read is skipped with a Problem naming the resource and what was
wrong, never the value. Identity is checked for every resource used: it must be about the
patient (Patient.id, `subject`/`patient` references, `urn:uuid` fullUrls of a Bundle).

The reader is plain dict code rather than fhir.resources models: a 1.5 MB chart holds
thousands of resources, most of them irrelevant, and validating them all would cost far
more than the model; a strict model would also refuse a whole resource for one bad member.

Features without a standard code are read from Observations coded in the project's
local code system (LOCAL_SYSTEM, code = contract feature name), as sites do with local codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from feature_store import contract as c
from feature_store.codes import LIVER_METASTASIS_CODES, PRIMARY_SITE_SNOMED
from ehr.fhir_read import (
    BOUND,
    CONFLICT,
    FUTURE,
    IMPRECISE,
    MALFORMED,
    OTHER_PATIENT,
    STALE,
    UNDATED,
    VALID_STATUS,
    Mapped,
    Problem,
    codings_of,
    entry_key,
    label_of,
    observed_at,
    parse_when,
    point_in_span,
    read_value,
    ref_key,
    status_codes,
)

LOCAL_SYSTEM = "urn:pverisk:feature"
LIVER_METASTASIS = {(code.system, code.code) for code in LIVER_METASTASIS_CODES}
ICD10_SYSTEMS = {c.ICD10, c.ICD10CM}
INACTIVE_CLINICAL = {"inactive", "resolved", "remission"}
EXCLUDED_VERIFICATION = {"refuted", "entered-in-error"}
# Features the mapper derives from Patient/Condition rather than Observations.
DEMOGRAPHIC = {"age_years", "sex", "primary_side"}


def _feature_codes() -> dict[tuple[str, str], tuple[c.Feature, c.Code | None]]:
    out: dict[tuple[str, str], tuple[c.Feature, c.Code | None]] = {}
    for f in c.features():
        if f.name in DEMOGRAPHIC:
            continue
        out[(LOCAL_SYSTEM, f.name)] = (f, None)
        for code in f.codes:
            # quantities (a unit) and qualitative tests with coded answers have an unambiguous value
            if code.unit is not None or code.answers:
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


def primary_side(code: str) -> str | None:
    """ICD-10 primary site -> sidedness: C18.0-C18.4 right, C18.5-C18.7 and C19 left, C20 rectum."""
    m = re.fullmatch(r"C(\d\d)\.?(\d)?.*", code.upper())
    if not m:
        return None
    block, sub = m.group(1), m.group(2)
    if block == "18" and sub is not None:
        return "right_colon" if int(sub) <= 4 else "left_colon" if int(sub) <= 7 else None
    return {"19": "left_colon", "20": "rectum"}.get(block)


def _side_of(codings: list[tuple[str, str]]) -> str | None:
    for system, code in codings:
        if system in ICD10_SYSTEMS and (side := primary_side(code)):
            return side
        if system == c.SNOMED and code in PRIMARY_SITE_SNOMED:
            return PRIMARY_SITE_SNOMED[code]
    return None


@dataclass
class _Candidate:
    when: datetime
    value: Any
    ref: str
    kind: str | None  # None: a value; BOUND: a bound that hides older values


def map_resources(resources: Iterable[Any], decision: datetime | None = None, max_age_days: int = 120,
                  patient_id: str | None = None) -> Mapped:
    """Map a patient's Patient, Condition and Observation resources onto the contract."""
    return map_chart([(None, r) for r in resources], decision, max_age_days, patient_id)


def map_chart(entries: list[tuple[str | None, Any]], decision: datetime | None = None, max_age_days: int = 120,
              patient_id: str | None = None, problems: list[Problem] | None = None) -> Mapped:
    """Map (fullUrl, resource) pairs of one patient's chart onto the contract.

    `patient_id` (CDS Hooks context.patientId) is who the chart must be about; without it the
    chart's single Patient is. Resources about anyone else are skipped and counted; a Patient
    that is someone else, or two different Patients, set `identity_conflict` (no risk then).
    """
    decision = decision or datetime.now(timezone.utc)
    out = Mapped(record={}, problems=list(problems or []))
    chart = _index(entries, out)
    target = _whose(chart, patient_id, out)
    if out.identity_conflict:
        return out
    out.patient_id = target.split("/", 1)[1] if target and target.startswith("Patient/") else target
    if target in chart.patients:
        _read_patient(chart.patients[target][1], chart.patients[target][0], decision, out)
    latest: dict[str, list[_Candidate]] = {}
    sides: dict[str, str] = {}
    for i, res in chart.items:
        if res["resourceType"] == "Condition":
            _read_condition(res, i, chart.full_urls, target, decision, sides, out)
        else:
            _read_observation(res, i, chart.full_urls, target, decision, max_age_days, latest, out)
    _settle(latest, sides, out)
    return out


@dataclass
class _Chart:
    full_urls: dict[str, dict[str, Any]]
    patients: dict[str, tuple[int, dict[str, Any]]]  # Patient key -> (entry index, resource)
    items: list[tuple[int, dict[str, Any]]]  # Conditions and Observations, each once


def _index(entries: list[tuple[str | None, Any]], out: Mapped) -> _Chart:
    """The chart's Patients, Conditions and Observations (other resource types skipped) and its fullUrls."""
    chart = _Chart({}, {}, [])
    seen: set[tuple[str, str]] = set()
    for i, (full_url, res) in enumerate(entries):
        if not isinstance(res, dict):
            out.problems.append(Problem(MALFORMED, f"entry {i}", "not a FHIR resource object"))
            continue
        rtype = res.get("resourceType")
        if full_url is not None and type(full_url) is str:
            chart.full_urls[full_url] = res
        if rtype != "Observation" and rtype != "Condition" and rtype != "Patient":
            continue
        rid = res.get("id")
        if type(rid) is str and rtype != "Patient":
            if (rtype, rid) in seen:  # the same resource in two prefetch keys counts once
                continue
            seen.add((rtype, rid))
        if rtype == "Patient":
            key = entry_key(full_url, res)
            if key is None:
                out.problems.append(Problem(MALFORMED, label_of(res, i), "Patient without an id"))
                continue
            chart.patients.setdefault(ref_key({"reference": key}, {}) or key, (i, res))
        else:
            chart.items.append((i, res))
    return chart


def _whose(chart: _Chart, patient_id: str | None, out: Mapped) -> str | None:
    """The 'Patient/<id>' the chart is about, or an identity conflict set on `out`."""
    target = f"Patient/{patient_id}" if patient_id else None
    if target:
        if any(k != target for k in chart.patients):
            out.identity_conflict = "the Patient in the data is not the patient in context.patientId"
    elif len(chart.patients) > 1:
        out.identity_conflict = f"{len(chart.patients)} different Patient resources in one request; send one patient"
    elif chart.patients:
        target = next(iter(chart.patients))
    if out.identity_conflict or target is not None:
        return target
    # no Patient resource: the chart is whoever all the resources are about
    subjects = {ref_key(r.get("subject") or r.get("patient"), chart.full_urls) for _, r in chart.items} - {None}
    if len(subjects) > 1:
        out.identity_conflict = "no Patient resource and resources about several patients"
        return None
    return next(iter(subjects), None)


def _read_condition(res: dict[str, Any], index: int, full_urls: dict[str, dict[str, Any]], target: str | None,
                    decision: datetime, sides: dict[str, str], out: Mapped) -> None:
    """A liver-metastasis Condition (applicability) or a primary-site one (sidedness)."""
    codings = codings_of(res.get("code"))
    liver = any(cd in LIVER_METASTASIS for cd in codings)
    side = _side_of(codings)
    if not (liver or side):
        return
    label = label_of(res, index)
    if ref_key(res.get("subject") or res.get("patient"), full_urls) != target:
        out.problems.append(Problem(OTHER_PATIENT, label, "about another patient (or no subject); ignored"))
        return
    if status_codes(res.get("verificationStatus")) & EXCLUDED_VERIFICATION:
        return
    onset = parse_when(res.get("onsetDateTime")) or parse_when(res.get("recordedDate"))
    if onset and onset[0] > decision:
        out.problems.append(Problem(FUTURE, label, "recorded after the decision date; ignored"))
        return
    if side:  # the primary site stays the primary site once resected (resolved)
        sides[label] = side
        out.basis.append(label)
    if liver:
        clinical = status_codes(res.get("clinicalStatus"))
        abated = not clinical and any(k.startswith("abatement") and v is not None for k, v in res.items())
        if not (clinical & INACTIVE_CLINICAL) and not abated:
            out.liver_metastasis = True
            out.basis.append(label)


def _settle(latest: dict[str, list[_Candidate]], sides: dict[str, str], out: Mapped) -> None:
    """The record: the newest value of each input, one primary side when the chart agrees on it."""
    if len(set(sides.values())) == 1:
        out.record["primary_side"] = next(iter(sides.values()))
    elif len(set(sides.values())) > 1:
        out.problems.append(Problem(CONFLICT, "Condition", "primary site coded with different sides; left missing",
                                    "primary_side"))
    for name, cands in latest.items():
        cands.sort(key=lambda x: x.when)
        newest = cands[-1]
        if newest.kind == BOUND:
            continue  # the newest result is only a bound: no value, the bound's note says why
        out.record[name] = newest.value
        out.basis.append(newest.ref)
    out.basis = list(dict.fromkeys(out.basis))


def _read_patient(res: dict[str, Any], index: int, decision: datetime, out: Mapped) -> None:
    label = label_of(res, index)
    out.basis.append(label)
    gender = res.get("gender")
    if gender in ("male", "female"):
        out.record["sex"] = gender
    died_at: datetime | None = None
    if "deceasedBoolean" in res:
        if res["deceasedBoolean"] is True:
            out.deceased = True
        elif res["deceasedBoolean"] is not False and res["deceasedBoolean"] is not None:
            out.problems.append(Problem(MALFORMED, label, "deceasedBoolean is not true or false"))
    if res.get("deceasedDateTime") is not None:
        span = parse_when(res["deceasedDateTime"])
        if span is None:  # a death is recorded, its date unreadable: treat as deceased
            out.deceased = True
            out.problems.append(Problem(MALFORMED, label, "deceasedDateTime is not a FHIR dateTime"))
        elif span[0] <= decision:
            out.deceased = True
            died_at = span[0]
    if res.get("birthDate") is None:
        return
    born = parse_when(res["birthDate"])
    if born is None:
        out.problems.append(Problem(MALFORMED, label, "birthDate is not a FHIR date", "age_years"))
        return
    at = min(decision, died_at) if died_at else decision
    if born[0] > at:
        out.problems.append(Problem(MALFORMED, label, "birthDate after the decision date", "age_years"))
        return
    if born[2] in ("year", "month"):
        out.problems.append(Problem(IMPRECISE, label, f"birthDate known to the {born[2]} only: age estimated from "
                                    f"the middle of the {born[2]}", "age_years"))
    mid = born[0] + (born[1] - born[0]) / 2
    out.record["age_years"] = round(max(0.0, (at - mid).days / 365.25), 1)


def _match(concept: Any) -> tuple[c.Feature, c.Code | None] | None:
    """The contract feature a CodeableConcept codes for (first matching coding), else None. Runs
    for every Observation of a chart, so it avoids building intermediate lists."""
    if type(concept) is not dict:
        return None
    coding = concept.get("coding")
    if type(coding) is not list:
        return None
    for cd in coding:
        if type(cd) is dict:
            system, code = cd.get("system"), cd.get("code")
            if type(system) is str and type(code) is str:  # a dict here would be unhashable
                hit = FEATURE_CODES.get((system, code))
                if hit:
                    return hit
    return None


def _read_observation(res: dict[str, Any], index: int, full_urls: dict[str, dict[str, Any]], target: str | None,
                      decision: datetime, max_age_days: int, latest: dict[str, list[_Candidate]],
                      out: Mapped) -> None:
    holders: list[tuple[dict[str, Any], c.Feature, c.Code | None]] = []
    match = _match(res.get("code"))
    if match:
        holders.append((res, match[0], match[1]))
    components = res.get("component")
    if isinstance(components, list):  # panels: each component is read like an Observation of its own
        for comp in components:
            if isinstance(comp, dict):
                match = _match(comp.get("code"))
                if match:
                    holders.append((comp, match[0], match[1]))
    if not holders:  # most of a chart: checked by code first, the cheapest test
        return
    label = label_of(res, index)
    if ref_key(res.get("subject") or res.get("patient"), full_urls) != target:
        out.problems.append(Problem(OTHER_PATIENT, label, "about another patient (or no subject); ignored"))
        return
    status = res.get("status")
    if not isinstance(status, str) or status not in VALID_STATUS:  # a dict here is unhashable: type first
        if not isinstance(status, str):
            out.problems.append(Problem(MALFORMED, label, "status missing or not a code; ignored"))
        return
    span = observed_at(res)
    for holder, f, code in holders:
        where = label if holder is res else f"{label} (component)"
        if span is None:
            out.problems.append(Problem(UNDATED, where, "no date; ignored", f.name))
            continue
        if span[0] > decision:
            out.problems.append(Problem(FUTURE, where, "observed after the decision date; ignored", f.name))
            continue
        when = point_in_span(span, decision)
        if not (code and code.never_stale) and (decision - span[1]).days > max_age_days:
            out.problems.append(Problem(STALE, where, f"older than {max_age_days} days; ignored as stale", f.name))
            continue
        value, kind, message = read_value(holder, f, code)
        if kind == BOUND:
            out.problems.append(Problem(BOUND, where, message or "", f.name))
            latest.setdefault(f.name, []).append(_Candidate(when, None, label, BOUND))
            continue
        if kind:
            out.problems.append(Problem(kind, where, message or "", f.name))
            continue
        if span[2] in ("year", "month"):
            out.problems.append(Problem(IMPRECISE, where, f"dated to the {span[2]} only", f.name))
        latest.setdefault(f.name, []).append(_Candidate(when, value, label, None))


