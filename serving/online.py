"""Predictions by patient id: the online feature store in front of POST /v1/predict.

A request body with `patient_id` (alone or with some features) is completed from the online store
through the served model's feature service (named after the model version), request values
overriding stored ones; the completed body then goes through exactly the validation and scoring of
an explicit request, and the response says which values came from the store and how old they were.
Values older than their source's TTL (the contract) are not used, as in point-in-time training.

Feast is imported on the first such request (or at start-up with PVERISK_SERVE_FEATURE_STORE_WARM):
a service that is only sent explicit features never pays its import time or memory. Patient ids
are never logged.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Awaitable, Callable

from feature_store.online import OnlineSettings, StoreUnavailable, online_features
from serving.web import replay_body

logger = logging.getLogger("pverisk.online")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ROUTE = "/v1/predict"
MAX_ID_LENGTH = 128


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class PatientLookupMiddleware:
    """ASGI middleware on POST /v1/predict; every other request passes untouched."""

    def __init__(self, app: Callable[..., Awaitable[None]], model: str, version: str,
                 features: tuple[str, ...]) -> None:
        self.app = app
        self.settings = OnlineSettings()
        self.online = online_features(model, version, tuple(features))
        if self.settings.feature_store_warm:
            threading.Thread(target=self.online.warm, name="open-feature-store", daemon=True).start()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("path") != ROUTE or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        body = None
        if b'"patient_id"' in raw:  # a byte search first: explicit requests are not parsed twice
            try:
                parsed = json.loads(raw)
                body = parsed if isinstance(parsed, dict) and "patient_id" in parsed else None
            except ValueError:
                body = None  # the app answers malformed JSON as always
        if body is None:
            await self.app(scope, replay_body(raw, receive), send)
            return
        await self._by_patient(scope, body, receive, send)

    async def _by_patient(self, scope: Scope, body: dict[str, Any], receive: Receive, send: Send) -> None:
        import anyio

        patient_id = body.pop("patient_id")
        if not isinstance(patient_id, str) or not patient_id.strip() or len(patient_id) > MAX_ID_LENGTH:
            await _send_json(send, 400, {"error": "invalid patient_id", "detail": [{
                "loc": ["patient_id"], "type": "invalid",
                "msg": f"a non-empty string of at most {MAX_ID_LENGTH} characters"}]})
            return
        try:
            with anyio.fail_after(self.settings.feature_store_timeout_s + 60):  # the first call imports Feast
                found = await anyio.to_thread.run_sync(self.online.lookup, patient_id)
        except StoreUnavailable as exc:
            await _send_json(send, 503, {
                "error": "the online feature store is unavailable: cannot look up patients by id",
                "reason": str(exc),
                "hint": "send the patient's features explicitly (they are scored as usual) or retry later"})
            return
        except TimeoutError:
            await _send_json(send, 503, {"error": "the online feature store did not answer in time",
                                         "hint": "send the patient's features explicitly"})
            return
        if not found.found:
            await _send_json(send, 404, {
                "error": "unknown patient: the online feature store has no values for this patient_id",
                "hint": "send the features explicitly, or ingest and materialize the patient's records "
                        "(pverisk features ingest / materialize); nothing was predicted"})
            return
        given = {k for k, v in body.items() if v is not None}
        merged = {**found.values, **body}  # request values override stored ones
        provenance = {
            "feature_service": self.online.service_name,
            "online_store": self.online._kind,
            "from_store": {name: {"value": v, "age_days": found.ages_days[name]}
                           for name, v in found.values.items() if name not in given},
            "overridden_by_request": sorted(given & set(found.values)),
            "from_request": sorted(given),
            "stale_not_used": {name: {"age_days": age, "ttl_days": _ttl(name)} for name, age in found.stale.items()
                               if name not in given},
        }
        await self._call_with(scope, merged, receive, send, provenance)

    async def _call_with(self, scope: Scope, merged: dict[str, Any], receive: Receive, send: Send,
                         provenance: dict[str, Any]) -> None:
        raw = json.dumps(merged).encode()
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
        inner_scope = {**scope, "headers": [*headers, (b"content-length", str(len(raw)).encode())]}
        start: dict[str, Any] = {}
        parts: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
                if not message.get("more_body"):
                    out = b"".join(parts)
                    try:
                        payload = json.loads(out)
                    except ValueError:
                        payload = None
                    if isinstance(payload, dict):
                        payload["feature_store"] = provenance
                        out = json.dumps(payload).encode()
                    hdrs = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                    await send({**start, "headers": [*hdrs, (b"content-length", str(len(out)).encode())]})
                    await send({"type": "http.response.body", "body": out})
                return
            await send(message)

        await self.app(inner_scope, replay_body(raw, receive), capture)


def _ttl(name: str) -> int | None:
    from feature_store import contract as c

    return c.BY_NAME[name].source_group.ttl_days
