"""Scored tables answered as tables: result columns (probability, band, scores, contributions, top
factors, missing inputs) in JSON, Arrow or Parquet, with the notice and model in the metadata; and the
columnar endpoint end to end (read and check with serving/columnar.py, score, answer)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import orjson

from feature_store.scores import game_group
from model_runtime.scoring import RiskModel, Scored
from serving.columnar import JSON, PARQUET, Checked, ColumnarError, check_frame, media_type, read_request


def result_columns(scored: Scored, risk: RiskModel, index: np.ndarray, arrow: bool = False) -> dict[str, Any]:
    """Scored patients as named columns (numpy arrays or lists): probability and band, and with
    explanations the clinical scores, each feature's contribution (log-odds), the top factors'
    names in order and the missing inputs."""
    out: dict[str, Any] = {"index": index, "probability": scored.answered,
                           "risk_band": scored.band.tolist()}
    if scored.contributions is None or scored.scores is None or scored.missing is None:
        return out
    for key, arr in scored.scores.items():
        out[key] = np.round(arr, 3)
    game = scored.scores["game_score"]
    out["game_group"] = [None if g != g else game_group(g) for g in game.tolist()]
    k = min(risk.settings.top_factors, len(risk.features))
    order = np.argsort(-np.abs(scored.contributions), axis=1, kind="stable")[:, :k]
    sizes = np.take_along_axis(scored.contributions, order, axis=1)
    names = np.array(risk.features, dtype=object)
    for m in range(k):
        out[f"top_factor_{m + 1}"] = np.where(sizes[:, m] != 0, names[order[:, m]], None).tolist()
    for j, name in enumerate(risk.features):
        out[f"contribution__{name}"] = np.round(scored.contributions[:, j], 4)
    rows, cols = np.nonzero(scored.missing)
    offsets = np.concatenate([[0], np.cumsum(scored.missing.sum(axis=1))]).astype(np.int32)
    if arrow:  # one list column built from two arrays
        import pyarrow as pa

        out["missing_inputs"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(names[cols].tolist(),
                                                                                    type=pa.string()))
    else:
        flat = names[cols].tolist()
        out["missing_inputs"] = [flat[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    return out


def meta(risk: RiskModel) -> dict[str, Any]:
    """What a whole table's answer states once (model, data kind, notice, band thresholds)."""
    return risk.meta_block()


def json_body(checked: Checked, cols: dict[str, Any], risk: RiskModel) -> bytes:
    return orjson.dumps({"n_scored": len(checked.valid), "n_invalid": len(checked.invalid),
                         "unused_inputs": checked.unused, **meta(risk),
                         "invalid": [{"index": i, "errors": checked.problems[i]} for i in sorted(checked.problems)],
                         "columns": cols}, option=orjson.OPT_SERIALIZE_NUMPY)


def arrow_table(cols: dict[str, Any], risk: RiskModel, extra: Mapping[str, Any] | None = None) -> Any:
    """The result columns as an Arrow table whose schema metadata carries the notice, the model
    and the data kind (what every prediction response says)."""

    table = arrow_columns(cols)
    block = meta(risk)
    metadata = {"pverisk": orjson.dumps({**block, **(extra or {})}), "notice": block["notice"].encode(),
                "data_kind": block["data_kind"].encode(), "model_version": str(block["model"]["version"]).encode()}
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})


def arrow_columns(cols: Mapping[str, Any]) -> Any:
    """Result columns as an Arrow table; NaN (a score that cannot be computed) becomes null."""
    import pyarrow as pa

    return pa.table({k: v if isinstance(v, (pa.Array, pa.ChunkedArray)) else pa.array(v, from_pandas=True)
                     for k, v in cols.items()})


def table_bytes(table: Any, form: str) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    if form == PARQUET:
        pq.write_table(table, sink)
    else:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    return sink.getvalue()


@dataclass
class Answer:
    status: int
    body: bytes
    media_type: str
    scored: Scored | None = None  # for the caller's metrics and monitoring
    n_invalid: int = 0
    checked: Checked | None = None  # the scored rows' columns, for the monitoring windows
    prediction_ids: list[str] | None = None  # one per scored row, in the answer too (outcome feedback)


def answer(body: bytes, content_type: str | None, accept: str | None, query: Mapping[str, str],
           risk: RiskModel, accepted: tuple[str, ...], used: tuple[str, ...], max_rows: int,
           new_ids: Callable[[np.ndarray, int], list[str]] | None = None) -> Answer:
    """The whole columnar endpoint: parse, validate, score and answer in the requested form.
    Errors are JSON whatever the form (field, row, problem, allowed range)."""
    try:
        req = read_request(body, content_type, query, max_rows)
    except ColumnarError as exc:
        return Answer(exc.status, orjson.dumps({"error": str(exc)}), JSON)
    # JSON bodies are typed by JSON ("62" is not an age, 1 is not true); an Arrow or Parquet body is
    # a file, checked by the file rules of `pverisk score`: the same file scores the same either way.
    checked = check_frame(req.columns, req.n, risk, accepted, used, req.types, json_types=req.form == JSON)
    if checked.invalid and not req.partial:
        return Answer(400, orjson.dumps(checked.error_body()), JSON, n_invalid=len(checked.invalid))
    scored = risk.score_arrays(checked.columns, len(checked.valid), explain=req.output == "full") \
        if len(checked.valid) else None
    if scored is None:  # partial, and no patient valid: what the batch route answers, as columns
        body = {"n_scored": 0, "n_invalid": len(checked.invalid), "unused_inputs": checked.unused, **meta(risk),
                **{k: v for k, v in checked.error_body().items() if k != "error"}, "columns": {}}
        return Answer(200, orjson.dumps(body), JSON, n_invalid=len(checked.invalid))
    form = media_type(accept) if accept and media_type(accept) else media_type(content_type) or JSON
    cols = result_columns(scored, risk, checked.valid, arrow=form != JSON)
    ids = new_ids(checked.valid, checked.n) if new_ids is not None else None
    if ids is not None:  # beside `index`: what `POST /v1/outcomes` takes back
        cols = {"index": cols.pop("index"), "prediction_id": ids, **cols}
    if form == JSON:
        return Answer(200, json_body(checked, cols, risk), JSON, scored, len(checked.invalid), checked, ids)
    extra = {"n_scored": len(checked.valid), "n_invalid": len(checked.invalid), "unused_inputs": checked.unused,
             "invalid": [{"index": i, "errors": checked.problems[i]} for i in sorted(checked.problems)]}
    return Answer(200, table_bytes(arrow_table(cols, risk, extra), form), form, scored, len(checked.invalid),
                  checked, ids)
