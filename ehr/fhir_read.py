"""Reading FHIR R4 JSON as it comes out of EHRs: typed member access, dates at their precision,
references, Bundle entries and values in contract units. Tolerant and strict at once: every member
is type-checked before use (null, empty, wrongly typed), and what cannot be read becomes a Problem
naming the resource and what was wrong, never the value.

Plain dict code rather than fhir.resources models: a 1.5 MB chart holds thousands of resources,
most of them irrelevant, and validating them all would cost far more than the model; a strict
model would also refuse a whole resource for one bad member.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from feature_store import contract as c
from feature_store.units import factor_to_contract, ucum_for

VALID_STATUS = {"final", "amended", "corrected", "preliminary", "registered"}
BOUND_COMPARATORS = {"<", "<=", ">=", ">", "ad"}
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
PARTIAL = "partial"  # the chart gives only part of an input (a coarse form, a lower bound)


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
    # Safety fields that could not be read (deceased, a liver metastasis's clinical or verification status):
    # the chart fails closed on them. Field names and resources only, never values.
    unreadable: list[str] = field(default_factory=list)
    # Coded resources skipped because their subject is a `urn:` reference no entry of the chart resolves
    # (a prefetch cut out of a transaction Bundle), and whether a liver-metastasis Condition was among them.
    unresolved: int = 0
    unresolved_liver: bool = False
    # Which profile or rule each input came from (the API's input_sources).
    sources: dict[str, str] = field(default_factory=dict)

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


def codings_of(concept: Any) -> list[tuple[str, str]]:
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


def status_codes(concept: Any) -> set[str]:
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


def observed_at(obs: dict[str, Any]) -> tuple[datetime, datetime, str] | None:
    period = _d(obs.get("effectivePeriod")) or {}
    for value in (obs.get("effectiveDateTime"), obs.get("effectiveInstant"), period.get("end"),
                  period.get("start"), obs.get("issued")):
        span = parse_when(value)
        if span:
            return span
    return None


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    try:
        v = float(x)
    except OverflowError:  # an integer beyond float range
        return None
    return v if math.isfinite(v) else None


def read_value(holder: dict[str, Any], f: c.Feature, code: c.Code | None) -> tuple[Any, str | None, str | None]:
    """(value in contract terms, problem kind, problem message). Never puts the value in the message."""
    # the value[x] members in the order they are looked for: the first one present decides
    for member, read in _VALUE_READERS:
        if member in holder:
            return read(holder[member], f, code)
    if "dataAbsentReason" in holder:
        return None, MALFORMED, "no value (dataAbsentReason)"
    return None, MALFORMED, "no usable value"


def _read_quantity(raw: Any, f: c.Feature, code: c.Code | None) -> tuple[Any, str | None, str | None]:
    """A valueQuantity in the contract's unit: bounds refused, the unit converted through UCUM, none
    needed for a local code or a dimensionless input."""
    q = _d(raw)
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


def _read_integer(v: Any, f: c.Feature, code: c.Code | None) -> tuple[Any, str | None, str | None]:
    if isinstance(v, bool) or not isinstance(v, int):
        return None, MALFORMED, "valueInteger is not a whole number"
    if f.kind not in (c.Kind.NUMBER, c.Kind.INTEGER):
        return None, MALFORMED, "a number for a feature that is not a number"
    return v, None, None


def _read_boolean(v: Any, f: c.Feature, code: c.Code | None) -> tuple[Any, str | None, str | None]:
    if not isinstance(v, bool):
        return None, MALFORMED, "valueBoolean is not true or false"
    if f.kind is not c.Kind.BOOLEAN:
        return None, MALFORMED, "a boolean for a feature that is not yes/no"
    return v, None, None


def _read_concept(raw: Any, f: c.Feature, code: c.Code | None) -> tuple[Any, str | None, str | None]:
    """A coded answer: the code's own answer list first, else a category named by its code."""
    if _d(raw) is None:
        return None, MALFORMED, "valueCodeableConcept is not an object"
    codings = codings_of(raw)
    answers = dict(code.answers) if code else {}
    for pair in codings:
        if pair in answers:
            return answers[pair], None, None
    if f.kind is c.Kind.CATEGORY:
        hit = next((cd for _, cd in codings if cd in f.categories), None)
        if hit:
            return hit, None, None
    return None, CODE, "coded value not in the contract's categories"


def _read_string(v: Any, f: c.Feature, code: c.Code | None) -> tuple[Any, str | None, str | None]:
    if f.kind is c.Kind.CATEGORY and isinstance(v, str) and v in f.categories:
        return v, None, None
    return None, CODE, "text value not in the contract's categories"


_VALUE_READERS = (("valueQuantity", _read_quantity), ("valueInteger", _read_integer),
                  ("valueBoolean", _read_boolean), ("valueCodeableConcept", _read_concept),
                  ("valueString", _read_string))


def ref_key(ref_obj: Any, full_urls: dict[str, dict[str, Any]]) -> str | None:
    """A Reference as 'Type/id' (relative, absolute, versioned or a Bundle's urn:uuid fullUrl)."""
    ref = _s((_d(ref_obj) or {}).get("reference"))
    if ref is None:
        return None
    if ref in full_urls:  # resolved lazily: most fullUrls of a chart are never referenced by what we read
        return entry_key(ref, full_urls[ref])
    if ref.startswith("urn:"):
        return ref
    parts = ref.split("/")
    if "_history" in parts:
        parts = parts[:parts.index("_history")]
    return f"{parts[-2]}/{parts[-1]}" if len(parts) >= 2 else ref


def entry_key(full_url: str | None, res: dict[str, Any]) -> str | None:
    rid = _s(res.get("id"))
    rtype = _s(res.get("resourceType"))
    if rid and rtype:
        return f"{rtype}/{rid}"
    return full_url


def label_of(res: dict[str, Any], index: int) -> str:
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
