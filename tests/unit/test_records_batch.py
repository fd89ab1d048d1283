"""The records batch read by msgspec (serving/schemas.py) gives the batch validator exactly the columns
the dict path gives it, and anything msgspec refuses is left to the request model's words."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from feature_store import contract as c
from feature_store.simulate import simulate_cohort
from serving.schemas import PatientStructs, batch_request_model, read_records, record_columns

ACCEPTED = tuple(c.feature_names())


def _records(n: int = 300, seed: int = 3) -> list[dict]:
    cohort = simulate_cohort(n, seed)[c.fine_feature_names()]
    records = json.loads(cohort.to_json(orient="records"))  # floats as a DataFrame exports them, NaN -> null
    for i, r in enumerate(records):  # missing in three ways: null, absent, and a coarse form given instead
        if i % 3 == 0:
            r.pop("cea_ng_ml", None)
        if i % 5 == 0:
            r["ras_status"] = None
        if i % 7 == 0:
            r.pop("n_liver_metastases")
            r["more_than_4_liver_metastases"] = bool(i % 2)
    return records


def _equal(a: dict, b: dict) -> bool:
    def same(x: np.ndarray, y: np.ndarray) -> bool:
        if x.dtype.kind == "f" and y.dtype.kind == "f":
            return np.array_equal(x, y, equal_nan=True)
        return x.dtype == y.dtype and x.tolist() == y.tolist()

    return a.keys() == b.keys() and all(same(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def test_msgspec_columns_equal_the_dict_path():
    records = _records()
    body = orjson.dumps({"patients": records, "output": "probabilities"})
    fast = read_records(body)
    assert fast is not None
    patients, partial, output = fast
    assert isinstance(patients, PatientStructs) and (partial, output) == (False, "probabilities")
    slow = record_columns(orjson.loads(body)["patients"], ACCEPTED)
    got = record_columns(patients, ACCEPTED)
    assert list(got) == list(slow)  # the same fields, in the contract's order
    for name in slow:  # the same values (msgspec reads 3 as 3.0 where the contract has a number)
        assert [None if v is None else float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                for v in got[name]] == [None if v is None else float(v) if isinstance(v, (int, float))
                                        and not isinstance(v, bool) else v for v in slow[name]], name


def test_the_validator_sees_the_same_batch_either_way(small_risk):
    """check_frame on both: the same cleaned columns, problems (a required input missing in some
    patients, a coarse flag contradicting its count) and unused inputs."""
    from serving import columnar

    risk = small_risk
    records = _records(200, seed=4)
    records[5].pop("age_years")  # required: a problem for that patient
    records[8]["more_than_4_liver_metastases"] = records[8].get("n_liver_metastases", 0) <= 4  # contradicts
    body = orjson.dumps({"patients": records})
    fast = record_columns(read_records(body)[0], ACCEPTED)
    slow = record_columns(orjson.loads(body)["patients"], ACCEPTED)
    used = tuple(c.input_names(risk.features))
    a = columnar.check_frame(fast, len(records), risk, ACCEPTED, used, {k: set(map(type, v)) for k, v in fast.items()})
    b = columnar.check_frame(slow, len(records), risk, ACCEPTED, used, {k: set(map(type, v)) for k, v in slow.items()})
    assert _equal(a.columns, b.columns) and a.problems == b.problems and a.unused == b.unused
    assert np.array_equal(a.valid, b.valid)
    assert 5 in a.problems and 8 in a.problems and len(a.valid) == len(records) - 2 and a.unused


@pytest.mark.parametrize("body", [
    b'{"patients": [{"age_years": "62"}]}',  # a number as text
    b'{"patients": [{"age_years": true}]}',  # a boolean is not a number
    b'{"patients": [{"age_years": 150}]}',  # out of range
    b'{"patients": [{"n_liver_metastases": 2.5}]}',  # not a whole number
    b'{"patients": [{"sex": "male "}]}',  # not a category
    b'{"patients": [{"bilobar_disease": 1}]}',  # 1 is not true
    b'{"patients": [{"shoe_size": 42}]}',  # not a contract field
    b'{"patients": []}', b'{"patients": [{}], "partial": 0}', b'{"patients": [{}], "extra": 1}',
    b'{"patients": [1]}', b'not json', b'{"patients": [{"age_years": 1e400}]}',
])
def test_anything_not_plainly_valid_goes_to_the_request_models_path(body):
    """msgspec refuses it, so BentoML's pydantic reading and the batch validator word the problem, as before."""
    assert read_records(body) is None
    model = batch_request_model(tuple(c.fine_feature_names()))
    try:
        parsed = model.model_validate_json(body)
    except ValueError:
        return  # pydantic's own 400
    assert not isinstance(parsed.patients, PatientStructs)
