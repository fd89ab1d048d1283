"""CDS Hooks 2.0 service: discovery, the pve-progression-risk service and feedback.

A FastAPI app mounted on the BentoML service (BentoML API routes are POST only and the
discovery endpoint is a GET). Request and response shapes mirror the specification's tables.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx
import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from feature_store import contract as c
from feature_store.fhir_map import (
    LIVER_METASTASIS,
    LOCAL_SYSTEM,
    bundle_resources,
    map_resources,
    observation_queries,
)
from feature_store.record import patient_model
from serving.settings import ServingSettings

logger = logging.getLogger("pverisk.cds")
SERVICE_ID = "pve-progression-risk"
PRIMARY_SITE_CODES = [f"C18.{i}" for i in range(10)] + ["C19", "C20"]


# --- shapes from the CDS Hooks 2.0 specification ------------------------------------------
class FhirAuthorization(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None


class HookContext(BaseModel):
    model_config = ConfigDict(extra="allow")
    userId: str | None = None
    patientId: str
    encounterId: str | None = None


class CDSRequest(BaseModel):
    hook: str
    hookInstance: str
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: HookContext
    prefetch: dict[str, Any] | None = None


class Source(BaseModel):
    label: str
    url: str | None = None
    topic: dict[str, str] | None = None


class Link(BaseModel):
    label: str
    url: str
    type: Literal["absolute", "smart"] = "absolute"
    appContext: str | None = None


class OverrideReason(BaseModel):
    code: str
    system: str
    display: str


class Card(BaseModel):
    uuid: str = Field(default_factory=lambda: str(uuid.uuid4()))
    summary: str = Field(..., max_length=140)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    overrideReasons: list[OverrideReason] | None = None
    links: list[Link] | None = None


class CardsResponse(BaseModel):
    cards: list[Card]


class ServiceDefinition(BaseModel):
    hook: str
    title: str
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class Discovery(BaseModel):
    services: list[ServiceDefinition]


class FeedbackItem(BaseModel):
    card: str
    outcome: Literal["accepted", "overridden"]
    overrideReason: dict[str, Any] | None = None
    acceptedSuggestions: list[dict[str, Any]] | None = None
    outcomeTimestamp: str

    @field_validator("outcomeTimestamp")
    @classmethod
    def _iso(cls, v: str) -> str:
        datetime.fromisoformat(v.replace("Z", "+00:00"))
        return v


class Feedback(BaseModel):
    feedback: list[FeedbackItem]


OVERRIDE_REASONS = [
    OverrideReason(code="already-considered", system="urn:pverisk:override-reason", display="Already considered"),
    OverrideReason(code="data-incorrect", system="urn:pverisk:override-reason", display="Input data incorrect"),
    OverrideReason(code="not-a-pve-candidate", system="urn:pverisk:override-reason",
                   display="Not a PVE candidate"),
]


def prefetch_templates(features: list[str] | tuple[str, ...] | None = None) -> dict[str, str]:
    """Patient, the liver-metastasis and primary-site Conditions, and the Observations the
    contract maps for the served model's inputs (LOINC, plus the local code system for features
    without a standard code; a coarse input brings its fine sources)."""
    used = set(c.input_names(features)) if features is not None else set(c.feature_names())
    cond = [f"{s}|{code}" for s, code in sorted(LIVER_METASTASIS)]
    if "primary_side" in used:
        cond += [f"{c.ICD10}|{x}" for x in PRIMARY_SITE_CODES]
    obs = [f"{c.LOINC}|{code}" for name, codes in observation_queries().items() if name in used for code in codes]
    obs += [f"{LOCAL_SYSTEM}|{f.name}" for f in c.features()
            if f.name in used and f.name not in ("age_years", "sex", "primary_side")]
    return {
        "patient": "Patient/{{context.patientId}}",
        "conditions": "Condition?patient={{context.patientId}}&code=" + ",".join(cond),
        "observations": "Observation?patient={{context.patientId}}&code=" + ",".join(obs),
    }


def discovery(features: list[str] | tuple[str, ...] | None = None) -> Discovery:
    return Discovery(services=[ServiceDefinition(
        hook="patient-view", id=SERVICE_ID, title="PVE progression risk (research use only)",
        description="Risk that colorectal liver metastases progress between portal vein embolization and "
                    "resection, with the clinical scores and the main factors. Research use only.",
        prefetch=prefetch_templates(features),
        usageRequirements="Research use only. Needs the Patient, liver-metastasis Conditions and the "
                          "Observations in the prefetch templates (or FHIR server access).",
    )])


# --- security -------------------------------------------------------------------------------
class JwtVerifier:
    """Verify the EHR's JWT per CDS Hooks: iss allowlist, aud = this service's URL, exp, jti replay."""

    def __init__(self, settings: ServingSettings):
        self.settings = settings
        self._clients = {iss: jwt.PyJWKClient(url, cache_keys=True, timeout=2)
                         for iss, url in settings.cds_issuers.items()}
        self._seen: dict[str, float] = {}

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise PermissionError(f"malformed JWT: {exc}") from None
        iss = unverified.get("iss")
        if iss not in self._clients:
            raise PermissionError("JWT issuer is not allowed")
        try:
            key = self._clients[iss].get_signing_key_from_jwt(token).key
            claims = jwt.decode(token, key, algorithms=["RS384", "ES384", "RS256", "ES256"], audience=audience,
                                issuer=iss, options={"require": ["iss", "aud", "exp", "jti"]})
        except jwt.PyJWTError as exc:
            raise PermissionError(f"JWT rejected: {exc}") from None
        now = time.time()
        self._seen = {j: t for j, t in self._seen.items() if now - t < self.settings.cds_jti_window_s}
        if claims["jti"] in self._seen:
            raise PermissionError("JWT replayed (jti seen before)")
        self._seen[claims["jti"]] = now
        return claims


# --- data gathering -------------------------------------------------------------------------
class DataUnavailable(Exception):
    """Required data could not be obtained: the spec's 412 Precondition Failed."""


