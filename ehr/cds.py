"""CDS Hooks 2.0 service: discovery, the pve-progression-risk service and feedback.

A FastAPI app mounted on the BentoML service (BentoML API routes are POST only and the
discovery endpoint is a GET). Request and response shapes mirror the specification's tables.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from contextlib import contextmanager
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator, Literal

import httpx
import jwt
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from feature_store import contract as c
from feature_store.codes import LIVER_METASTASIS_CODES, PRIMARY_SITE_ICD10, PRIMARY_SITE_SNOMED
from feature_store.columns import is_missing
from ehr.fhir_map import (
    BOUND,
    IMPRECISE,
    LOCAL_SYSTEM,
    MALFORMED,
    OTHER_PATIENT,
    REFUSED,
    STALE,
    UNIT,
    Mapped,
    Problem,
    bundle_entries,
    map_chart,
    observation_queries,
)
from feature_store.record import patient_model
from ehr.prefill import STORE as PREFILL
from ehr.settings import EhrSettings

logger = logging.getLogger("pverisk.cds")
SERVICE_ID = "pve-progression-risk"


# --- shapes from the CDS Hooks 2.0 specification ------------------------------------------
class FhirAuthorization(BaseModel):
    model_config = ConfigDict(strict=True)  # the JSON types documented, no coercion
    # RFC 6750 b64token: it goes into an HTTP header (a 500 once, for a token HTTP cannot carry)
    access_token: str = Field(..., pattern=r"^[A-Za-z0-9\-._~+/]+=*$")
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None


class HookContext(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    userId: str | None = None
    # a FHIR id: it goes into the prefetch queries' URLs (found by benchmarks.bench_fuzz: a 500 once)
    patientId: str = Field(..., pattern=r"^[A-Za-z0-9\-.]{1,64}$")
    encounterId: str | None = None


class CDSRequest(BaseModel):
    model_config = ConfigDict(strict=True)  # the JSON types documented, no coercion
    # any string parses (another hook gets a 400 that says which one is served); documented as the one
    hook: str = Field(..., json_schema_extra={"enum": ["patient-view"]})
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
    model_config = ConfigDict(strict=True)  # the JSON types documented, no coercion
    card: str
    outcome: Literal["accepted", "overridden"]
    overrideReason: dict[str, Any] | None = None
    acceptedSuggestions: list[dict[str, Any]] | None = None
    outcomeTimestamp: str = Field(..., json_schema_extra={"format": "date-time"})

    @field_validator("outcomeTimestamp")
    @classmethod
    def _iso(cls, v: str) -> str:
        datetime.fromisoformat(v.replace("Z", "+00:00"))
        return v


class Feedback(BaseModel):
    model_config = ConfigDict(strict=True)  # the JSON types documented, no coercion
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
    cond = [f"{x.system}|{x.code}" for x in LIVER_METASTASIS_CODES]
    if "primary_side" in used:
        cond += [f"{system}|{x}" for system in (c.ICD10, c.ICD10CM) for x in PRIMARY_SITE_ICD10]
        cond += [f"{c.SNOMED}|{x}" for x in PRIMARY_SITE_SNOMED]
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

    def __init__(self, settings: EhrSettings):
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

    def __init__(self, message: str, kind: str = "prefetch") -> None:
        super().__init__(message)
        self.kind = kind  # for the one-line log: what failed, never which patient


Entries = list[tuple[str | None, dict[str, Any]]]


def _prefetch_entries(key: str, value: Any, patient_id: str, problems: list[Problem]) -> Entries | None:
    """The (fullUrl, resource) pairs of one prefetch value; None when the prefetch failed
    (absent, null, an OperationOutcome, not a resource): the caller fetches it or answers 412."""
    if not isinstance(value, dict) or value.get("resourceType") == "OperationOutcome":
        return None
    if value.get("resourceType") == "Bundle":
        return bundle_entries(value, problems)
    if key == "patient":
        if value.get("resourceType") != "Patient":
            return None
        if value.get("id") is None:
            # Fetched as Patient/{{context.patientId}}: that is its identity even when the EHR leaves the id out.
            value = {**value, "id": patient_id}
    return [(None, value)]


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host.lower(), url.port or default


def _fetch(client: httpx.Client, url: str, key: str, base: str, max_pages: int) -> Any:
    """One prefetch query from the FHIR server, following a searchset's `next` links for at most
    `max_pages` pages and only on the server's own origin (the bearer token goes nowhere else).
    More pages, or a page elsewhere, is a 412: scoring a truncated history could pick a stale
    value as the latest."""
    origin = _origin(httpx.URL(base))
    target = httpx.URL(url)
    pages: list[Any] = []
    for _ in range(max_pages):
        r = client.get(target)
        if r.status_code != 200:
            raise DataUnavailable(f"FHIR server answered {r.status_code} for prefetch key {key!r}", "fhir_server")
        try:
            body = r.json()
        except ValueError:
            raise DataUnavailable(f"FHIR server answered with no JSON for prefetch key {key!r}", "fhir_server") from None
        if not isinstance(body, dict) or body.get("resourceType") == "OperationOutcome":
            raise DataUnavailable(f"FHIR server answered an OperationOutcome for prefetch key {key!r}", "fhir_server")
        pages.append(body)
        links = body.get("link") if body.get("resourceType") == "Bundle" else None
        nxt = next((ln.get("url") for ln in links or [] if isinstance(ln, dict) and ln.get("relation") == "next"), None)
        if not isinstance(nxt, str) or not nxt:
            break
        target = target.join(nxt)  # absolute per FHIR; a relative link resolves against the current page
        if _origin(target) != origin:
            raise DataUnavailable(f"FHIR search for prefetch key {key!r}: next page on another origin, not followed",
                                  "fhir_server")
    else:
        raise DataUnavailable(f"FHIR search for prefetch key {key!r} has more than {max_pages} pages", "fhir_server")
    if len(pages) == 1:
        return pages[0]
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [e for p in pages for e in (p.get("entry") or []) if isinstance(p.get("entry"), list)]}


def gather(req: CDSRequest, settings: EhrSettings, problems: list[Problem] | None = None,
           features: list[str] | tuple[str, ...] | None = None) -> Entries:
    """Resources from prefetch; keys that are absent or failed (null, an OperationOutcome, not a
    resource) are fetched from the FHIR server (one try each, with a timeout: no retry storm
    against the EHR), else the request gets a 412 naming them."""
    problems = problems if problems is not None else []
    templates = prefetch_templates(features)
    prefetch = req.prefetch or {}
    entries: Entries = []
    failed: list[str] = []
    for k in templates:
        got = _prefetch_entries(k, prefetch.get(k), req.context.patientId, problems)
        if got is None:
            failed.append(k)
        else:
            entries += got
    if not failed:
        return entries
    if not req.fhirServer or not req.fhirAuthorization:
        why = {k: ("absent" if prefetch.get(k) is None else "an OperationOutcome"
                   if isinstance(prefetch.get(k), dict) and prefetch[k].get("resourceType") == "OperationOutcome"
                   else "not a FHIR resource of the expected type") for k in failed}
        raise DataUnavailable("prefetch " + ", ".join(f"{k!r} {v}" for k, v in why.items())
                              + "; no fhirServer/fhirAuthorization to fetch them")
    headers = {"Authorization": f"Bearer {req.fhirAuthorization.access_token}", "Accept": "application/fhir+json"}
    base = req.fhirServer.rstrip("/")
    try:
        with httpx.Client(timeout=settings.cds_fhir_timeout_s, headers=headers) as client:
            for k in failed:
                path = templates[k].replace("{{context.patientId}}", req.context.patientId)
                body = _fetch(client, f"{base}/{path}", k, base, settings.cds_fhir_max_pages)
                got = _prefetch_entries(k, body, req.context.patientId, problems)
                if got is None:
                    raise DataUnavailable(f"FHIR server answered no usable resource for prefetch key {k!r}",
                                          "fhir_server")
                entries += got
    except (httpx.InvalidURL, UnicodeError):  # not HTTPErrors: were 500s (found by benchmarks.bench_fuzz)
        raise DataUnavailable("fhirServer is not a usable http(s) URL", "fhir_server") from None
    except httpx.HTTPError as exc:
        raise DataUnavailable(f"FHIR server unreachable or too slow ({type(exc).__name__})", "fhir_server") from None
    return entries


def refused_fields(record: dict[str, Any], features: list[str] | tuple[str, ...] | None = None
                   ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Keep the values the contract accepts; (feature, problem) for the ones it refuses, no values."""
    model = patient_model(tuple(features) if features is not None else None)
    refused: list[tuple[str, str]] = []
    fields = dict(record)
    for _ in range(len(fields) + 1):
        try:
            model.model_validate(fields)
            break
        except ValidationError as exc:
            errors = exc.errors(include_input=False)
            bad = {str(e["loc"][0]) for e in errors if e["loc"] and e["type"] != "missing"}
            if not bad:
                break
            for name in sorted(bad):
                refused.append((name, next(e["msg"] for e in errors if e["loc"] and e["loc"][0] == name)))
                fields.pop(name, None)
    return fields, refused


