"""Patients as columns: the columnar batch endpoint (`POST /v1/predict/columns`) and offline scoring.

A batch of 10,000 patients as 10,000 JSON objects costs more to parse and to validate than to
score. Here a batch is a table: JSON column arrays, an Apache Arrow IPC stream or a Parquet
file, chosen by Content-Type. It is validated column-wise by the same contract code as the
record batch (`validate_frame`: the same field, row, problem and allowed range), scored into
arrays (`RiskModel.score_arrays`) and answered as columns in the form it came in (or the one
`Accept` names). `pverisk score` uses the same functions on a Parquet file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import orjson
import pandas as pd

from feature_store import contract as c
from feature_store.columns import is_missing
from feature_store.validate import validate_frame
from model_runtime.scoring import ALL_COARSE, CoarseConflict, MissingRequired, RiskModel

JSON = "application/json"
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
# what clients send for the same forms
ALIASES = {"application/x-parquet": PARQUET, "application/parquet": PARQUET,
           "application/vnd.apache.arrow.file": ARROW, "application/x-arrow": ARROW}
FORMS = (JSON, ARROW, PARQUET)
OUTPUTS = ("full", "probabilities")
SCALARS = {int, float, str, bool, type(None)}


class ColumnarError(ValueError):
    """A request the endpoint cannot read: 4xx with this message."""

    def __init__(self, message: str, status: int = 400):
        self.status = status
        super().__init__(message)


def media_type(header: str | None) -> str | None:
    """The form a Content-Type or Accept header names (None: none we know)."""
    for part in (header or "").split(","):
        kind = part.split(";", 1)[0].strip().lower()
        kind = ALIASES.get(kind, kind)
        if kind in FORMS:
            return kind
    return None


@dataclass
class Request:
    columns: dict[str, Any]  # name -> list (JSON) or numpy array (Arrow, Parquet), equal lengths
    n: int
    output: str = "full"
    partial: bool = False
    types: dict[str, set[type]] = field(default_factory=dict)  # JSON: the Python types in each column
    form: str = JSON


def _option(value: Any, name: str, allowed: tuple[Any, ...]) -> Any:
    # by type as well as value: 0 == False and 1 == True in Python, but JSON's 0 is not false
    if not any(type(value) is type(a) and value == a for a in allowed):
        raise ColumnarError(f"{name}: {value!r} is not one of {', '.join(map(str, allowed))}")
    return value


def read_request(body: bytes, content_type: str | None, query: Mapping[str, str], max_rows: int) -> Request:
    """Parse a columnar body. JSON: `{"columns": {name: [values]}, "output": ..., "partial": ...}`;
    Arrow and Parquet: the table itself, with `output` and `partial` as query parameters."""
    form = media_type(content_type)
    if form is None:
        raise ColumnarError(f"unsupported content type {content_type!r}; send one of {', '.join(FORMS)}", 415)
    output = _option(query.get("output", "full"), "output", OUTPUTS)
    partial = _option(query.get("partial", "false").lower(), "partial", ("true", "false")) == "true"
    if form == JSON:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ColumnarError(f"body is not valid JSON: {exc.msg} at character {exc.pos}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("columns"), dict) or not doc["columns"]:
            raise ColumnarError('body must be {"columns": {"<field>": [values, ...], ...}} with at least one column')
        extra = sorted(set(doc) - {"columns", "output", "partial"})
        if extra:
            raise ColumnarError(f"unknown top-level key(s): {', '.join(extra)}; allowed columns, output, partial")
        output = _option(doc.get("output", output), "output", OUTPUTS)
        partial = _option(doc.get("partial", partial), "partial", (True, False))
        columns = doc["columns"]
        lengths = {name: len(v) if isinstance(v, list) else None for name, v in columns.items()}
        not_lists = [name for name, n in lengths.items() if n is None]
        if not_lists:
            raise ColumnarError(f"column(s) {', '.join(map(str, not_lists[:10]))} must be arrays of values")
        if len(set(lengths.values())) != 1:
            raise ColumnarError("columns differ in length: " + ", ".join(f"{k} {v}" for k, v in
                                                                           list(lengths.items())[:10]))
        n = next(iter(lengths.values()))
        if n > max_rows:
            raise ColumnarError(f"{n} patients in one call; at most {max_rows} allowed", 413)
        types = {name: set(map(type, v)) for name, v in columns.items()}
        nested = [name for name, t in types.items() if t - SCALARS]
        if nested:
            raise ColumnarError(f"column(s) {', '.join(map(str, nested[:10]))} hold objects or arrays; "
                                "give one number, text, true/false or null per patient")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            if form == ARROW:
                table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
            else:
                table = pq.read_table(io.BytesIO(body))
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise ColumnarError(f"body is not a readable {form} table: {str(exc)[:200]}") from None
        if table.num_rows > max_rows:
            raise ColumnarError(f"{table.num_rows} patients in one call; at most {max_rows} allowed", 413)
        nested = [f.name for f in table.schema if pa.types.is_nested(f.type)]
        if nested:
            raise ColumnarError(f"column(s) {', '.join(nested[:10])} are nested; give one value per patient")
        columns, n, types = table_columns(table), table.num_rows, {}
    if n == 0:
        raise ColumnarError("no patients: the columns are empty")
    return Request(columns, n, output, partial, types, form)


def table_columns(table: Any) -> dict[str, np.ndarray]:
    """An Arrow table as numpy columns: numbers as float64 (NaN missing), others as objects
    (None missing)."""
    import pyarrow as pa

    out: dict[str, np.ndarray] = {}
    for name, col in zip(table.column_names, table.columns):
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
            out[str(name)] = col.to_numpy().astype("float64")
        elif pa.types.is_dictionary(col.type):
            out[str(name)] = np.asarray(col.cast(col.type.value_type).to_pylist(), dtype=object)
        else:
            out[str(name)] = np.asarray(col.to_pylist(), dtype=object)
    return out


def _types(values: Any) -> set[type]:
    if isinstance(values, np.ndarray) and values.dtype != object:
        return {float} if values.dtype.kind in "fiu" else {bool} if values.dtype.kind == "b" else {object}
    return set(map(type, values))


def _fast(f: c.Feature, values: Any, types: set[type], required: bool) -> np.ndarray | None:
    """A column that is plainly valid (right types, in range, known codes, nothing required
    missing) as the validator would clean it; None for anything else, which `validate_frame`
    then checks and words. So the fast path never decides what is valid: it only skips the
    general path for columns with nothing to report."""
    none = type(None)
    if f.kind in (c.Kind.NUMBER, c.Kind.INTEGER):
        if not types <= {int, float, none}:
            return None
        arr = np.asarray(values, dtype="float64")  # None -> NaN
        known = arr[~np.isnan(arr)]
        if (required and len(known) < len(arr)) or (known < f.minimum).any() or (known > f.maximum).any():
            return None
        if f.kind is c.Kind.INTEGER and (np.floor(known) != known).any():
            return None
        return arr
    arr = np.asarray(values, dtype=object)
    if f.kind is c.Kind.BOOLEAN:
        ok = types <= {bool, none}
    else:
        ok = types <= {str, none} and set(arr.tolist()) - {None} <= set(f.categories)
    if not ok or (required and none in types):
        return None
    return arr


def validate_columns(columns: Mapping[str, Any], n: int, accepted: tuple[str, ...], required: list[str],
                     types: Mapping[str, set[type]] | None = None,
                     json_types: bool = True) -> tuple[dict[str, np.ndarray], list[Any]]:
    """Contract validation of columns: the columns with something to report (and every unusual
    one) go through `validate_frame`, the same validator as the record batch and the import, so
    the problems and their words are its own; plainly valid columns skip pandas."""
    clean: dict[str, np.ndarray] = {}
    slow: list[str] = []
    for name in accepted:
        if name not in columns:
            continue
        arr = _fast(c.BY_NAME[name], columns[name], (types or {}).get(name) or _types(columns[name]),
                    name in required)
        if arr is None:
            slow.append(name)
        else:
            clean[name] = arr
    absent = [r for r in required if r not in columns]
    if not slow and not absent:
        return clean, []
    frame = pd.DataFrame({name: columns[name] for name in slow}, index=pd.RangeIndex(n))
    cleaned, found = validate_frame(frame, names=slow, required=[r for r in required if r in slow or r in absent],
                                    row_numbers=np.arange(n), json_types=json_types)
    for name in slow:
        col = cleaned[name]
        clean[name] = col.to_numpy() if col.dtype == "float64" else col.to_numpy(dtype=object, na_value=None)
    return clean, found


@dataclass
class Checked:
    """A validated batch: the valid rows' columns (coarse inputs derived), every problem by row."""

    n: int
    columns: dict[str, np.ndarray]
    valid: np.ndarray
    problems: dict[int, list[dict[str, str]]] = field(default_factory=dict)
    column_problems: list[dict[str, str]] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    @property
    def invalid(self) -> list[int]:
        return list(range(self.n)) if self.column_problems else sorted(self.problems)

    def error_body(self) -> dict[str, Any]:
        """The 400 of a batch with invalid patients: the record batch's shape (index, field,
        problem with the allowed range); a problem of a whole column is stated once."""
        invalid = self.invalid
        body: dict[str, Any] = {
            "error": f"{len(invalid)} of {self.n} patients invalid; nothing scored "
                     "(send partial=true to score the valid ones)",
            "invalid": [{"index": i, "errors": self.problems[i]} for i in sorted(self.problems)]}
        if self.column_problems:
            body["column_errors"] = self.column_problems
        return body


