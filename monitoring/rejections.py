"""Validation rejections counted by field, from the 400 answers of the prediction routes."""

from __future__ import annotations

from typing import Any, Mapping

from monitoring.metrics import REJECTIONS


def rejected_fields(status: int, body: bytes) -> list[str]:
    """Fields named in one of our 400 bodies (pydantic `loc`, our `field`, batch rows' errors)."""
    import orjson

    if status != 400:
        return []
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ["body"]
    if not isinstance(doc, dict):
        return ["body"]
    fields: list[str] = []
    for d in doc.get("detail") or []:
        if isinstance(d, dict):
            loc = d.get("loc")
            fields.append(str(d.get("field") or (loc[-1] if isinstance(loc, list) and loc else "body")))
    for row in doc.get("invalid") or []:
        for e in (row.get("errors") or []) if isinstance(row, dict) else []:
            fields.append(str(e.get("field", "body")))
    for e in doc.get("column_errors") or []:  # the columnar route's whole-column problems
        if isinstance(e, dict):
            fields.append(str(e.get("field", "body")))
    return fields or ["body"]


class RejectionMiddleware:
    """Counts validation rejections by field from the 400 answers of the prediction routes (pydantic
    rejects a request before our code runs, so the answer is where the field is named)."""

    ROUTES = {"/v1/predict": "predict", "/v1/predict/batch": "batch", "/v1/predict/columns": "columns"}

    def __init__(self, app: Any, labels: Mapping[str, str]) -> None:
        self.app = app
        self.labels = dict(labels)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        endpoint = self.ROUTES.get(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        status = 0
        chunks: list[bytes] = []

        async def watch(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 400:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    for field in rejected_fields(status, b"".join(chunks)):
                        REJECTIONS.labels(**self.labels, endpoint=endpoint, field=field).inc()
            await send(message)

        await self.app(scope, receive, watch)