# Applicability checks, by the name the log line uses.
NOT_APPLICABLE = {
    "deceased": "the patient is deceased",
    "no_liver_metastasis": "no active liver-metastasis Condition in the chart",
}


@dataclass
class Assessment:
    prediction: dict[str, Any] | None
    record: dict[str, Any]
    notes: list[str]
    share: float
    missing_required: list[str]
    basis: list[str]
    patient_id: str | None
    mapped: Mapped | None = None
    # Why no risk is given at all: an identity conflict, or an applicability check that declined.
    identity_conflict: str | None = None
    declined: str | None = None
    # Inputs the chart lacked that the online feature store had, fresh: name -> age in days.
    from_store: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return self.mapped.counts() if self.mapped else {}


def assess(resources: list[dict[str, Any]] | Entries, risk: Any, settings: EhrSettings,
           decision: datetime | None = None, patient_id: str | None = None,
           problems: list[Problem] | None = None) -> Assessment:
    """FHIR resources -> contract record -> a prediction, or None when too little is known, the
    chart is someone else's, or the patient is not a candidate (deceased, no liver metastasis).
    Shared by the CDS service and POST /v1/predict/fhir."""
    entries = [e if isinstance(e, tuple) else (None, e) for e in resources]
    mapped = map_chart(entries, decision=decision, max_age_days=settings.cds_max_observation_age_days,
                       patient_id=patient_id, problems=problems)
    if mapped.identity_conflict:
        return Assessment(None, {}, mapped.notes, 0.0, [], [], mapped.patient_id, mapped,
                          identity_conflict=mapped.identity_conflict)
    declined = "deceased" if mapped.deceased else None if mapped.liver_metastasis else "no_liver_metastasis"
    record, refused = refused_fields(mapped.record, risk.features)
    for name, msg in refused:
        mapped.problems.append(Problem(REFUSED, "input", f"{msg}; refused", name))
    return score_assessment(Assessment(None, record, mapped.notes, 0.0, [], mapped.basis, mapped.patient_id, mapped,
                                       declined=declined), risk, settings)