def check_frame(columns: Mapping[str, Any], n: int, risk: RiskModel, accepted: tuple[str, ...],
                used: tuple[str, ...], types: Mapping[str, set[type]] | None = None,
                json_types: bool = True) -> Checked:
    """Validate a batch table against the contract, as the record batch does (same rules and
    messages, from `validate_frame`), then the model's own requirements and coarse-input
    conflicts. `json_types`: a JSON request's values are not coerced, as in /v1/predict ("60" is
    not an age, 1 not true); a file (`pverisk score`, an Arrow or Parquet body) keeps the import's
    file rules (0/1 and yes/no flags, numbers stored as text)."""
    allowed = set(accepted)
    problems: dict[int, list[dict[str, str]]] = {}
    for col in columns:
        if col not in allowed:
            # per value: a list of equal-length lists would become a 2-D array in numpy
            given = [i for i, v in enumerate(columns[col]) if not is_missing(v)]
            for i in given:
                problems.setdefault(int(i), []).append({"field": str(col), "problem": "unknown field"})
    cleaned, found = validate_columns(columns, n, accepted, [f for f in risk.required if not c.BY_NAME[f].coarse],
                                      types, json_types)
    column_problems = [{"field": p.column, "problem": p.rule} for p in found if p.row is None]
    for p in found:
        if p.row is not None:
            problems.setdefault(p.row, []).append({"field": p.column, "problem": p.rule})
    # coarse values the model does not read still go in: they are checked against their fine values
    given = {f: cleaned[f] for f in cleaned if f in used or f in ALL_COARSE}
    absent = risk.missing_required(given)
    derived, conflicts = risk.derive(given)
    for (name, rows), problem in [*zip(absent.items(), MissingRequired(absent).problems()),
                                  *zip(conflicts.items(), CoarseConflict(conflicts).problems())]:
        for i in rows:
            problems.setdefault(int(i), []).append({"field": name, "problem": problem})
    valid = np.arange(n) if not problems else np.setdiff1d(np.arange(n), sorted(problems))
    if column_problems:
        valid = valid[:0]
    keep = None if len(valid) == n else valid
    columns_out = {f: (np.asarray(derived[f]) if keep is None else np.asarray(derived[f])[keep])
                   for f in risk.features if f in derived}
    unused = sorted(str(col) for col in cleaned if col not in used and _any_given(cleaned[col]))
    return Checked(n, columns_out, valid, problems, column_problems, unused)


