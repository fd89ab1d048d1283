"""Reading a CDS Hooks body without building the whole chart: the speed path for whole charts.

A whole EHR chart is thousands of resources, most of them claims, encounters and vital signs the model
never reads; some EHR sandboxes send it under several prefetch keys. Building every one as Python objects
(and freeing them) cost more than everything else in a call. With msgspec the body is scanned in C: the
prefetch values stay raw bytes (a value sent again under another key is read once), each Bundle's entries
are read as small heads (type, id, codes), and only the resources the mapping reads are built as dicts.
Irrelevant Observations are told apart by their codes (the mapping's own code tables).

Strict typing is for speed only: any shape the fast path does not expect (an entry that is not an object,
a number out of range) falls back to the tolerant reader (ehr/fhir_read.py) for that value, which names
each problem. Both paths give the mapping the same resources."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from ehr.chart_observations import FEATURE_CODES
from ehr.fhir_read import MALFORMED, Problem, bundle_entries
from feature_store.standard_codes import N_CATEGORY_CODES, REGION_STUDIED, TUMOR_SIZE, VARIANT

Entries = list[tuple[str | None, dict[str, Any]]]
# Resource types the mapping reads (ehr/fhir_map.py: READ); Observations only when coded for it.
READ = {"Patient", "Condition", "Observation", "BodyStructure", "MedicationAdministration", "MedicationRequest",
        "Medication", "ServiceRequest", "Procedure"}
OBSERVATION_CODES = frozenset(FEATURE_CODES) | {TUMOR_SIZE, VARIANT, REGION_STUDIED, *N_CATEGORY_CODES}
UNSET: Any = msgspec.UNSET


class Request(msgspec.Struct):
    """A CDS Hooks request: the small members as values (validated by the pydantic model), the prefetch raw."""

    hook: Any = UNSET
    hookInstance: Any = UNSET
    fhirServer: Any = UNSET
    fhirAuthorization: Any = UNSET
    context: Any = UNSET
    prefetch: dict[str, msgspec.Raw] | None = UNSET

    def members(self) -> dict[str, Any]:
        """The members sent, except the prefetch (absent ones stay absent: the model says what is required)."""
        return {f: getattr(self, f) for f in self.__struct_fields__ if f != "prefetch" and getattr(self, f) is not UNSET}


class _Coding(msgspec.Struct):
    system: Any = None
    code: Any = None


class _Concept(msgspec.Struct):
    coding: list[_Coding] | None = None


class _Component(msgspec.Struct):
    code: _Concept | None = None


class _Head(msgspec.Struct):
    """What tells a resource the mapping reads from one it skips: its type and its codes (typed: msgspec builds
    small structs and skips displays, texts and values; an unexpected shape falls back to the tolerant reader)."""

    resourceType: Any = None
    code: _Concept | None = None
    component: list[_Component] | None = None


class _Kind(msgspec.Struct):
    resourceType: Any = None


class _EntryHead(msgspec.Struct):
    fullUrl: Any = None
    resource: _Head | None = UNSET


class _EntryRaw(msgspec.Struct):
    resource: msgspec.Raw = UNSET


class _BundleHeads(msgspec.Struct):
    resourceType: Any = None  # a prefetch value's type, Bundle or not (one scan for both)
    entry: list[_EntryHead] | None = None


class _BundleRaws(msgspec.Struct):
    entry: list[_EntryRaw] | None = None


_request = msgspec.json.Decoder(Request)
_heads = msgspec.json.Decoder(_BundleHeads)
_kind = msgspec.json.Decoder(_Kind)
_raws = msgspec.json.Decoder(_BundleRaws)
_any = msgspec.json.Decoder()


def decode_request(body: bytes) -> Request:
    """The request with its prefetch raw. msgspec.DecodeError: not JSON; msgspec.ValidationError: not an object
    of this shape (the caller reads it the tolerant way, which names the bad member)."""
    return _request.decode(body)


def _wanted(head: _Head) -> bool:
    rtype = head.resourceType
    if rtype != "Observation":
        return type(rtype) is str and rtype in READ
    concepts = [head.code] + [comp.code for comp in head.component or ()]
    return any((cd.system, cd.code) in OBSERVATION_CODES for cc in concepts if cc is not None
               for cd in cc.coding or () if type(cd.system) is str and type(cd.code) is str)


def value_kind(raw: msgspec.Raw) -> Any:
    """The resourceType of a prefetch value, or None when it is not a JSON object (null, a list, text). A Bundle
    whose entries the fast path cannot read still says "Bundle" (the tolerant reader then reads it)."""
    try:
        return _kind.decode(raw).resourceType
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def resource(raw: msgspec.Raw) -> Any:
    try:
        return _any.decode(raw)
    except msgspec.ValidationError:  # a number beyond what msgspec reads: the tolerant parser decides
        return orjson.loads(bytes(raw))


def scan(raw: msgspec.Raw, problems: list[Problem]) -> tuple[Any, Entries | None]:
    """(resourceType, entries) of a raw prefetch value: the entries the mapping reads when it is a Bundle (one
    scan gives both), None otherwise; resourceType None when it is not a JSON object."""
    try:
        heads = _heads.decode(raw)
    except msgspec.ValidationError:  # not an object, or entries of a shape the fast path does not expect
        kind = value_kind(raw)
        return kind, bundle_entries(orjson.loads(bytes(raw)), problems) if kind == "Bundle" else None
    except msgspec.DecodeError:
        return None, None
    if heads.resourceType != "Bundle":
        return heads.resourceType, None
    return "Bundle", bundle(raw, problems, heads=heads)


def bundle(raw: msgspec.Raw, problems: list[Problem], depth: int = 0, heads: _BundleHeads | None = None) -> Entries:
    """The (fullUrl, resource) pairs the mapping reads from a raw Bundle (any type); nested Bundles are read."""
    try:
        heads_ = (heads or _heads.decode(raw)).entry or []
        raws = _raws.decode(raw).entry or []
    except msgspec.ValidationError:  # an unexpected shape: the tolerant reader names each problem
        return bundle_entries(orjson.loads(bytes(raw)), problems)
    return _entries(heads_, raws, problems, depth)


def _entries(heads: list[_EntryHead], raws: list[_EntryRaw], problems: list[Problem], depth: int) -> Entries:
    out: Entries = []
    for i, (eh, er) in enumerate(zip(heads, raws)):
        head = eh.resource
        if head is UNSET:  # an entry without a resource (a delete in a transaction): nothing to read
            continue
        if head is None or er.resource is UNSET:
            problems.append(Problem(MALFORMED, f"Bundle entry {i}", "not an object with a resource"))
            continue
        if head.resourceType == "Bundle" and depth < 3:
            out += bundle(er.resource, problems, depth + 1)
        elif _wanted(head):
            res = resource(er.resource)
            url = eh.fullUrl
            out.append((url if type(url) is str and url else None, res))
    return out
