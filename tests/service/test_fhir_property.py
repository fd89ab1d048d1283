"""Property: no FHIR shape gives a 5xx, on either endpoint, over real HTTP.

Hypothesis takes a small valid chart (US Core and mCODE resources) and breaks it at the members the mapper
reads (every level: Bundle, entry, resource, CodeableConcept, Coding, Quantity, Reference, component):
null, empty, wrongly typed, strings in numeric values, impossible dates, unknown codes. Each
variant goes to POST /v1/predict/fhir and to the CDS Hooks service; the answer must be a 4xx
or a 200, with a JSON body. Bounded and deterministic (derandomize) to keep CI time modest.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.charts import prefetch_filtered, whole_chart
from tests.fixtures.mcode import mcode_chart

pytestmark = pytest.mark.slow

EXAMPLES = 200
BASE = whole_chart(21, years=0.5, visits_per_year=6, other_patient=True)
PREFETCH = prefetch_filtered(BASE, since_days=200)
# and the mCODE resources the mapping reads (tumours and their sizes, staging, genomics, medications, orders),
# about the same patient
MCODE = [r for r in (e["resource"] for e in mcode_chart(BASE.patient_id).bundle["entry"])
         if r["resourceType"] != "Patient"]
RESOURCES: list[dict[str, Any]] = [PREFETCH["patient"]] + [
    e["resource"] for k in ("conditions", "observations") for e in PREFETCH[k]["entry"]] + MCODE


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every member path of a resource (dict keys and list indices), the mapper's and the rest."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            out += _paths(v, prefix + (i,))
    return out


# Members the mapper reads that a valid resource may lack: the variants add them, broken.
EXTRA = {
    "Patient": [("deceasedBoolean",), ("deceasedDateTime",), ("birthDate",), ("gender",), ("id",)],
    "Condition": [("clinicalStatus",), ("clinicalStatus", "coding"), ("verificationStatus",),
                  ("verificationStatus", "coding"), ("abatementDateTime",), ("onsetDateTime",), ("patient",)],
    "Observation": [("valueQuantity",), ("valueQuantity", "comparator"), ("valueCodeableConcept",),
                    ("valueCodeableConcept", "coding"), ("valueInteger",), ("valueBoolean",), ("valueString",),
                    ("component",), ("effectivePeriod",), ("effectivePeriod", "end"), ("issued",),
                    ("dataAbsentReason",), ("status",), ("focus",), ("focus", 0, "reference")],
    "BodyStructure": [("active",), ("location",), ("locationQualifier",), ("patient",)],
    "MedicationAdministration": [("status",), ("medicationReference",), ("effectiveDateTime",),
                                 ("effectivePeriod",)],
    "MedicationRequest": [("status",), ("dosageInstruction",), ("dispenseRequest",), ("authoredOn",),
                          ("medicationReference",)],
    "ServiceRequest": [("status",), ("category",), ("bodySite",), ("occurrencePeriod",), ("authoredOn",)],
}
PATHS = [(i, p) for i, r in enumerate(RESOURCES) for p in _paths(r) + EXTRA.get(r["resourceType"], [])]

junk = st.one_of(
    st.sampled_from([None, {}, [], "", 0, -1, 1e308, -1e-308, True, False, "7.77 H", "abc", [None], [{}], [[]],
                     {"coding": None}, {"coding": [None]}, {"coding": [{"system": None, "code": 7}]},
                     {"reference": 5}, {"reference": "urn:uuid:nowhere"}, {"reference": "Patient/"},
                     "2026-13-45", "1959", "1959-12", "0000-00-00", "9999-12-31T23:59:59Z", "2020-02-30",
                     10 ** 30, -10 ** 30, "<", "ad", "entered-in-error", "refuted", "resolved",
                     {"value": "1.2"}, {"value": None, "comparator": "<"}, {"value": 1, "code": "{}"},
                     {"value": 1, "unit": "K/uL"}, {"value": 1, "code": "10*", "system": "http://unitsofmeasure.org"},
                     {"value": 1, "code": "[ft_i]", "system": "http://unitsofmeasure.org"},
                     [{"code": {"coding": [{"system": "http://loinc.org", "code": "6301-6"}]}, "valueQuantity": "x"}],
                     {"coding": [{"system": "http://loinc.org", "code": "LA9633-4"}]}]),
    st.text(max_size=12),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.builds(lambda s, c: {"coding": [{"system": s, "code": c}]},
              st.sampled_from(["http://loinc.org", "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10",
                               "urn:pverisk:feature", "urn:unknown"]),
              st.text(max_size=10)),
)


def _set(node: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(key, {})
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return
    last = path[-1]
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value


mutation = st.tuples(st.integers(0, len(PATHS) - 1), junk)
bundle_level = st.sampled_from(["none", "none", "none", "entry_junk", "entry_item_junk", "resource_junk",
                                "prefetch_key_junk", "fullurl_junk", "type_junk", "context_junk", "patient_key_junk"])


def _variant(mutations: list[tuple[int, Any]]) -> list[dict[str, Any]]:
    resources = copy.deepcopy(RESOURCES)
    for index, value in mutations:
        i, path = PATHS[index]
        _set(resources[i], path, value)
    return resources


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutations=st.lists(mutation, min_size=1, max_size=4), level=bundle_level, extra=junk)
def test_no_fhir_shape_gives_a_5xx(server, mutations, level, extra):
    resources = _variant(mutations)
    entries: list[Any] = [{"fullUrl": f"urn:uuid:{r.get('id')}" if isinstance(r, dict) else None, "resource": r}
                          for r in resources]
    if level == "entry_item_junk":
        entries.append(extra)
    if level == "resource_junk":
        entries.append({"resource": extra})
    if level == "fullurl_junk":
        entries[0]["fullUrl"] = extra
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": extra if level == "type_junk" else "collection",
                              "entry": extra if level == "entry_junk" else entries}
    with httpx.Client(timeout=60) as client:
        r = client.post(f"{server.url}/v1/predict/fhir", json=bundle)
        assert r.status_code < 500, (r.status_code, r.text[:500])
        assert r.headers["content-type"].startswith("application/json") and isinstance(r.json(), dict)

        patient = resources[0]
        prefetch: dict[str, Any] = {
            "patient": patient,
            "conditions": {"resourceType": "Bundle", "type": "searchset",
                           "entry": [e for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                                     and e["resource"].get("resourceType") == "Condition"]},
            "observations": bundle}
        if level == "prefetch_key_junk":
            prefetch["observations"] = extra
        if level == "patient_key_junk":
            prefetch["patient"] = extra
        body = {"hook": "patient-view", "hookInstance": "h-1", "prefetch": prefetch,
                "context": {"patientId": extra if level == "context_junk" else BASE.patient_id}}
        c = client.post(f"{server.url}/cds-services/pve-progression-risk", json=body)
        assert c.status_code < 500, (c.status_code, c.text[:500])
        assert c.headers["content-type"].startswith("application/json") and isinstance(c.json(), dict)


def test_the_property_test_reaches_every_member_the_mapper_reads():
    """The mutation space covers each level the mapper reads (guards the test from shrinking by edits)."""
    reached = {(RESOURCES[i]["resourceType"], p[0]) for i, p in PATHS}
    for rtype, member in [("Patient", "birthDate"), ("Patient", "deceasedDateTime"), ("Condition", "code"),
                          ("Condition", "verificationStatus"), ("Condition", "subject"), ("Observation", "code"),
                          ("Observation", "valueQuantity"), ("Observation", "component"),
                          ("Observation", "effectiveDateTime"), ("Observation", "status"),
                          ("Observation", "valueCodeableConcept")]:
        assert (rtype, member) in reached, (rtype, member)
    deep = {p for _, p in PATHS}
    assert ("code", "coding", 0, "code") in deep and ("valueQuantity", "value") in deep