def score_assessment(a: Assessment, risk: Any, settings: EhrSettings) -> Assessment:
    """Score a.record when enough of it is known (the served model's own inputs decide; a coarse input
    counts when its fine value is there)."""
    derived, _ = risk.derive({k: [v] for k, v in a.record.items()})
    present = [f for f in risk.features if not is_missing(derived[f][0] if f in derived else None)]
    a.share = len(present) / len(risk.features)
    a.missing_required = [f for f in risk.required if f not in present]
    enough = not a.declined and not a.missing_required and a.share >= settings.cds_min_input_share
    a.prediction = risk.score_record(a.record) if enough else None
    return a


def missing_from_chart(a: Assessment, risk: Any) -> list[str]:
    """The served model's inputs (and fine sources) the chart did not give."""
    return [f for f in c.input_names(risk.features) if is_missing(a.record.get(f))]


def fill_from_store(a: Assessment, values: dict[str, Any], ages: dict[str, float], risk: Any,
                    settings: EhrSettings) -> Assessment:
    """Inputs the chart lacked, taken from the online feature store's fresh values, then scored again."""
    wanted = missing_from_chart(a, risk)
    taken = {f: values[f] for f in wanted if f in values}
    if not taken:
        return a
    a.record = {**a.record, **taken}
    a.from_store = {f: ages[f] for f in taken}
    return score_assessment(a, risk, settings)


