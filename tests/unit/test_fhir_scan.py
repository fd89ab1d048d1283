"""The fast reader of CDS Hooks bodies (ehr/fhir_scan.py) gives the mapping what the tolerant reader gives, on
whole charts, mCODE charts and malformed ones; a chart sent under several keys is read once."""

from __future__ import annotations

import copy
import json

import pytest

from ehr import fhir_scan
from ehr.fhir_map import map_chart
from ehr.fhir_read import Problem, bundle_entries
from tests.fixtures.charts import whole_chart
from tests.fixtures.mcode import mcode_chart


def _both(bundle: dict, patient_id: str):
    raw = json.dumps({"prefetch": {"observations": bundle}}).encode()  # json: integers beyond 64 bits too
    fast_problems: list[Problem] = []
    fast = fhir_scan.bundle(fhir_scan.decode_request(raw).prefetch["observations"], fast_problems)
    slow_problems: list[Problem] = []
    slow = bundle_entries(bundle, slow_problems)
    return (map_chart(fast, patient_id=patient_id, problems=fast_problems),
            map_chart(slow, patient_id=patient_id, problems=slow_problems), fast, slow)


@pytest.mark.parametrize("make,skipped", [(lambda: whole_chart(3, years=2), True), (lambda: mcode_chart(), False)])
def test_fast_and_tolerant_readers_map_the_same(make, skipped):
    ch = make()
    fast, slow, fast_entries, slow_entries = _both(ch.bundle, ch.patient_id)
    assert fast.record == slow.record and fast.counts() == slow.counts() and fast.basis == slow.basis
    # claims, encounters and vital signs are never built (an mCODE chart of relevant resources only: none to skip)
    assert (len(fast_entries) < len(slow_entries)) is skipped


@pytest.mark.parametrize("breakage", [
    lambda e: e.__setitem__("resource", 5),  # an entry whose resource is not an object
    lambda e: e["resource"].__setitem__("code", {"coding": "2039-6"}),
    lambda e: e["resource"].__setitem__("valueQuantity", {"value": 10 ** 400}),
])
def test_malformed_shapes_fall_back_to_the_tolerant_reader(breakage):
    ch = whole_chart(4, years=1)
    bundle = copy.deepcopy(ch.bundle)
    lab = next(e for e in bundle["entry"] if e["resource"].get("code", {}).get("coding", [{}])[0].get("code") == "2039-6")
    breakage(lab)
    fast, slow, _, _ = _both(bundle, ch.patient_id)
    assert fast.record == slow.record and fast.counts() == slow.counts()


def test_entries_without_a_resource_and_nested_bundles():
    ch = mcode_chart()
    inner = {"resourceType": "Bundle", "type": "collection", "entry": ch.bundle["entry"]}
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "DELETE"}},
                                                                   {"resource": inner}, {"resource": None}]}
    fast, slow, _, _ = _both(bundle, ch.patient_id)
    assert fast.record == slow.record and fast.counts()["malformed"] == 1


def test_nesting_too_deep_is_invalid_json_not_an_error():
    """Found by tests/service/test_hostile.py: msgspec raises RecursionError where orjson says invalid JSON."""
    import orjson

    from ehr.cds import _read_request

    with pytest.raises(orjson.JSONDecodeError):
        _read_request(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
