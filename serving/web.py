"""ASGI middleware in front of the BentoML app: our own pages (calculator at `/`, model card at
`/model`, API docs at `/docs`; no third-party calls), the OpenAPI document as we present it,
optional API-key authentication and a request-body size limit.

Starlette has no body-size middleware and BentoML's index page embeds Google Tag
Manager, so these few lines are ours.
"""

from __future__ import annotations

import hmac
import json
import logging
import mimetypes
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson
import swagger_ui_bundle

from feature_store import contract as c

from ehr.settings import EhrSettings
from serving.errors import plain_client_errors
from serving.settings import ServingSettings

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

ASSETS = Path(swagger_ui_bundle.swagger_ui_path)
ASSET_FILES = {"swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css", "favicon-32x32.png"}
STATIC = Path(__file__).parent / "static"
STATIC_FILES = {p.name for p in STATIC.iterdir() if p.suffix in (".css", ".js")}
PAGES = {"/": "calculator.html", "/model": "model.html"}
PROTECTED_PREFIXES = ("/v1/",)
CDS_CALLS = "/cds-services/"
# No route takes a form: BentoML would try to parse one (a 500 for multipart without a boundary).
FORM_TYPES = (b"multipart/", b"application/x-www-form-urlencoded")
CSP = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"
# Our own pages run no inline script; inline styles only for the bar widths; plots arrive as data: URIs.
PAGE_CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"

DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>PVE progression risk API (research use only)</title>
<link rel="stylesheet" href="/docs-assets/swagger-ui.css">
<link rel="icon" href="/docs-assets/favicon-32x32.png">
</head><body>
<div style="font-family:sans-serif;padding:8px 16px;background:#fff3cd;border-bottom:1px solid #e0c36a">
<strong>Research use only.</strong> Not a medical device; not for clinical decisions.
Check <code>data_kind</code> in every response: a model trained on simulated data says nothing about real patients.
</div>
<div id="swagger-ui"></div>
<script src="/docs-assets/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "/docs.json", dom_id: "#swagger-ui", validatorUrl: null,
  deepLinking: false, presets: [SwaggerUIBundle.presets.apis]});
