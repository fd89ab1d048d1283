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

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from feature_store import contract as c
from feature_store.codes import LIVER_METASTASIS_CODES, PRIMARY_SITE_SNOMED
from feature_store.units import CONTRACT_UCUM, factor_to_contract, ucum_for

LOCAL_SYSTEM = "urn:pverisk:feature"
LIVER_METASTASIS = {(code.system, code.code) for code in LIVER_METASTASIS_CODES}
ICD10_SYSTEMS = {c.ICD10, c.ICD10CM}
VALID_STATUS = {"final", "amended", "corrected", "preliminary", "registered"}
INACTIVE_CLINICAL = {"inactive", "resolved", "remission"}
EXCLUDED_VERIFICATION = {"refuted", "entered-in-error"}
BOUND_COMPARATORS = {"<", "<=", ">=", ">", "ad"}
# Features the mapper derives from Patient/Condition rather than Observations.
DEMOGRAPHIC = {"age_years", "sex", "primary_side"}
# Dimensionless contract units: a Quantity without a unit is read as-is for these.
UNITLESS = {"ratio", "count", "cycles"}

# Problem kinds (the card counts them; the API response lists each one).
STALE = "stale"
UNIT = "unit"
BOUND = "bound"
OTHER_PATIENT = "other_patient"
MALFORMED = "malformed"
FUTURE = "future"
UNDATED = "undated"
CODE = "unknown_code"
IMPRECISE = "imprecise_date"
CONFLICT = "conflict"
REFUSED = "refused"


@dataclass(frozen=True)
class Problem:
    kind: str
    ref: str  # which resource ("Observation/abc", "Bundle entry 12")
    message: str  # what was wrong, never the value
    feature: str | None = None

    def text(self) -> str:
        return f"{self.ref}: {self.feature + ': ' if self.feature else ''}{self.message}"


@dataclass
class Mapped:
    record: dict[str, Any]
    basis: list[str] = field(default_factory=list)  # references to the resources used
    problems: list[Problem] = field(default_factory=list)
    liver_metastasis: bool = False
    patient_id: str | None = None
    deceased: bool = False
    # Why the chart cannot be scored for this patient (another patient's Patient, two Patients).
    identity_conflict: str | None = None

    @property
    def notes(self) -> list[str]:
        return [p.text() for p in self.problems]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.problems:
            out[p.kind] = out.get(p.kind, 0) + 1
        return out

    def reasons(self, name: str) -> list[str]:
        """Problem kinds that touched a feature (why it is missing, when it is)."""
        return sorted({p.kind for p in self.problems if p.feature == name})


# --- small typed readers: every member is checked before use -------------------------------
def _d(x: Any) -> dict[str, Any] | None:
    return x if isinstance(x, dict) else None


def _s(x: Any) -> str | None:
    return x if isinstance(x, str) and x else None


def _codings(concept: Any) -> list[tuple[str, str]]:
    """(system, code) pairs of a CodeableConcept, skipping anything that is not one."""
    cc = _d(concept)
    if cc is None:
        return []
    coding = cc.get("coding")
    if not isinstance(coding, list):
        return []
    out = []
    for cd in coding:
        if isinstance(cd, dict):
            system, code = cd.get("system"), cd.get("code")
            if isinstance(system, str) and isinstance(code, str):
                out.append((system, code))
    return out


def _status_codes(concept: Any) -> set[str]:
    """Codes of a status CodeableConcept; the system is often left out there, and these codes are unique."""
    coding = (_d(concept) or {}).get("coding")
    if not isinstance(coding, list):
        return set()
    return {cd["code"] for cd in coding if isinstance(cd, dict) and isinstance(cd.get("code"), str)}


