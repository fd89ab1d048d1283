"""CDS Hooks 2.0 service: discovery, the pve-progression-risk service and feedback.

A FastAPI app mounted on the BentoML service (BentoML API routes are POST only and the
discovery endpoint is a GET). Request and response shapes mirror the specification's tables.
"""

from __future__ import annotations

import gc
import json
import logging
from contextlib import contextmanager
from typing import Any, Iterator

import msgspec
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ehr.assess import Assessment, assess, fill_from_store, missing_from_chart, reason
from ehr.cards import build_cards, not_assessed
from ehr.cds_auth import JwtVerifier
from ehr.cds_gather import DataUnavailable, gather
from ehr.cds_models import SERVICE_ID, CDSRequest, Feedback, discovery
from ehr.dependence import risk_ranges
from ehr import fhir_scan
from ehr.fhir_read import Problem
from ehr.prefill import STORE as PREFILL
from ehr.settings import EhrSettings

logger = logging.getLogger("pverisk.cds")


@contextmanager
def _gc_paused() -> Iterator[None]:
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _invalid(what: str, exc: ValidationError) -> JSONResponse:
    """400 naming each bad field (dotted path) and its problem, never the submitted value."""
    errors = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False)]
    return JSONResponse({"error": what, "detail": errors}, status_code=400)


def _read_request(raw: bytes) -> tuple[CDSRequest, dict[str, Any] | None]:
    """The request validated by its model and its prefetch: raw bytes per key on the fast path (ehr/fhir_scan.py),
    parsed on the tolerant one, taken for shapes the fast path does not expect (the model then names the bad
    member)."""
    try:
        fast = fhir_scan.decode_request(raw)
    except (msgspec.ValidationError, RecursionError):  # orjson names nesting too deep as invalid JSON (400)
        req = CDSRequest.model_validate(orjson.loads(raw))
        return req, req.prefetch
    return CDSRequest.model_validate(fast.members()), fast.prefetch or None  # UNSET and null: no prefetch