def _pct(p: float) -> str:
    return f"{100 * p:.0f}%"


# Decimals a clinician reads a value at, by contract unit (a lab prints bilirubin 1.1, not 1.1228).
DECIMALS_BY_UNIT = {"years": 0, "count": 0, "cycles": 0, "10^9/L": 0, "%": 0, "months": 0, "weeks": 0,
                    "ratio": 1, "mg/dL": 1, "g/dL": 1, "ng/mL": 1, "cm": 1}


def clinical_value(name: str, value: Any) -> str:
    """A feature's value as a clinician reads it: rounded to clinical precision, with its unit."""
    if isinstance(value, bool) or value is None:
        # a missing input the model routed down its learned default branch
        return "yes" if value is True else "no" if value is False else "missing"
    if isinstance(value, (int, float)):
        f = c.BY_NAME.get(name)
        unit = f.unit if f else None
        decimals = DECIMALS_BY_UNIT.get(unit or "", 2)
        text = f"{value:.{decimals}f}"
        if unit == "%":
            return f"{text}%"
        return f"{text} {unit}" if unit and unit not in ("count", "ratio") else text
    return str(value).replace("_", " ")


def _score_line(s: dict[str, Any]) -> str | None:
    """The clinical scores that could be computed; absent ones are left out, not printed as None."""
    parts = []
    if s.get("fong_crs") is not None:
        parts.append(f"Fong CRS {s['fong_crs']:.0f}")
    if s.get("game_score") is not None:
        parts.append(f"GAME {s['game_score']:.0f}" + (f" ({s['game_group']})" if s.get("game_group") else ""))
    if s.get("m_crs") is not None:
        parts.append(f"m-CRS {s['m_crs']:.0f}")
    if s.get("tumour_burden_score") is not None:
        parts.append(f"TBS {s['tumour_burden_score']:.1f}")
    return "; ".join(parts) or None


PROBLEM_LABELS = {
    STALE: "stale", UNIT: "unit not understood", BOUND: "reported as a bound (<, >), not a value",
    OTHER_PATIENT: "about another patient", REFUSED: "refused by the contract",
}


def problem_summary(mapped: Mapped | None, max_age_days: int) -> str | None:
    """Counts of data problems per kind (the full list is in the API response, not the card)."""
    if mapped is None or not mapped.problems:
        return None
    counts = mapped.counts()
    parts = []
    for kind, label in PROBLEM_LABELS.items():
        n = counts.pop(kind, 0)
        if n:
            extra = f" (older than {max_age_days} days)" if kind == STALE else ""
            parts.append(f"{n} {label}{extra}")
    counts.pop(IMPRECISE, None)  # informative only: the value was used
    other = sum(counts.values())
    if other:
        parts.append(f"{other} other (malformed, undated, unknown code or after the decision date)")
    refused = sorted({p.feature for p in mapped.problems if p.kind == REFUSED and p.feature})
    text = "**Data problems:** " + ("; ".join(parts) if parts else "none that changed an input")
    if refused:
        text += ". Refused: " + ", ".join(f"`{r}`" for r in refused)
    return text