def _as_resources(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        return []
    return bundle_resources(value) if value.get("resourceType") == "Bundle" else [value]


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host.lower(), url.port or default


def _next_link(bundle: Any) -> str | None:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return None
    return next((link.get("url") for link in bundle.get("link") or []
                 if isinstance(link, dict) and link.get("relation") == "next" and link.get("url")), None)


def _search(client: httpx.Client, base: str, path: str, what: str, max_pages: int) -> list[dict[str, Any]]:
    """One read or search, following Bundle.link "next" for at most `max_pages` pages, and only to
    the configured server's origin (the bearer token goes nowhere else)."""
    origin = _origin(httpx.URL(base))
    url = httpx.URL(f"{base}/{path}")
    resources: list[dict[str, Any]] = []
    for _ in range(max_pages):
        r = client.get(url)
        if r.status_code != 200:
            raise DataUnavailable(f"FHIR server answered {r.status_code} for {what}")
        try:
            body = r.json()
        except ValueError:
            raise DataUnavailable(f"FHIR server answered with invalid JSON for {what}") from None
        resources += _as_resources(body)
        href = _next_link(body)
        if href is None:
            return resources
        url = url.join(href)  # absolute per FHIR; a relative link resolves against the current page
        if _origin(url) != origin:
            raise DataUnavailable(f"FHIR search for {what}: next page on another origin, not followed")
    # scoring a truncated history could pick a stale value as the latest
    raise DataUnavailable(f"FHIR search for {what} has more than {max_pages} pages")


def gather(req: CDSRequest, settings: ServingSettings, features: list[str] | tuple[str, ...] | None = None
           ) -> list[dict[str, Any]]:
    """Resources from prefetch; what is absent is fetched from the FHIR server (one try each,
    with a timeout: no retry storm against the EHR; search results paged up to
    `cds_fhir_max_pages`)."""
    templates = prefetch_templates(features)
    prefetch = req.prefetch or {}
    resources: list[dict[str, Any]] = []
    missing = [k for k in templates if prefetch.get(k) is None]
    for k in templates:
        resources += _as_resources(prefetch.get(k))
    if not missing:
        return resources
    if not req.fhirServer or not req.fhirAuthorization:
        raise DataUnavailable(f"prefetch {missing} absent and no fhirServer/fhirAuthorization to fetch them")
    headers = {"Authorization": f"Bearer {req.fhirAuthorization.access_token}", "Accept": "application/fhir+json"}
    base = req.fhirServer.rstrip("/")
    try:
        with httpx.Client(timeout=settings.cds_fhir_timeout_s, headers=headers) as client:
            for k in missing:
                path = templates[k].replace("{{context.patientId}}", req.context.patientId)
                resources += _search(client, base, path, k, settings.cds_fhir_max_pages)
    except httpx.HTTPError as exc:
        raise DataUnavailable(f"FHIR server unreachable or too slow ({type(exc).__name__})") from None
    return resources


def clean_record(record: dict[str, Any], features: list[str] | tuple[str, ...] | None = None
                 ) -> tuple[dict[str, Any], list[str]]:
    """Keep the values the contract accepts; report (without values) the ones it refuses."""
    model = patient_model(tuple(features) if features is not None else None)
    notes: list[str] = []
    fields = dict(record)
    for _ in range(len(fields) + 1):
        try:
            model.model_validate(fields)
            break
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"] and e["type"] != "missing"}
            if not bad:
                break
            for name in bad:
                notes.append(f"{name}: {next(e['msg'] for e in exc.errors() if e['loc'] and e['loc'][0] == name)}; ignored")
                fields.pop(name, None)
    return fields, notes


@dataclass
class Assessment:
    prediction: dict[str, Any] | None
    record: dict[str, Any]
    notes: list[str]
    share: float
    missing_required: list[str]
    basis: list[str]
    patient_id: str | None


def assess(resources: list[dict[str, Any]], risk: Any, settings: ServingSettings,
           decision: datetime | None = None) -> Assessment:
    """FHIR resources -> contract record -> a prediction, or None when too little is known.
    Shared by the CDS service and POST /v1/predict/fhir."""
    mapped = map_resources(resources, decision=decision, max_age_days=settings.cds_max_observation_age_days)
    record, refused = clean_record(mapped.record, risk.features)
    derived, _ = risk.derive({k: [v] for k, v in record.items()})
    present = [f for f in risk.features if not c.is_missing(derived.get(f, [None])[0])]
    share = len(present) / len(risk.features)
    missing_required = [f for f in risk.required if f not in present]
    enough = not missing_required and share >= settings.cds_min_input_share
    return Assessment(risk.score_record(record) if enough else None, record, mapped.notes + refused, share,
                      missing_required, mapped.basis, mapped.patient_id)


def _pct(p: float) -> str:
    return f"{100 * p:.0f}%"


def build_cards(prediction: dict[str, Any] | None, mapped_record: dict[str, Any], notes: list[str],
                base_url: str, missing_required: list[str], share: float, min_share: float,
                notice: str, model_label: str, features: list[str] | None = None) -> CardsResponse:
    source = Source(label=model_label, url=f"{base_url}/v1/model")
    links = [Link(label="Model card and metrics", url=f"{base_url}/v1/model")]
    if prediction is None:
        missing = missing_required or [f for f in (features or c.feature_names()) if mapped_record.get(f) is None]
        detail = ("Not enough data to estimate the risk responsibly "
                  f"({_pct(share)} of inputs available; at least {_pct(min_share)} and all required inputs needed).\n\n"
                  "**Missing inputs:** " + ", ".join(f"`{m}`" for m in missing) + f"\n\n_{notice}_")
        return CardsResponse(cards=[Card(summary="PVE progression risk: not enough data to estimate (research use)",
                                         detail=detail, indicator="info", source=source, links=links)])
    p, band = prediction["probability"], prediction["risk_band"]
    indicator = {"low": "info", "intermediate": "warning", "high": "critical"}[band]
    s = prediction["clinical_scores"]
    factors = "\n".join(f"- `{f['feature']}` = {f['value']}: {f['direction']} ({f['contribution_log_odds']:+.2f} log-odds)"
                        for f in prediction["top_factors"])
    detail = "\n".join([
        f"**Estimated risk of liver progression between PVE and resection: {_pct(p)} ({band}).** "
        f"Bands: low < {_pct(prediction['band_thresholds']['low_below'])}, high >= "
        f"{_pct(prediction['band_thresholds']['high_from'])}.",
        "", "**Top factors**", factors or "- none",
        "", "**Clinical scores** (built for survival after resection, shown for comparison)",
        f"- Fong CRS: {s['fong_crs']}; GAME: {s['game_score']} ({s['game_group']}); m-CRS: {s['m_crs']}; "
        f"TBS: {s['tumour_burden_score']}",
        "", "**Missing inputs:** " + (", ".join(f"`{m}`" for m in prediction["missing_inputs"]) or "none"),
        *(["", "**Data notes:** " + "; ".join(notes)] if notes else []),
        *(["", f"**{prediction['question_note']}**"] if prediction.get("question_note") else []),
        "", f"_{notice}_",
    ])
    summary = f"PVE progression risk {_pct(p)} ({band}) - research use only"
    return CardsResponse(cards=[Card(summary=summary, detail=detail, indicator=indicator, source=source,
                                     links=links, overrideReasons=OVERRIDE_REASONS)])


def _invalid(what: str, exc: ValidationError) -> JSONResponse:
    """400 naming each bad field (dotted path) and its problem, never the submitted value."""
    errors = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False)]
    return JSONResponse({"error": what, "detail": errors}, status_code=400)


