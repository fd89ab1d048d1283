"""The columnar and lean forms over real HTTP (`bentoml serve`): the same probabilities and bands
as the per-record path for the same patients, and invalid columns as 4xx naming row, field and
allowed range, with the record batch's own messages."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_store import contract as c
from feature_store.simulate import simulate_cohort

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"


@pytest.fixture(scope="module")
def cohort():
    """40 simulated patients in their fine form, missing values included (NaN / None)."""
    frame = simulate_cohort(40, seed=1234)[c.fine_feature_names()]
    assert frame.isna().any().any()  # the missing-value paths are exercised
    return frame


def records(frame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


def columns(frame) -> dict[str, list]:
    return {k: json.loads(frame[k].to_json(orient="values")) for k in frame.columns}


def arrow_bytes(frame) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def parquet_bytes(frame) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    return sink.getvalue()


def post(server, path, **kw):
    return httpx.post(f"{server.url}{path}", timeout=60, **kw)


@pytest.fixture(scope="module")
def per_record(server, cohort):
    """The reference: /v1/predict, one patient per call."""
    out = []
    for patient in records(cohort):
        r = post(server, "/v1/predict", json={k: v for k, v in patient.items() if v is not None})
        assert r.status_code == 200, r.text
        out.append((r.json()["probability"], r.json()["risk_band"]))
    return out


def test_every_form_gives_the_per_record_probabilities_and_bands(server, cohort, per_record):
    expected_p = [p for p, _ in per_record]
    expected_b = [b for _, b in per_record]
    got: dict[str, tuple[list, list]] = {}
    for output in ("full", "probabilities"):
        r = post(server, "/v1/predict/batch", json={"patients": records(cohort), "output": output})
        assert r.status_code == 200, r.text
        rows = r.json()["results"]
        got[f"batch {output}"] = ([x["probability"] for x in rows], [x["risk_band"] for x in rows])
        if output == "probabilities":
            # lean: nothing else per row but the id that outcome feedback takes back
            assert set(rows[0]) == {"index", "prediction_id", "probability", "risk_band"}
            assert r.json()["data_kind"] == "simulated" and "SIMULATED" in r.json()["notice"]
        r = post(server, "/v1/predict/columns", json={"columns": columns(cohort), "output": output})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["columns"]["index"] == list(range(len(cohort)))
        assert body["data_kind"] == "simulated" and "SIMULATED" in body["notice"]
        got[f"JSON columns {output}"] = (body["columns"]["probability"], body["columns"]["risk_band"])
        for ctype, payload in ((ARROW, arrow_bytes(cohort)), (PARQUET, parquet_bytes(cohort))):
            r = post(server, f"/v1/predict/columns?output={output}", content=payload, headers={"content-type": ctype})
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith(ctype)
            table = (pa.ipc.open_stream(r.content).read_all() if ctype == ARROW else pq.read_table(io.BytesIO(r.content)))
            meta = json.loads(table.schema.metadata[b"pverisk"])
            assert meta["data_kind"] == "simulated" and "SIMULATED" in meta["notice"]
            assert table.schema.metadata[b"model_version"].decode() == meta["model"]["version"]
            got[f"{ctype} {output}"] = (table.column("probability").to_pylist(), table.column("risk_band").to_pylist())
        # the answer's form follows Accept when given
        r = post(server, "/v1/predict/columns", content=arrow_bytes(cohort),
                 headers={"content-type": ARROW, "accept": "application/json"})
        assert r.status_code == 200 and r.json()["columns"]["probability"] == expected_p
    for form, (probs, bands) in got.items():
        assert probs == expected_p, form
        assert bands == expected_b, form


def test_full_columns_carry_the_per_record_scores_and_factors(server, cohort):
    patient = records(cohort)[3]
    one = post(server, "/v1/predict", json={k: v for k, v in patient.items() if v is not None}).json()
    body = post(server, "/v1/predict/columns", json={"columns": columns(cohort)}).json()["columns"]
    assert body["tumour_burden_score"][3] == one["clinical_scores"]["tumour_burden_score"]
    assert body["game_group"][3] == one["clinical_scores"]["game_group"]
    assert [body[f"top_factor_{m + 1}"][3] for m in range(len(one["top_factors"]))] == [
        f["feature"] for f in one["top_factors"]]
    for f in one["top_factors"]:
        assert body[f"contribution__{f['feature']}"][3] == f["contribution_log_odds"]
    assert body["missing_inputs"][3] == one["missing_inputs"]


def _broken(cohort):
    frame = cohort.copy()
    frame["age_years"] = frame["age_years"].astype(float)
    frame.loc[3, "age_years"] = 17.0
    frame["sex"] = frame["sex"].astype(object)
    frame.loc[5, "sex"] = "unknown-sex"
    return frame


def test_invalid_columns_are_a_400_naming_row_field_and_range(server, cohort):
    frame = _broken(cohort)
    batch = post(server, "/v1/predict/batch", json={"patients": records(frame)})
    assert batch.status_code == 400
    for kind, kw in (("json", {"json": {"columns": columns(frame)}}),
                     ("arrow", {"content": arrow_bytes(frame), "headers": {"content-type": ARROW}}),
                     ("parquet", {"content": parquet_bytes(frame), "headers": {"content-type": PARQUET}})):
        r = post(server, "/v1/predict/columns", **kw)
        assert r.status_code == 400, (kind, r.text)
        body = r.json()
        assert body["invalid"] == batch.json()["invalid"], kind  # the record batch's very messages
        by_row = {x["index"]: x["errors"] for x in body["invalid"]}
        assert set(by_row) == {3, 5}
        assert by_row[3] == [{"field": "age_years", "problem": "outside the allowed range 18 to 100 years"}]
        assert by_row[5][0]["field"] == "sex" and "one of female, male" in by_row[5][0]["problem"]
        assert "17" not in r.text  # values are not echoed


def test_partial_scores_the_valid_rows_and_lists_the_others(server, cohort, per_record):
    frame = _broken(cohort)
    r = post(server, "/v1/predict/columns", json={"columns": columns(frame), "partial": True, "output": "probabilities"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["n_invalid"] == 2 and [x["index"] for x in body["invalid"]] == [3, 5]
    index = body["columns"]["index"]
    assert 3 not in index and 5 not in index and len(index) == len(cohort) - 2
    assert body["columns"]["probability"] == [per_record[i][0] for i in index]


@pytest.mark.parametrize("kw, status, fragment", [
    ({"content": b"a,b\n1,2", "headers": {"content-type": "text/csv"}}, 415, "unsupported content type"),
    ({"content": b"not arrow", "headers": {"content-type": ARROW}}, 400, "not a readable"),
    ({"json": {"columns": {"age_years": [60, 61], "n_liver_metastases": [2]}}}, 400, "differ in length"),
    ({"json": {"columns": {"age_years": [{"x": 1}]}}}, 400, "give one number"),
    ({"json": {"patients": []}}, 400, "columns"),
    ({"json": {"columns": {"age_years": [60]}, "output": "everything"}}, 400, "output"),
    ({"json": {"columns": {"age_years": [60], "n_liver_metastases": [2]}}}, 400, "largest_metastasis_cm"),
    ({"json": {"columns": {"age_years": [], "n_liver_metastases": []}}}, 400, "no patients"),
])
def test_unreadable_columnar_bodies_are_4xx(server, kw, status, fragment):
    r = post(server, "/v1/predict/columns", **kw)
    assert r.status_code == status, r.text
    assert fragment in r.text


def test_columnar_route_is_documented_for_the_fuzzer(server):
    spec = httpx.get(f"{server.url}/docs.json").json()
    op = spec["paths"]["/v1/predict/columns"]["post"]
    assert set(op["requestBody"]["content"]) == {"application/json", ARROW, PARQUET}
    example = op["requestBody"]["content"]["application/json"]["example"]
    assert post(server, "/v1/predict/columns", json=example).status_code == 200
    assert {"400", "413", "415"} <= set(op["responses"])
    batch = spec["paths"]["/v1/predict/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "output" in json.dumps(spec["components"]) or "output" in json.dumps(batch)


def test_large_batches_are_never_refused_for_their_size_below_the_columnar_limit(server):
    n = 2000  # far above the record batch limit of this server (50)
    frame = simulate_cohort(n, seed=7)[c.fine_feature_names()]
    r = post(server, "/v1/predict/columns?output=probabilities", content=arrow_bytes(frame),
             headers={"content-type": ARROW})
    assert r.status_code == 200, r.text
    probs = np.asarray(pa.ipc.open_stream(r.content).read_all().column("probability").to_pylist())
    assert len(probs) == n and ((probs >= 0) & (probs <= 1)).all()


def test_columnar_answers_carry_prediction_ids_that_take_outcomes(server, cohort):
    """Bulk traffic is monitored like the batch route: one prediction id per scored row (beside its
    `index`, in JSON and Arrow alike), and outcomes posted for those ids are linked."""
    cols = columns(cohort.head(12))
    cols["age_years"][3] = 150  # invalid: not scored, so no id
    r = post(server, "/v1/predict/columns", json={"columns": cols, "output": "probabilities", "partial": True})
    assert r.status_code == 200, r.text
    got = r.json()["columns"]
    assert 3 not in got["index"] and len(got["prediction_id"]) == len(got["index"]) == 11
    assert len(set(got["prediction_id"])) == 11
    outcomes = [{"prediction_id": pid, "outcome": i % 2 == 0} for i, pid in enumerate(got["prediction_id"])]
    linked = post(server, "/v1/outcomes", json={"outcomes": outcomes})
    assert linked.status_code == 200, linked.text
    assert linked.json()["recorded"] == 11 and linked.json()["unknown_prediction_ids"] == []
    arrow = post(server, "/v1/predict/columns", content=arrow_bytes(cohort.head(5)),
                 headers={"content-type": ARROW})
    assert arrow.status_code == 200, arrow.text
    table = pa.ipc.open_stream(arrow.content).read_all()
    assert table.column_names[:2] == ["index", "prediction_id"] and table.num_rows == 5
    assert len(set(table.column("prediction_id").to_pylist())) == 5
    # the id ends in the patient's index in the request: an invalid patient leaves a gap, never a shift
    assert [pid.rsplit("-", 1)[1] for pid in got["prediction_id"]] == [str(i) for i in got["index"]]


def test_every_patient_invalid_with_partial_is_an_empty_answer_not_an_error(server, cohort):
    cols = columns(cohort.head(3))
    cols["age_years"] = [150, 160, 170]
    r = post(server, "/v1/predict/columns", json={"columns": cols, "partial": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "error" not in body and body["n_scored"] == 0 and body["n_invalid"] == 3 and body["columns"] == {}
    assert [x["index"] for x in body["invalid"]] == [0, 1, 2] and body["data_kind"] == "simulated"


def test_an_arrow_or_parquet_file_is_read_by_the_file_rules_of_pverisk_score(server, cohort):
    """0/1 flags and numbers stored as text are what registry files hold: a Parquet or Arrow body is
    read as `pverisk score` reads the same file (JSON bodies stay strictly typed)."""
    frame = cohort.head(6).copy()
    flag = next(f.name for f in c.features() if f.kind is c.Kind.BOOLEAN and not f.coarse and f.name in frame)
    frame[flag] = frame[flag].map({True: 1, False: 0})
    frame["age_years"] = frame["age_years"].map(lambda v: None if v != v else f"{v:g}")
    reference = post(server, "/v1/predict/columns", json={"columns": columns(cohort.head(6)),
                                                         "output": "probabilities"}).json()["columns"]
    for ctype, body in ((ARROW, arrow_bytes(frame)), (PARQUET, parquet_bytes(frame))):
        r = post(server, "/v1/predict/columns?output=probabilities", content=body,
                 headers={"content-type": ctype, "accept": "application/json"})
        assert r.status_code == 200, (ctype, r.text)
        assert r.json()["columns"]["probability"] == reference["probability"]
    strict = post(server, "/v1/predict/columns", json={"columns": columns(frame)})
    assert strict.status_code == 400 and flag in strict.text and "age_years" in strict.text