def missing_explained(names: list[str], mapped: Mapped | None) -> str:
    """Missing inputs, each with why when the chart had it (stale, refused, unit, bound)."""
    out = []
    for name in names:
        kinds = [k for k in (mapped.reasons(name) if mapped else []) if k in PROBLEM_LABELS or k == MALFORMED]
        why = {STALE: "present but stale", REFUSED: "refused", UNIT: "unit not understood", BOUND: "only a bound",
               MALFORMED: "unreadable"}
        reasons = [why[k] for k in kinds if k in why]
        refusal = next((p.message.removesuffix("; refused") for p in mapped.problems
                        if p.kind == REFUSED and p.feature == name), None) if mapped else None
        if refusal:  # say why the contract refused it (the allowed range), never the value
            reasons = [f"refused: {refusal}" if r == "refused" else r for r in reasons]
        out.append(f"`{name}`" + (f" ({', '.join(reasons)})" if reasons else ""))
    return ", ".join(out) or "none"


def build_cards(prediction: dict[str, Any] | None, mapped_record: dict[str, Any], notes: list[str],
                base_url: str, missing_required: list[str], share: float, min_share: float,
                notice: str, model_label: str, mapped: Mapped | None = None, max_age_days: int = 120,
                features: list[str] | None = None, prefill_token: str | None = None,
                from_store: dict[str, float] | None = None) -> CardsResponse:
    source = Source(label=model_label, url=f"{base_url}/model")
    links = [Link(label="Model card and metrics", url=f"{base_url}/model")]
    if prefill_token:
        # the token in the fragment, never the patient's values: see ehr/prefill.py
        links.insert(0, Link(label="Open in the risk calculator (prefilled; link valid 15 minutes)",
                             url=f"{base_url}/#prefill={prefill_token}"))
    summary_line = problem_summary(mapped, max_age_days)
    if from_store:
        stored = ", ".join(f"`{f}` = {clinical_value(f, mapped_record.get(f))} (recorded {age:.0f} days ago)"
                           for f, age in from_store.items())
        store_line = f"**From the feature store** (not in the chart; fresh within each source's TTL): {stored}"
        summary_line = f"{store_line}\n\n{summary_line}" if summary_line else store_line
    if prediction is None:
        inputs = features or c.feature_names()
        missing = missing_required or [f for f in inputs if f not in mapped_record]
        stale_or_refused = [f for f in inputs if f not in mapped_record and f not in missing
                            and mapped and set(mapped.reasons(f)) & {STALE, REFUSED, UNIT, BOUND}]
        detail = "\n".join([
            "Not enough data to estimate the risk responsibly "
            f"({_pct(share)} of inputs available; at least {_pct(min_share)} and all required inputs needed).",
            "", "**Missing required inputs:** " + missing_explained(missing, mapped),
            *(["", "**Also not usable:** " + missing_explained(stale_or_refused, mapped)] if stale_or_refused else []),
            *(["", summary_line] if summary_line else []),
            "", f"_{notice}_",
        ])
        return CardsResponse(cards=[Card(summary="PVE progression risk: not enough data to estimate (research use)",
                                         detail=detail, indicator="info", source=source, links=links)])
    p, band = prediction["probability"], prediction["risk_band"]
    indicator = {"low": "info", "intermediate": "warning", "high": "critical"}[band]
    factors = "\n".join(f"- `{f['feature']}` = {clinical_value(f['feature'], f['value'])}: {f['direction']} "
                        f"({f['contribution_log_odds']:+.2f} log-odds)" for f in prediction["top_factors"])
    scores = _score_line(prediction["clinical_scores"])
    detail = "\n".join([
        f"**Estimated risk of {prediction.get('predicted_outcome', 'liver progression between PVE and resection')}: "
        f"{_pct(p)} ({band}).** "
        f"Bands: low < {_pct(prediction['band_thresholds']['low_below'])}, high >= "
        f"{_pct(prediction['band_thresholds']['high_from'])}.",
        "", "**Top factors**", factors or "- none",
        *(["", "**Clinical scores** (built for survival after resection, shown for comparison): " + scores]
          if scores else []),
        "", "**Missing inputs:** " + missing_explained(prediction["missing_inputs"], mapped),
        *(["", summary_line] if summary_line else []),
        *(["", f"**{prediction['question_note']}**"] if prediction.get("question_note") else []),
        "", f"_{notice}_",
    ])
    summary = f"PVE progression risk {_pct(p)} ({band}) - research use only"
    return CardsResponse(cards=[Card(summary=summary, detail=detail, indicator=indicator, source=source,
                                     links=links, overrideReasons=OVERRIDE_REASONS)])


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


