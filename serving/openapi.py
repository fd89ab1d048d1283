"""The OpenAPI document as integrators should meet it: our title, versions, description, contact
and licence (from pyproject.toml), tags that group routes, a summary and an example on every
route, and schema names without BentoML's `IODescriptor` suffix.

BentoML 1.4 builds the document from the service; it offers no hook for these, so the served
`/docs.json` is rewritten on its way out (serving/web.py calls `present`).
"""

from __future__ import annotations

import json
import re
import tomllib
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from serving.openapi_examples import request_examples, response_example

TAGS = [
    {"name": "Prediction", "description": "Risk of liver progression for one patient or a batch (JSON)."},
    {"name": "EHR integration", "description": "CDS Hooks 2.0 (`patient-view`) and FHIR R4 Bundle in, "
                                               "RiskAssessment out."},
    {"name": "Model", "description": "The served model: card, metrics, features, short-lived calculator prefill."},
    {"name": "Operations", "description": "Liveness, readiness, Prometheus metrics, the drift window and "
                                          "outcome feedback."},
]

# path -> (tag, summary); a route missing here fails the docs test, so none is left in "default"
ROUTES: dict[str, tuple[str, str]] = {
    "/v1/predict": ("Prediction", "Risk for one patient"),
    "/v1/predict/batch": ("Prediction", "Risks for up to PVERISK_SERVE_MAX_BATCH patients"),
    "/v1/predict/columns": ("Prediction", "Risks for a table of patients: JSON columns, Arrow or Parquet"),
    "/v1/predict/fhir": ("EHR integration", "Risk from one patient's FHIR R4 Bundle, as a RiskAssessment"),
    "/cds-services/": ("EHR integration", "CDS Hooks discovery"),
    "/cds-services/pve-progression-risk": ("EHR integration", "CDS Hooks patient-view: a risk card"),
    "/cds-services/pve-progression-risk/feedback": ("EHR integration", "CDS Hooks card feedback"),
    "/v1/model": ("Model", "Model card, metrics and inputs of the served model"),
    "/v1/prefill": ("Model", "Inputs behind a calculator link from a CDS card (once; expires)"),
    "/v1/outcomes": ("Operations", "Observed outcomes by prediction id: live AUROC, calibration and Brier follow"),
    "/v1/monitoring": ("Operations", "Rolling window vs the training reference: drift per input (aggregates only)"),
    "/healthz": ("Operations", "Health (alias of /livez)"),
    "/livez": ("Operations", "Liveness: the process is up"),
    "/readyz": ("Operations", "Readiness: 200 once the model is loaded"),
    "/metrics": ("Operations", "Prometheus metrics (aggregates only, no patient data)"),
}

@lru_cache(maxsize=1)
def project_metadata() -> dict[str, Any]:
    """Name, version, description, licence and authors from pyproject.toml (a source checkout or a
    bento that includes it), else from the installed package's metadata."""
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.exists():
        project = tomllib.loads(pyproject.read_text())["project"]
        return {"name": project["name"], "version": project["version"], "description": project.get("description", ""),
                "license": (project.get("license") or {}).get("text", ""), "authors": project.get("authors", []),
                "urls": project.get("urls", {})}
    try:
        meta = metadata.metadata("pverisk")
        return {"name": "pverisk", "version": meta["Version"], "description": meta["Summary"] or "",
                "license": meta["License"] or "", "authors": [{"name": meta["Author"] or "pverisk contributors"}],
                "urls": {}}
    except metadata.PackageNotFoundError:
        return {"name": "pverisk", "version": "unknown", "description": "", "license": "", "authors": [], "urls": {}}


def description(model: dict[str, str], project: dict[str, Any], max_batch: int, max_body: int,
                max_fhir_body: int) -> str:
    return f"""{project['description']}.

**Research use only.** Not a medical device; not for clinical decisions. Every response carries
`data_kind` and a `notice`: a model trained on simulated data says nothing about real patients.

**What it predicts.** At the portal vein embolization (PVE) decision, for an adult with colorectal
liver metastases, the calibrated probability that the liver disease progresses between PVE and the
planned resection; a risk band, the factors behind the estimate, the Fong, GAME, m-CRS and tumour
burden scores beside it (built for survival after resection, shown for comparison), the inputs that
were missing and how the model handles them.

**Served model.** `{model.get('name')}` version {model.get('version')} ({model.get('alias')}, trained
on {model.get('data_kind')} data). Its inputs define the request schema below; `GET /v1/model` has its
card. A person-readable card is at [/model](/model) and a calculator at [/](/).

**Authentication.** Off unless the operator sets `PVERISK_SERVE_API_KEY` (or `PVERISK_SERVE_API_KEY_FILE`);
then every `/v1/` route needs `X-API-Key: <key>` or `Authorization: Bearer <key>`. CDS Hooks calls need
the EHR's JWT when the operator requires it, else the same key when one is set.

**Limits.** JSON bodies up to {max_body:,} bytes; FHIR and CDS Hooks bodies up to {max_fhir_body:,}
bytes; at most {max_batch:,} patients per batch call. Invalid input gets a 400 naming the field and
the allowed range, never echoing the value.
"""