_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def parse_when(value: Any) -> tuple[datetime, datetime, str] | None:
    """A FHIR date/dateTime/instant at its precision: (earliest, latest, precision) in UTC;
    None when it is not one. "1959" covers the whole year, "1959-12" the month."""
    if not isinstance(value, str) or not value:
        return None
    m = _DATE.fullmatch(value)
    try:
        if m:
            y, mo, d = int(m.group(1)), m.group(2), m.group(3)
            if mo is None:
                lo = datetime(y, 1, 1, tzinfo=timezone.utc)
                return lo, datetime(y + 1, 1, 1, tzinfo=timezone.utc) - timedelta(microseconds=1), "year"
            if d is None:
                lo = datetime(y, int(mo), 1, tzinfo=timezone.utc)
                nxt = datetime(y + (int(mo) == 12), int(mo) % 12 + 1, 1, tzinfo=timezone.utc)
                return lo, nxt - timedelta(microseconds=1), "month"
            lo = datetime(y, int(mo), int(d), tzinfo=timezone.utc)
            return lo, lo + timedelta(days=1) - timedelta(microseconds=1), "day"
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    dt = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    return dt, dt, "time"


def _point(span: tuple[datetime, datetime, str], decision: datetime) -> datetime:
    """One instant for a partial date: the middle of the part of its span before the decision."""
    lo, hi, _ = span
    hi = min(hi, decision) if lo <= decision else hi
    return lo + (hi - lo) / 2


def _observed_at(obs: dict[str, Any]) -> tuple[datetime, datetime, str] | None:
    period = _d(obs.get("effectivePeriod")) or {}
    for value in (obs.get("effectiveDateTime"), obs.get("effectiveInstant"), period.get("end"),
                  period.get("start"), obs.get("issued")):
        span = parse_when(value)
        if span:
            return span
    return None


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


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    try:
        v = float(x)
    except OverflowError:  # an integer beyond float range
        return None
    return v if math.isfinite(v) else None


def _read_value(holder: dict[str, Any], f: c.Feature, code: c.Code | None) -> tuple[Any, str | None, str | None]:
    """(value in contract terms, problem kind, problem message). Never puts the value in the message."""
    if "valueQuantity" in holder:
        q = _d(holder["valueQuantity"])
        if q is None:
            return None, MALFORMED, "valueQuantity is not an object"
        comparator = q.get("comparator")
        if comparator is not None:
            if isinstance(comparator, str) and comparator in BOUND_COMPARATORS:
                return None, BOUND, f"reported as a bound ({comparator}), not a value; not used"
            return None, MALFORMED, "valueQuantity.comparator is not one of <, <=, >=, >, ad"
        value = _number(q.get("value"))
        if value is None:
            what = "missing" if q.get("value") is None else "not a number"
            return None, MALFORMED, f"valueQuantity.value is {what}"
        if f.kind not in (c.Kind.NUMBER, c.Kind.INTEGER):
            return None, MALFORMED, "a quantity for a feature that is not a number"
        ucode, udisplay, usystem = _s(q.get("code")), _s(q.get("unit")), _s(q.get("system"))
        ucum = ucum_for(ucode, udisplay, usystem == c.UCUM)
        if ucum is None:
            if code is None or f.unit in UNITLESS:  # local code: the contract unit by definition
                return value, None, None
            return None, UNIT, f"quantity without a unit; expected {f.unit}"
        if f.unit is None:
            return value, None, None
        factor = factor_to_contract(ucum, f.unit, code.molar_mass if code else None)
        if factor is None:
            return None, UNIT, f"unit not understood or not convertible to {f.unit}"
        return value * factor, None, None
    if "valueInteger" in holder:
        v = holder["valueInteger"]
        if isinstance(v, bool) or not isinstance(v, int):
            return None, MALFORMED, "valueInteger is not a whole number"
        if f.kind not in (c.Kind.NUMBER, c.Kind.INTEGER):
            return None, MALFORMED, "a number for a feature that is not a number"
        return v, None, None
    if "valueBoolean" in holder:
        v = holder["valueBoolean"]
        if not isinstance(v, bool):
            return None, MALFORMED, "valueBoolean is not true or false"
        if f.kind is not c.Kind.BOOLEAN:
            return None, MALFORMED, "a boolean for a feature that is not yes/no"
        return v, None, None
    if "valueCodeableConcept" in holder:
        if _d(holder["valueCodeableConcept"]) is None:
            return None, MALFORMED, "valueCodeableConcept is not an object"
        codings = _codings(holder["valueCodeableConcept"])
        answers = dict(code.answers) if code else {}
        for pair in codings:
            if pair in answers:
                return answers[pair], None, None
        if f.kind is c.Kind.CATEGORY:
            hit = next((cd for _, cd in codings if cd in f.categories), None)
            if hit:
                return hit, None, None
        return None, CODE, "coded value not in the contract's categories"
    if "valueString" in holder:
        v = holder["valueString"]
        if f.kind is c.Kind.CATEGORY and isinstance(v, str) and v in f.categories:
            return v, None, None
        return None, CODE, "text value not in the contract's categories"
    if "dataAbsentReason" in holder:
        return None, MALFORMED, "no value (dataAbsentReason)"
    return None, MALFORMED, "no usable value"