def make_app(get_service: Any) -> FastAPI:
    """The CDS Hooks app; `get_service()` returns the running service instance."""
    app = FastAPI(title="CDS Hooks", docs_url=None, redoc_url=None, openapi_url=None)
    state: dict[str, Any] = {}

    def settings() -> EhrSettings:
        return get_service().ehr_settings

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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Last line of defence: JSON, not text/plain, and a log line with the error type and place
        # only (an exception message can carry a submitted value).
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}" if tb else "?"
        logger.error("cds internal error type=%s at=%s", type(exc).__name__, where)
        return JSONResponse({"error": "internal error; see the server log"}, status_code=500)

    def reject(status: int, body: dict[str, Any], kinds: list[str]) -> JSONResponse:
        # one line per rejected request: the status and the problem kinds, no patient data
        logger.warning("cds rejected status=%d problems=%s", status, ",".join(sorted(set(kinds))) or "-")
        return JSONResponse(body, status_code=status)

    @app.post(f"/{SERVICE_ID}")
    async def call_service(request: Request) -> JSONResponse:
        if (denied := authorise(request, SERVICE_ID)) is not None:
            return denied
        raw = await request.body()
        risk = get_service().risk
        problems: list[Problem] = []
        # A parsed whole chart is about 100,000 small acyclic objects: garbage collection waits while
        # it is parsed and mapped, and the chart is freed by reference counting before collection
        # resumes (a collection would otherwise walk all of it).
        with _gc_paused():
            try:
                # orjson then a shallow model: a 1.5 MB prefetch parses in a few ms
                req = CDSRequest.model_validate(orjson.loads(raw))
            except orjson.JSONDecodeError:
                return reject(400, {"error": "invalid CDS Hooks request", "detail": ["body: not valid JSON"]},
                              ["json"])
            except ValidationError as exc:
                bad = _invalid("invalid CDS Hooks request", exc)
                return reject(400, json.loads(bad.body), [str(e["type"]) for e in exc.errors(include_input=False)])
            if req.hook != "patient-view":
                return reject(400, {"error": f"hook {req.hook[:40]!r} not supported; use patient-view"}, ["hook"])
            if risk is None:  # still loading: the service is alive but not ready
                return JSONResponse({"error": "model is loading; retry when /readyz answers 200"}, status_code=503)
            try:
                entries = gather(req, settings(), problems, features())
            except DataUnavailable as exc:
                return reject(412, {"error": str(exc)}, [exc.kind])
            a = assess(entries, risk, settings(), patient_id=req.context.patientId, problems=problems)
            req.prefetch = None
            del entries
        if not a.identity_conflict and not a.declined and a.patient_id and missing_from_chart(a, risk):
            a = await _complete_from_store(a, risk)
        if a.identity_conflict:
            return reject(412, {"error": f"prefetch refused: {a.identity_conflict}"}, ["identity"])
        if a.declined:
            # Not a candidate: no card at all (an info card on every chart open is noise).
            logger.info("cds declined check=%s", a.declined)
            return JSONResponse({"cards": []})
        label = f"{risk.identity.name} v{risk.identity.version} ({risk.identity.data_kind} data)"
        token = PREFILL.put(a.record) if a.record else None
        cards = build_cards(a.prediction, a.record, a.notes, base_url(request), a.missing_required, a.share,
                            settings().cds_min_input_share, risk.notice, label, a.mapped,
                            settings().cds_max_observation_age_days, risk.features, prefill_token=token,
                            from_store=a.from_store)
        return JSONResponse(cards.model_dump(exclude_none=True))

    async def _complete_from_store(a: Assessment, risk: Any) -> Assessment:
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
        return fill_from_store(a, found.values, found.ages_days, risk, settings())

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