def present(spec: dict[str, Any], *, model: dict[str, str], features: tuple[str, ...], max_batch: int,
            max_body: int, max_fhir_body: int, discovery_example: dict[str, Any] | None = None,
            api_key: bool = False) -> dict[str, Any]:
    """Rewrite BentoML's OpenAPI document (a new dict; the input is not changed)."""
    text = json.dumps(spec)
    # schema names: PatientRecordIODescriptor -> PatientRecord (titles and $refs alike)
    text = re.sub(r"([A-Za-z0-9_]+)IODescriptor\b", r"\1", text)
    out: dict[str, Any] = json.loads(text)
    out["info"] = _info(model, max_batch, max_body, max_fhir_body)
    out["tags"] = TAGS
    examples = request_examples(features)
    for path, ops in out.get("paths", {}).items():
        for method, op in ops.items():
            _present_operation(path, method, op, examples, model, features, discovery_example)
    return conform(out, api_key=api_key)


def _info(model: dict[str, str], max_batch: int, max_body: int, max_fhir_body: int) -> dict[str, Any]:
    """Title, versions (package and model), description, contact and licence."""
    project = project_metadata()
    authors = project.get("authors") or [{"name": "pverisk contributors"}]
    contact: dict[str, str] = {"name": authors[0].get("name", "pverisk contributors")}
    if authors[0].get("email"):
        contact["email"] = authors[0]["email"]
    url = next(iter((project.get("urls") or {}).values()), None)
    if url:
        contact["url"] = url
    return {
        "title": "PVE progression risk API (research use only)",
        "version": f"{project['version']} (model {model.get('name')} v{model.get('version')})",
        "description": description(model, project, max_batch, max_body, max_fhir_body),
        "contact": contact,
        "license": {"name": project.get("license") or "unknown",
                    **({"identifier": project["license"]} if project.get("license") else {})},
        "x-package-version": project["version"],
        "x-model-version": str(model.get("version")),
    }


def _present_operation(path: str, method: str, op: dict[str, Any], examples: dict[str, Any],
                       model: dict[str, str], features: tuple[str, ...],
                       discovery_example: dict[str, Any] | None) -> None:
    """One route's tag and summary, its request example and its 200 answer's example."""
    tag, summary = ROUTES.get(path, ("Operations", path))
    op["tags"] = [tag]
    op["summary"] = summary
    if path in examples and method == "post":
        op.setdefault("requestBody", {"required": True, "content": {"application/json": {"schema": {
            "type": "object"}}}})
        op["requestBody"]["content"]["application/json"]["example"] = examples[path]
    ok = op.setdefault("responses", {}).setdefault("200", {"description": "OK"})
    content = ok.setdefault("content", {})
    found = response_example(path, method, model, features, discovery_example)
    if found is not None:
        media, example = found
        schema_type = "string" if media == "text/plain" else "object"
        content.setdefault(media, {"schema": {"type": schema_type}})["example"] = example


# --- the document matches what the service answers (schemathesis checks it: tests/service/test_fuzz.py)

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "title": "Error", "required": ["error"],
    "description": "Every refusal: what is wrong, and where a field is at fault, which field and the allowed "
                   "range. Submitted values are never echoed.",
    "properties": {
        "error": {"type": "string"},
        "detail": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"anyOf": [
            {"type": "string"}, {"type": "object", "additionalProperties": True}]}}]},
        "hint": {"type": "string"},
        "invalid": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
    },
    "additionalProperties": True,
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


