"""The chart a CDS Hooks call is about: its prefetch, and what the prefetch lacks fetched from the
EHR's FHIR server with the bearer token it gave (one try each, same origin only, bounded pages)."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from ehr import fhir_scan
from ehr.cds_models import OPTIONAL_KEYS, CDSRequest, prefetch_templates
from ehr.fhir_read import Problem, bundle_entries
from ehr.settings import EhrSettings


# --- data gathering -------------------------------------------------------------------------
class DataUnavailable(Exception):
    """Required data could not be obtained: the spec's 412 Precondition Failed."""

    def __init__(self, message: str, kind: str = "prefetch") -> None:
        super().__init__(message)
        self.kind = kind  # for the one-line log: what failed, never which patient


Entries = list[tuple[str | None, dict[str, Any]]]


def _raw_entries(key: str, raw: msgspec.Raw, patient_id: str, problems: list[Problem]) -> Entries | None:
    """_prefetch_entries for a value still raw (the CDS Hooks body read by ehr/fhir_scan.py): only the resources
    the mapping reads are built."""
    kind, entries = fhir_scan.scan(raw, problems)
    if kind is None or kind == "OperationOutcome":
        return None
    if kind == "Bundle":
        return entries
    return _prefetch_entries(key, fhir_scan.resource(raw), patient_id, problems)


def _why(value: Any) -> str:
    """Why a prefetch value failed, for the 412 (never its content)."""
    if isinstance(value, msgspec.Raw):
        kind = fhir_scan.value_kind(value)
        if kind is None:
            return "absent" if bytes(value).strip() == b"null" else "not a FHIR resource of the expected type"
        value = {"resourceType": kind}
    if value is None:
        return "absent"
    if isinstance(value, dict) and value.get("resourceType") == "OperationOutcome":
        return "an OperationOutcome"
    return "not a FHIR resource of the expected type"


def _prefetch_entries(key: str, value: Any, patient_id: str, problems: list[Problem]) -> Entries | None:
    """The (fullUrl, resource) pairs of one prefetch value; None when the prefetch failed
    (absent, null, an OperationOutcome, not a resource): the caller fetches it or answers 412."""
    if isinstance(value, msgspec.Raw):
        return _raw_entries(key, value, patient_id, problems)
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
           features: list[str] | tuple[str, ...] | None = None, prefetch: dict[str, Any] | None = None) -> Entries:
    """Resources from prefetch (parsed, or raw from ehr/fhir_scan.py); keys that are absent or failed (null, an
    OperationOutcome, not a resource) are fetched from the FHIR server (one try each, with a timeout: no retry
    storm against the EHR), else the request gets a 412 naming them. A value sent again under another key
    (a whole chart under every key) is read once."""
    problems = problems if problems is not None else []
    templates = prefetch_templates(features)
    prefetch = prefetch if prefetch is not None else req.prefetch or {}
    entries, failed = _from_prefetch(templates, prefetch, req.context.patientId, problems)
    can_fetch = bool(req.fhirServer and req.fhirAuthorization)
    if not can_fetch and (optional := [k for k in failed if k in OPTIONAL_KEYS]):
        # the core keys are enough for a card: these inputs are read from what the other keys carry
        for k in optional:
            problems.append(Problem("absent", f"prefetch key {k!r}", "absent and no fhirServer to fetch it: "
                                    f"{', '.join(OPTIONAL_KEYS[k])} read only from the other keys"))
        failed = [k for k in failed if k not in OPTIONAL_KEYS]
    if not failed:
        return entries
    if not can_fetch:
        why = {k: _why(prefetch.get(k)) for k in failed}
        raise DataUnavailable("prefetch " + ", ".join(f"{k!r} {v}" for k, v in why.items())
                              + "; no fhirServer/fhirAuthorization to fetch them")
    return entries + _fetch_failed(req, settings, templates, failed, problems)


def _from_prefetch(templates: dict[str, str], prefetch: dict[str, Any], patient_id: str,
                   problems: list[Problem]) -> tuple[Entries, list[str]]:
    """The entries the prefetch gives, and the keys it failed to give (in template order)."""
    entries: Entries = []
    failed: list[str] = []
    read: list[msgspec.Raw] = []
    for k in templates:
        value = prefetch.get(k)
        if isinstance(value, msgspec.Raw) and any(len(r) == len(value) and r == value for r in read):
            continue  # the same bytes under another key: already read
        got = _prefetch_entries(k, value, patient_id, problems)
        if got is None:
            failed.append(k)
        else:
            entries += got
            if isinstance(value, msgspec.Raw):
                read.append(value)
    return entries, failed


def _fetch_failed(req: CDSRequest, settings: EhrSettings, templates: dict[str, str], failed: list[str],
                  problems: list[Problem]) -> Entries:
    """The failed keys fetched from the EHR's FHIR server with its token; a core key it cannot give is a 412,
    an optional one a problem."""
    entries: Entries = []
    headers = {"Authorization": f"Bearer {req.fhirAuthorization.access_token}", "Accept": "application/fhir+json"}
    base = req.fhirServer.rstrip("/")
    try:
        with httpx.Client(timeout=settings.cds_fhir_timeout_s, headers=headers) as client:
            for k in failed:
                path = templates[k].replace("{{context.patientId}}", req.context.patientId)
                try:
                    body = _fetch(client, f"{base}/{path}", k, base, settings.cds_fhir_max_pages)
                    got = _prefetch_entries(k, body, req.context.patientId, problems)
                    if got is None:
                        raise DataUnavailable(f"FHIR server answered no usable resource for prefetch key {k!r}",
                                              "fhir_server")
                except DataUnavailable as exc:
                    if k not in OPTIONAL_KEYS:
                        raise
                    # a server without that resource type (404) still serves the core keys: say what is missing
                    problems.append(Problem("absent", f"prefetch key {k!r}", f"{exc}: "
                                            f"{', '.join(OPTIONAL_KEYS[k])} read only from the other keys"))
                    continue
                entries += got
    except (httpx.InvalidURL, UnicodeError):  # not HTTPErrors: were 500s (found by benchmarks.bench_fuzz)
        raise DataUnavailable("fhirServer is not a usable http(s) URL", "fhir_server") from None
    except httpx.HTTPError as exc:
        raise DataUnavailable(f"FHIR server unreachable or too slow ({type(exc).__name__})", "fhir_server") from None
    return entries