class _Hooks:
    """The CDS Hooks calls over the running service (`get_service()`: its model, settings and metrics)."""

    def __init__(self, get_service: Any) -> None:
        self.get_service = get_service
        self._verifier: JwtVerifier | None = None

    def settings(self) -> EhrSettings:
        return self.get_service().ehr_settings

    def features(self) -> tuple[str, ...] | None:
        served = getattr(self.get_service(), "served", None)
        return served.features if served is not None else None

    def base_url(self) -> str:
        """The configured public URL, or "" for links relative to this service: never the request's Host
        header, which is whatever the caller sends."""
        return (self.settings().public_url or "").rstrip("/")

    def authorise(self, request: Request, path: str) -> JSONResponse | None:
        if not self.settings().cds_jwt_required:
            return None
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return JSONResponse({"error": "missing bearer JWT"}, status_code=401)
        if self._verifier is None:
            self._verifier = JwtVerifier(self.settings())
        try:
            # the audience is the configured public URL (EhrSettings refuses JWT checks without one)
            self._verifier.verify(auth[7:].strip(), audience=f"{self.base_url()}/cds-services/{path}")
        except PermissionError as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        return None

    @staticmethod
    def reject(status: int, body: dict[str, Any], kinds: list[str]) -> JSONResponse:
        # one line per rejected request: the status and the problem kinds, no patient data
        logger.warning("cds rejected status=%d problems=%s", status, ",".join(sorted(set(kinds))) or "-")
        return JSONResponse(body, status_code=status)

    def assess_call(self, raw: bytes, risk: Any) -> Assessment | JSONResponse:
        """Parse, gather and assess one call; a JSONResponse when it is refused."""
        problems: list[Problem] = []
        # A parsed whole chart is about 100,000 small acyclic objects: garbage collection waits while
        # it is parsed and mapped, and the chart is freed by reference counting before collection
        # resumes (a collection would otherwise walk all of it).
        with _gc_paused():
            try:
                req, prefetch = _read_request(raw)
            except (orjson.JSONDecodeError, msgspec.DecodeError):
                return self.reject(400, {"error": "invalid CDS Hooks request", "detail": ["body: not valid JSON"]},
                                   ["json"])
            except ValidationError as exc:
                bad = _invalid("invalid CDS Hooks request", exc)
                return self.reject(400, json.loads(bad.body),
                                   [str(e["type"]) for e in exc.errors(include_input=False)])
            if req.hook != "patient-view":
                return self.reject(400, {"error": f"hook {req.hook[:40]!r} not supported; use patient-view"}, ["hook"])
            if risk is None:  # still loading: the service is alive but not ready
                return JSONResponse({"error": "model is loading; retry when /readyz answers 200"}, status_code=503)
            try:
                entries = gather(req, self.settings(), problems, self.features(), prefetch)
            except DataUnavailable as exc:
                return self.reject(412, {"error": str(exc)}, [exc.kind])
            a = assess(entries, risk, self.settings(), patient_id=req.context.patientId, problems=problems,
                       fhir_server=req.fhirServer)
            req.prefetch = None
            del entries
        return a

    async def call(self, request: Request) -> JSONResponse:
        if (denied := self.authorise(request, SERVICE_ID)) is not None:
            return denied
        risk = self.get_service().risk
        a = self.assess_call(await request.body(), risk)
        if isinstance(a, JSONResponse):
            return a
        if not a.identity_conflict and not a.declined and a.patient_id and missing_from_chart(a, risk):
            a = await self.complete_from_store(a, risk)
        if a.identity_conflict:
            return self.reject(412, {"error": f"prefetch refused: {a.identity_conflict}"}, ["identity"])
        label = f"{risk.identity.name} v{risk.identity.version} ({risk.identity.data_kind} data)"
        if a.declined == "unresolved_references":
            return self.reject(412, {"error": f"prefetch refused: {reason(a)}"}, ["unresolved_references"])
        if a.declined == "unreadable":  # fails closed, and says so: a silent empty answer would hide it
            logger.info("cds declined check=%s", a.declined)
            cards = not_assessed(reason(a), self.base_url(), label, risk.notice)
            return JSONResponse(cards.model_dump(exclude_none=True))
        if a.declined:
            # Not a candidate: no card at all (an info card on every chart open is noise).
            logger.info("cds declined check=%s", a.declined)
            return JSONResponse({"cards": []})
        settings = self.settings()
        token = PREFILL.put(a.record) if a.record else None
        ranges = risk_ranges(a.record, a.prediction["missing_inputs"], risk) if a.prediction else {}
        cards = build_cards(a.prediction, a.record, self.base_url(), a.missing_required, a.share,
                            settings.cds_min_input_share, risk.notice, label, a.mapped, risk.features,
                            prefill_token=token, from_store=a.from_store, ranges=ranges)
        return JSONResponse(cards.model_dump(exclude_none=True))

    async def complete_from_store(self, a: Assessment, risk: Any) -> Assessment:
        """The chart lacks inputs: fresh values from the online feature store, when one is set up
        (feature_store/online.py; the store's patient_id is the FHIR Patient id). A store that is down or
        does not know the patient leaves the card as the chart alone makes it."""
        import anyio

        from feature_store.online import StoreUnavailable, online_features, store_configured

        if not store_configured():
            return a
        online = online_features(risk.identity.name, risk.identity.version, tuple(risk.features))
        try:
            found = await anyio.to_thread.run_sync(online.lookup, a.patient_id)
        except StoreUnavailable:
            return a
        return fill_from_store(a, found.values, found.ages_days, risk, self.settings())

    async def feedback(self, request: Request) -> JSONResponse:
        if (denied := self.authorise(request, f"{SERVICE_ID}/feedback")) is not None:
            return denied
        try:
            fb = Feedback.model_validate_json(await request.body())
        except ValidationError as exc:
            return _invalid("invalid feedback", exc)
        for item in fb.feedback:
            reason = (item.overrideReason or {}).get("reason", {}).get("code") if item.overrideReason else None
            self.get_service().record_feedback(item.outcome, reason)
            # card uuid, outcome and reason code only: no patient data
            logger.info("cds feedback card=%s outcome=%s reason=%s", item.card, item.outcome, reason)
        return JSONResponse({"accepted": len(fb.feedback)})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """Last line of defence: JSON, not text/plain, and a log line with the error type and place only
    (an exception message can carry a submitted value)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}" if tb else "?"
    logger.error("cds internal error type=%s at=%s", type(exc).__name__, where)
    return JSONResponse({"error": "internal error; see the server log"}, status_code=500)


def make_app(get_service: Any) -> FastAPI:
    """The CDS Hooks app; `get_service()` returns the running service instance."""
    app = FastAPI(title="CDS Hooks", docs_url=None, redoc_url=None, openapi_url=None)
    hooks = _Hooks(get_service)

    @app.get("/")
    def get_discovery() -> dict[str, Any]:
        return discovery(hooks.features()).model_dump(exclude_none=True)

    app.add_exception_handler(Exception, _unexpected)
    app.add_api_route(f"/{SERVICE_ID}", hooks.call, methods=["POST"])
    app.add_api_route(f"/{SERVICE_ID}/feedback", hooks.feedback, methods=["POST"])
    return app