def _ref_key(ref_obj: Any, full_urls: dict[str, dict[str, Any]]) -> str | None:
    """A Reference as 'Type/id' (relative, absolute, versioned or a Bundle's urn:uuid fullUrl)."""
    ref = _s((_d(ref_obj) or {}).get("reference"))
    if ref is None:
        return None
    if ref in full_urls:  # resolved lazily: most fullUrls of a chart are never referenced by what we read
        return _entry_key(ref, full_urls[ref])
    if ref.startswith("urn:"):
        return ref
    parts = ref.split("/")
    if "_history" in parts:
        parts = parts[:parts.index("_history")]
    return f"{parts[-2]}/{parts[-1]}" if len(parts) >= 2 else ref


def _entry_key(full_url: str | None, res: dict[str, Any]) -> str | None:
    rid = _s(res.get("id"))
    rtype = _s(res.get("resourceType"))
    if rid and rtype:
        return f"{rtype}/{rid}"
    return full_url


def _label(res: dict[str, Any], index: int) -> str:
    """How a resource is named in notes: Type/id (ids are capped; they are not patient values)."""
    rtype = _s(res.get("resourceType")) or "resource"
    rid = _s(res.get("id"))
    return f"{rtype}/{rid[:64]}" if rid else f"{rtype} (entry {index})"


def bundle_entries(bundle: Any, problems: list[Problem] | None = None, depth: int = 0
                   ) -> list[tuple[str | None, dict[str, Any]]]:
    """(fullUrl, resource) of a Bundle of any type (transaction, batch, collection, searchset):
    entries without a resource (deletes) and search outcomes are skipped; nested Bundles are read."""
    out: list[tuple[str | None, dict[str, Any]]] = []
    b = _d(bundle)
    entries = b.get("entry") if b else None
    if not isinstance(entries, list):
        if b is not None and entries is not None and problems is not None:
            problems.append(Problem(MALFORMED, "Bundle", "entry is not a list"))
        return out
    for i, e in enumerate(entries):
        if type(e) is dict:  # fast path: a well-formed entry (nearly all of a chart)
            res = e.get("resource")
            if type(res) is dict and res.get("resourceType") != "Bundle":
                url = e.get("fullUrl")
                out.append((url if type(url) is str and url else None, res))
                continue
        res = _d(e.get("resource")) if isinstance(e, dict) else None
        if res is None:
            if problems is not None and not (isinstance(e, dict) and "resource" not in e):
                problems.append(Problem(MALFORMED, f"Bundle entry {i}", "not an object with a resource"))
            continue
        if res.get("resourceType") == "Bundle" and depth < 3:
            out += bundle_entries(res, problems, depth + 1)
            continue
        out.append((_s(e.get("fullUrl")), res))
    return out