def make_app(get_service: Any) -> FastAPI:
    """The CDS Hooks app; `get_service()` returns the running service instance."""
    app = FastAPI(title="CDS Hooks", docs_url=None, redoc_url=None, openapi_url=None)
    state: dict[str, Any] = {}

    def settings() -> ServingSettings:
        return get_service().settings

    def verifier() -> JwtVerifier:
        if "jwt" not in state:
            state["jwt"] = JwtVerifier(settings())
        return state["jwt"]

    def base_url(request: Request) -> str:
        return settings().public_url or str(request.base_url).rstrip("/")

    def authorise(request: Request, path: str) -> JSONResponse | None:
        if not settings().cds_jwt_required:
            return None
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return JSONResponse({"error": "missing bearer JWT"}, status_code=401)
        try:
            verifier().verify(auth[7:].strip(), audience=f"{base_url(request)}/cds-services/{path}")
        except PermissionError as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        return None

    def features() -> tuple[str, ...] | None:
        served = getattr(get_service(), "served", None)
        return served.features if served is not None else None

    @app.get("/")
    def get_discovery() -> dict[str, Any]:
        return discovery(features()).model_dump(exclude_none=True)

    @app.post(f"/{SERVICE_ID}")
    async def call_service(request: Request) -> JSONResponse:
        if (denied := authorise(request, SERVICE_ID)) is not None:
            return denied
        try:
            req = CDSRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return _invalid("invalid CDS Hooks request", exc)
        if req.hook != "patient-view":
            return JSONResponse({"error": f"hook {req.hook!r} not supported; use patient-view"}, status_code=400)
        risk = get_service().risk
        if risk is None:  # still loading: the service is alive but not ready
            return JSONResponse({"error": "model is loading; retry when /readyz answers 200"}, status_code=503)
        try:
            resources = gather(req, settings(), features())
        except DataUnavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=412)
        a = assess(resources, risk, settings())
        label = f"{risk.identity.name} v{risk.identity.version} ({risk.identity.data_kind} data)"
        cards = build_cards(a.prediction, a.record, a.notes, base_url(request), a.missing_required, a.share,
                            settings().cds_min_input_share, risk.notice, label, risk.features)
        return JSONResponse(cards.model_dump(exclude_none=True))

    @app.post(f"/{SERVICE_ID}/feedback")
    async def feedback(request: Request) -> JSONResponse:
        if (denied := authorise(request, f"{SERVICE_ID}/feedback")) is not None:
            return denied
        try:
            fb = Feedback.model_validate_json(await request.body())
        except ValidationError as exc:
            return _invalid("invalid feedback", exc)
        for item in fb.feedback:
            reason = (item.overrideReason or {}).get("reason", {}).get("code") if item.overrideReason else None
            get_service().record_feedback(item.outcome, reason)
            # card uuid, outcome and reason code only: no patient data
            logger.info("cds feedback card=%s outcome=%s reason=%s", item.card, item.outcome, reason)
        return JSONResponse({"accepted": len(fb.feedback)})

    return app