def _model_schema(out: dict[str, Any], model: Any) -> dict[str, Any]:
    """A pydantic model's JSON schema with its definitions moved to components."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        out["components"]["schemas"].setdefault(name, sub)
    return schema


def _oas30(node: Any) -> Any:
    """Pydantic writes JSON Schema 2020-12; this document is OpenAPI 3.0 (what the bundled Swagger UI
    reads). `anyOf [X, {type: null}]` becomes X with `nullable` (null added to an enum), `const`
    an enum: a 3.0 reader (code generators, schemathesis) otherwise refuses null and ignores const."""
    if isinstance(node, list):
        return [_oas30(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del node["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            node.update({k: v for k, v in rest[0].items() if k not in node})
        else:
            node["anyOf" if len(rest) > 1 else "allOf"] = rest
        node["nullable"] = True
        if "enum" in node and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
    if node.get("type") == "null":
        node.pop("type")
        node["nullable"] = True
        node["enum"] = [None]
    return {k: _oas30(v) for k, v in node.items()}  # the children after this node's own anyOf


def _document_by_id(op: dict[str, Any], responses: dict[str, Any]) -> None:
    """POST /v1/predict also takes `{"patient_id": ...}` (serving/online.py completes it from the online
    feature store before validation). The explicit schema stays the body's `schema` (the calculator
    page and code generators read it); the by-id form is described beside it as an extension."""
    from serving.online import MAX_ID_LENGTH

    body = op["requestBody"]
    body["description"] = (
        "The patient's inputs (schema below), or `{\"patient_id\": \"...\"}` for a patient in the online "
        "feature store, alone or with some inputs that override the stored ones (`x-by-patient-id`). "
        "By id, the answer's `feature_store` block lists the values taken from the store with their age "
        "in days, the overridden ones and the stale ones not used.")
    body["x-by-patient-id"] = {
        "type": "object", "required": ["patient_id"],
        "properties": {"patient_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}},
        "additionalProperties": {"description": "any field of the explicit schema, overriding the store"},
        "example": {"patient_id": "SIM-0-0000000", "sflr_percent": 24.0}}
    responses["404"] = _error("By patient id: the online feature store has no values for this patient "
                              "(nothing predicted)")
    responses["503"] = _error("The model is still loading, or (by patient id) the online feature store is "
                              "unavailable; explicit features are still scored")


def conform(spec: dict[str, Any], *, api_key: bool) -> dict[str, Any]:
    """Document every answer the routes give: request bodies as required, the real error shape
    (BentoML documents `detail` as a string; ours is a list), 401/413/415/503 where they happen,
    the CDS Hooks request and card shapes from their models, and the API key when one is set."""
    out = json.loads(json.dumps(spec))
    schemas = out.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for bentoml_error in ("InvalidArgument", "NotFound", "InternalServerError"):
        if bentoml_error in schemas:
            schemas[bentoml_error] = {**ERROR_SCHEMA, "title": bentoml_error}
    for path, ops in out.get("paths", {}).items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            guarded = path.startswith("/v1/") or (path.startswith("/cds-services/") and method == "post")
            if method == "post":
                _conform_body(out, path, op, responses)
            if guarded:
                responses.setdefault("401", _error("Missing or wrong credentials (API key, or the EHR's JWT on "
                                                   "CDS Hooks calls) when authentication is on"))
                responses.setdefault("503", _error("The model is still loading"))
            _route_answers(out, path, method, op, responses)
            if "422" in responses and "HTTPValidationError" in json.dumps(responses["422"]):
                del responses["422"]  # FastAPI's; serving/web.py json_errors answers those with a 400
            if api_key and guarded and not path.startswith("/cds-services/"):
                op["security"] = [{"ApiKey": []}, {"Bearer": []}]
    if api_key:
        out["components"]["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "Bearer": {"type": "http", "scheme": "bearer"}}
    return _oas30(out)


def _conform_body(out: dict[str, Any], path: str, op: dict[str, Any], responses: dict[str, Any]) -> None:
    """A POST's body: required, nullable fields as the service takes them, the CDS Hooks shapes from
    their models, and the 400/413/415 every body can meet."""
    from ehr.cds_models import CardsResponse, CDSRequest, Feedback

    cds_bodies = {"/cds-services/pve-progression-risk": (CDSRequest, CardsResponse),
                  "/cds-services/pve-progression-risk/feedback": (Feedback, None)}
    schemas = out["components"]["schemas"]
    body = op.setdefault("requestBody", {"content": {"application/json": {"schema": {"type": "object"}}}})
    body["required"] = True
    inline = body.get("content", {}).get("application/json", {}).get("schema", {})
    model = schemas.get(str(inline.get("title")), {})
    if "properties" in inline and "properties" in model:
        # BentoML's inline copy drops `null` from optional fields; the service takes null as missing
        inline["properties"] = json.loads(json.dumps(model["properties"]))
    if path in cds_bodies:
        request_model, response_model = cds_bodies[path]
        media = body["content"].setdefault("application/json", {})
        media["schema"] = _model_schema(out, request_model)
        ok = responses.setdefault("200", {"description": "OK"}).setdefault("content", {}).setdefault(
            "application/json", {})
        ok["schema"] = (_model_schema(out, response_model) if response_model else {
            "type": "object", "required": ["accepted"],
            "properties": {"accepted": {"type": "integer", "minimum": 0}}})
    responses.setdefault("400", _error("Invalid request: the fields at fault and their allowed ranges"))
    responses.setdefault("413", _error("Body larger than the limit of this route"))
    responses.setdefault("415", _error("A form upload: send JSON"))


def _route_answers(out: dict[str, Any], path: str, method: str, op: dict[str, Any],
                   responses: dict[str, Any]) -> None:
    """The answers only some routes give (discovery's shape, 412, 422, 404, prediction by patient id)."""
    from ehr.cds_models import Discovery

    if path == "/cds-services/" and method == "get":
        responses.setdefault("200", {"description": "OK"}).setdefault("content", {}).setdefault(
            "application/json", {})["schema"] = _model_schema(out, Discovery)
    if path == "/cds-services/pve-progression-risk":
        responses.setdefault("412", _error("The data needed is not in the prefetch and cannot be fetched"))
    if path == "/v1/predict/fhir":
        responses.setdefault("422", _error("The chart cannot be scored: identity conflict, not "
                                           "applicable, or not enough data (with an OperationOutcome)"))
    if path == "/v1/prefill":
        responses.setdefault("404", _error("Unknown or expired link"))
    if path == "/v1/predict" and method == "post":
        _document_by_id(op, responses)