def bundle_resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """Resources of a FHIR Bundle (any type)."""
    return [r for _, r in bundle_entries(bundle)]


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
    full_urls: dict[str, dict[str, Any]] = {}
    patients: dict[str, tuple[int, dict[str, Any]]] = {}
    items: list[tuple[int, dict[str, Any]]] = []
    seen: set[tuple[str, str]] = set()
    for i, (full_url, res) in enumerate(entries):
        if not isinstance(res, dict):
            out.problems.append(Problem(MALFORMED, f"entry {i}", "not a FHIR resource object"))
            continue
        rtype = res.get("resourceType")
        if full_url is not None and type(full_url) is str:
            full_urls[full_url] = res
        if rtype != "Observation" and rtype != "Condition" and rtype != "Patient":
            continue
        rid = res.get("id")
        if type(rid) is str and rtype != "Patient":
            if (rtype, rid) in seen:  # the same resource in two prefetch keys counts once
                continue
            seen.add((rtype, rid))
        if rtype == "Patient":
            key = _entry_key(full_url, res)
            if key is None:
                out.problems.append(Problem(MALFORMED, _label(res, i), "Patient without an id"))
                continue
            patients.setdefault(_ref_key({"reference": key}, {}) or key, (i, res))
        else:
            items.append((i, res))

    target = f"Patient/{patient_id}" if patient_id else None
    if target:
        others = [k for k in patients if k != target]
        if others:
            out.identity_conflict = "the Patient in the data is not the patient in context.patientId"
    elif len(patients) > 1:
        out.identity_conflict = f"{len(patients)} different Patient resources in one request; send one patient"
    elif patients:
        target = next(iter(patients))
    if out.identity_conflict:
        return out
    if target is None:  # no Patient resource: the chart is whoever all the resources are about
        subjects = {_ref_key(r.get("subject") or r.get("patient"), full_urls) for _, r in items} - {None}
        if len(subjects) > 1:
            out.identity_conflict = "no Patient resource and resources about several patients"
            return out
        target = next(iter(subjects), None)
    out.patient_id = target.split("/", 1)[1] if target and target.startswith("Patient/") else target

    if target in patients:
        _read_patient(patients[target][1], patients[target][0], decision, out)

    latest: dict[str, list[_Candidate]] = {}
    sides: dict[str, str] = {}
    for i, res in items:
        if res["resourceType"] == "Condition":
            codings = _codings(res.get("code"))
            liver = any(cd in LIVER_METASTASIS for cd in codings)
            side = _side_of(codings)
            if not (liver or side):
                continue
            label = _label(res, i)
            if _ref_key(res.get("subject") or res.get("patient"), full_urls) != target:
                out.problems.append(Problem(OTHER_PATIENT, label, "about another patient (or no subject); ignored"))
                continue
            if _status_codes(res.get("verificationStatus")) & EXCLUDED_VERIFICATION:
                continue
            onset = parse_when(res.get("onsetDateTime")) or parse_when(res.get("recordedDate"))
            if onset and onset[0] > decision:
                out.problems.append(Problem(FUTURE, label, "recorded after the decision date; ignored"))
                continue
            if side:  # the primary site stays the primary site once resected (resolved)
                sides[label] = side
                out.basis.append(label)
            if liver:
                clinical = _status_codes(res.get("clinicalStatus"))
                abated = not clinical and any(k.startswith("abatement") and v is not None for k, v in res.items())
                if not (clinical & INACTIVE_CLINICAL) and not abated:
                    out.liver_metastasis = True
                    out.basis.append(label)
            continue
        _read_observation(res, i, full_urls, target, decision, max_age_days, latest, out)

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
    return out


def _read_patient(res: dict[str, Any], index: int, decision: datetime, out: Mapped) -> None:
    label = _label(res, index)
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
    label = _label(res, index)
    if _ref_key(res.get("subject") or res.get("patient"), full_urls) != target:
        out.problems.append(Problem(OTHER_PATIENT, label, "about another patient (or no subject); ignored"))
        return
    status = res.get("status")
    if not isinstance(status, str) or status not in VALID_STATUS:  # a dict here is unhashable: type first
        if not isinstance(status, str):
            out.problems.append(Problem(MALFORMED, label, "status missing or not a code; ignored"))
        return
    span = _observed_at(res)
    for holder, f, code in holders:
        where = label if holder is res else f"{label} (component)"
        if span is None:
            out.problems.append(Problem(UNDATED, where, "no date; ignored", f.name))
            continue
        if span[0] > decision:
            out.problems.append(Problem(FUTURE, where, "observed after the decision date; ignored", f.name))
            continue
        when = _point(span, decision)
        if not (code and code.never_stale) and (decision - span[1]).days > max_age_days:
            out.problems.append(Problem(STALE, where, f"older than {max_age_days} days; ignored as stale", f.name))
            continue
        value, kind, message = _read_value(holder, f, code)
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