def _any_given(values: np.ndarray) -> bool:
    if values.dtype.kind == "f":
        return bool((~np.isnan(values)).any())
    return any(v is not None for v in values.tolist())


def openapi_operation(features: tuple[str, ...]) -> dict[str, Any]:
    """The endpoint in the OpenAPI document: its three request forms, options and answers."""
    example = c.example_record(features)
    binary = {"schema": {"type": "string", "format": "binary"}}
    error = {"application/json": {"schema": {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string"}, "invalid": {"type": "array", "items": {"type": "object"}},
        "column_errors": {"type": "array", "items": {"type": "object"}}}}}}
    value = {"nullable": True, "anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]}
    return {
        "parameters": [
            {"name": "output", "in": "query", "required": False, "description": "Arrow and Parquet bodies: "
             "`probabilities` (probability and band only) or `full` (default)",
             "schema": {"type": "string", "enum": list(OUTPUTS), "default": "full"}},
            {"name": "partial", "in": "query", "required": False, "description": "Arrow and Parquet bodies: "
             "score the valid patients even if some are invalid", "schema": {"type": "string",
                                                                            "enum": ["true", "false"]}}],
        "requestBody": {"required": True, "description": "The patients as a table: one column per field of "
                        "PatientRecord, one row per patient. JSON column arrays; for large batches an Apache "
                        "Arrow IPC stream or a Parquet file (Content-Type names the form).",
                        "content": {
                            JSON: {"schema": {"type": "object", "required": ["columns"], "additionalProperties": False,
                                              "properties": {
                                                  "columns": {"type": "object", "minProperties": 1,
                                                              "additionalProperties": {"type": "array", "items": value},
                                                              "description": "field name -> one value per patient"},
                                                  "output": {"type": "string", "enum": list(OUTPUTS), "default": "full"},
                                                  "partial": {"type": "boolean", "default": False}}},
                                   "example": {"columns": {k: [v, v] for k, v in example.items()},
                                               "output": "probabilities"}},
                            ARROW: binary, PARQUET: binary}},
        "responses": {
            "200": {"description": "The valid patients' results as columns (row `index` of each), in the "
                                   "request's form or the one Accept names; JSON also carries the notice, the "
                                   "model and the invalid rows, Arrow and Parquet carry them in the schema "
                                   "metadata (key `pverisk`).",
                    "content": {JSON: {"schema": {"type": "object", "properties": {
                        "n_scored": {"type": "integer"}, "n_invalid": {"type": "integer"},
                        "notice": {"type": "string"}, "data_kind": {"type": "string"},
                        "model": {"type": "object"}, "columns": {"type": "object"}}},
                        "example": {"n_scored": 2, "n_invalid": 0, "data_kind": "simulated",
                                    "notice": "Research use only ...", "columns": {
                                        "index": [0, 1], "prediction_id": ["5f0c...-0", "5f0c...-1"],
                                        "probability": [0.27, 0.27],
                                        "risk_band": ["intermediate", "intermediate"]}}},
                        ARROW: binary, PARQUET: binary}},
            "400": {"description": "Invalid patients (index, field, problem with the allowed range) or an "
                                   "unreadable body", "content": error},
            "413": {"description": "Too many patients or too large a body", "content": error},
            "415": {"description": "A content type other than JSON, Arrow or Parquet", "content": error},
            "503": {"description": "The model is still loading", "content": error},
        },
    }