</script>
</body></html>
"""


async def _respond(send: Send, status: int, body: bytes, content_type: str,
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
                ) -> None:
    await _respond(send, status, json.dumps(payload).encode(), "application/json", headers)


class GuardMiddleware:
    def __init__(self, app: Callable[..., Awaitable[None]], settings: ServingSettings | None = None,
                 present_openapi: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.app = app
        self.settings = settings or ServingSettings()
        self.ehr_settings = EhrSettings()
        self.present_openapi = present_openapi
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else ""
        self._key = key.encode() if key else None

    def _authorised(self, scope: Scope) -> bool:
        if self._key is None:
            return True
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-api-key", b"")
        auth = headers.get(b"authorization", b"")
        if not given and auth.lower().startswith(b"bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given, self._key)  # constant-time

    def _needs_key(self, path: str, method: str) -> bool:
        """Every /v1/ route; and the CDS Hooks calls when no EHR JWT is required, since they take a
        `fhirServer` URL the service then calls (with the key set, no route is left open to anyone
        on the network). Discovery stays public: it lists the service, no patient data."""
        if path.startswith(PROTECTED_PREFIXES):
            return True
        return (method == "POST" and path.startswith(CDS_CALLS) and not self.ehr_settings.cds_jwt_required)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path == "/cds-services":
            # CDS Hooks discovery lives at {base}/cds-services; a mounted app answers only below
            # its prefix, so the bare path is routed to the mount's root instead of a 307.
            scope = {**scope, "path": "/cds-services/", "raw_path": b"/cds-services/"}
        if method == "GET" and path == "/docs":
            await _respond(send, 200, DOCS_HTML.encode(), "text/html; charset=utf-8",
                           [(b"content-security-policy", CSP.encode())])
            return
        if method == "GET" and path in PAGES:
            await _respond(send, 200, (STATIC / PAGES[path]).read_bytes(), "text/html; charset=utf-8",
                           [(b"content-security-policy", PAGE_CSP.encode())])
            return
        if method == "GET" and path.startswith("/static/"):
            name = path.rsplit("/", 1)[-1]
            if path.count("/") != 2 or name not in STATIC_FILES:
                await _json(send, 404, {"error": "not found"})
                return
            ctype = {"css": "text/css", "js": "text/javascript"}[name.rsplit(".", 1)[1]]
            await _respond(send, 200, (STATIC / name).read_bytes(), f"{ctype}; charset=utf-8",
                           [(b"cache-control", b"no-cache")])
            return
        if method == "GET" and path == "/docs.json" and self.present_openapi is not None:
            await self._openapi(scope, receive, send)
            return
        if method == "GET" and path.startswith("/docs-assets/"):
            name = path.rsplit("/", 1)[-1]
            if name not in ASSET_FILES:
                await _json(send, 404, {"error": "not found"})
                return
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            await _respond(send, 200, (ASSETS / name).read_bytes(), ctype,
                           [(b"cache-control", b"public, max-age=86400")])
            return
        if self._needs_key(path, method) and not self._authorised(scope):
            await _json(send, 401, {"error": "missing or wrong API key (send X-API-Key or Authorization: Bearer)"},
                        [(b"www-authenticate", b"Bearer")])
            return
        if method in ("POST", "PUT", "PATCH"):
            if (refused := unsupported_media_type(scope)) is not None:
                await _json(send, 415, refused)
                return
            receive = await self._limited_body(scope, receive, send)
            if receive is None:
                return
            send = plain_client_errors(send)  # BentoML's pydantic-titled 400s in our words (serving/errors.py)
        await self.app(scope, receive, send)

    async def _openapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """BentoML's document, rewritten by `present_openapi` (title, tags, summaries, names)."""
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        if start.get("status") != 200:
            await _respond(send, start.get("status", 500), body, "application/json")
            return
        spec = self.present_openapi(json.loads(body))  # type: ignore[misc]
        await _respond(send, 200, json.dumps(spec).encode(), "application/json")

    async def _limited_body(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Read the body up to the limit (413 beyond it) and replay it to the app."""
        limit, hint = limit_for(scope["path"], self.settings)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_big = {"error": f"request body larger than {limit} bytes", "hint": hint}
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _json(send, 413, too_big)
            return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _json(send, 413, too_big)
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if (problem := json_body_problem(scope["path"], body)) is not None:
            await _json(send, 400, problem)
            return None
        return replay_body(body, receive)


def replay_body(raw: bytes, receive: Receive) -> Receive:
    """The body read once, then the client's own channel (a disconnect is still seen): for
    middleware that must read the body before the app does."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replay


class ClientErrorLogFilter(logging.Filter):
    """BentoML logs every request it refuses (validation errors included) as an ERROR with the
    whole traceback, and pydantic's message there can carry submitted values. For client errors
    (pydantic ValidationError, BentoML errors below 500) keep one line: the path, the status and
    the error types. Server errors keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        kinds: list[str] = []
        try:
            from pydantic import ValidationError

            if isinstance(exc, ValidationError):
                kinds = sorted({str(e["type"]) for e in exc.errors(include_input=False)})
                status = 400
            else:
                from bentoml.exceptions import BentoMLException

                if not isinstance(exc, BentoMLException) or exc.error_code.value >= 500:
                    return True
                status, kinds = exc.error_code.value, [type(exc).__name__]
        except Exception:  # noqa: BLE001 - a log filter must never break logging
            return True
        path = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg, record.args = "rejected path=%s status=%d problems=%s", (path, status, ",".join(kinds))
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


def quiet_client_error_logs() -> None:
    logging.getLogger("bentoml._internal.server.http_app").addFilter(ClientErrorLogFilter())
    # our own one-line decisions (declined, rejected, feedback) at INFO: BentoML's root level is WARNING
    logging.getLogger("pverisk").setLevel(logging.INFO)


def unsupported_media_type(scope: Scope) -> dict[str, Any] | None:
    """415 body for a form upload (multipart or urlencoded) or a compressed body: every route here
    reads plain JSON (or a binary body of its own type), none a form."""
    headers = dict(scope.get("headers") or [])
    ctype = headers.get(b"content-type", b"").strip().lower()
    if ctype.startswith(FORM_TYPES):
        return {"error": "unsupported content type: a form; send the body as JSON "
                         "(Content-Type: application/json)"}
    encoding = headers.get(b"content-encoding", b"identity").strip().lower()
    if encoding not in (b"", b"identity"):
        # no route decompresses (and a compressed body would slip past the size limit): say so,
        # rather than "invalid JSON" for the compressed bytes
        return {"error": f"unsupported content encoding {encoding.decode(errors='replace')!r}: send the body "
                         "uncompressed (large batches: Arrow or Parquet at POST /v1/predict/columns are compact)"}
    return None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise DuplicateKey(dup)
    return out


class DuplicateKey(ValueError):
    pass


def json_body_problem(path: str, body: bytes) -> dict[str, Any] | None:
    """What JSON parsers disagree on, refused before the app reads the body:
    - NaN / Infinity (not JSON, RFC 8259) in a batch, where the frame would take NaN for a missing
      value and score the patient without it (single-patient routes reject them per field);
    - a key given twice in one patient record, where the parser silently keeps the last value.
    Both checks are bounded to where they matter so that large batches pay one byte scan."""
    if path.startswith("/v1/predict/batch"):
        # memchr for the capitals first (~0.1 ms per MB; our field names and codes are lower case),
        # the token search (~2 ms per MB) only when one is there
        if (b"N" in body or b"I" in body) and (b"NaN" in body or b"Infinity" in body):
            try:
                orjson.loads(body)  # strict RFC 8259: the tokens may just sit inside a string
            except orjson.JSONDecodeError:
                return {"error": "body: not valid JSON; NaN and Infinity are not JSON numbers "
                                 "(send null for a missing value)"}
        return None
    if path == "/v1/predict" and body:
        try:
            json.loads(body, object_pairs_hook=_no_duplicate_keys)
        except DuplicateKey as exc:
            name, known = str(exc), set(c.feature_names())
            # a contract field is named; anything else could be data and is not repeated
            shown = name if name in known else "a field"
            return {"error": f"body: {shown} given twice; send each field once",
                    "detail": [{"loc": [name] if name in known else [], "msg": "duplicate key",
                                "type": "duplicate_key"}]}
        except (ValueError, RecursionError):
            return None  # not JSON at all, or nested too deep: the app answers that with its own 400
    return None


def limit_for(path: str, settings: ServingSettings) -> tuple[int, str]:
    """Body limit and the hint that fits the endpoint: whole FHIR charts on the FHIR routes."""
    if path.startswith("/cds-services"):
        return settings.max_fhir_body_bytes, ("send the prefetch the discovery document asks for (GET /cds-services: "
                                              "filtered Condition and Observation queries), not the whole chart")
    if path.startswith("/v1/predict/fhir"):
        return settings.max_fhir_body_bytes, ("send one patient's Bundle; keep its Patient, Conditions and the "
                                              "Observations coded as in GET /cds-services, not the whole chart")
    if path.startswith("/v1/predict/columns"):
        return settings.max_columnar_body_bytes, (f"send at most {settings.max_columnar_rows} patients per call, "
                                                  "as Arrow or Parquet (smaller than JSON)")
    if path.startswith("/v1/predict/batch"):
        return settings.max_body_bytes, f"send at most {settings.max_batch} patients per batch call"
    return settings.max_body_bytes, "send one patient's fields (see /docs)"


def json_errors(app: Any) -> None:
    """FastAPI's own refusals in our error shape, on the apps mounted beside BentoML's routes:
    {"error", "detail": [{loc, msg, type}]} with a 400 for a bad body (FastAPI answers 422 with
    the submitted `input` echoed, or `{"detail": ...}` for a body that is not JSON)."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def invalid(request: Any, exc: RequestValidationError) -> Any:
        from starlette.responses import JSONResponse

        detail = [{"loc": [str(x) for x in e.get("loc", ()) if x != "body"], "msg": e.get("msg", ""),
                   "type": e.get("type", "")} for e in exc.errors()]
        return JSONResponse({"error": "invalid request", "detail": detail}, status_code=400)

    async def http_error(request: Any, exc: HTTPException) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
