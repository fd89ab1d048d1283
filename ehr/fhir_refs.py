"""Whose is a resource: its `subject`/`patient` Reference resolved against the chart's fullUrls and the
FHIR server's base, as FHIR's Bundle resolution rules say. A logical id alone is not identity: the
same id on another server (`https://other.example/fhir/Patient/<id>`) is another patient, and a
`urn:uuid:` that no entry of the chart carries resolves to nobody."""

from __future__ import annotations

from typing import Any

TARGET, OTHER, UNRESOLVED = "target", "other", "unresolved"


def _norm(url: str) -> str:
    """An absolute URL compared case-insensitively on scheme and host, without a default port, a trailing
    slash or a version (`/_history/n`)."""
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    host = host.lower()
    if (scheme.lower(), host.rsplit(":", 1)[-1]) in (("http", "80"), ("https", "443")):
        host = host.rsplit(":", 1)[0]
    if "/_history/" in path:
        path = path.split("/_history/", 1)[0]
    return f"{scheme.lower()}://{host}/{path.rstrip('/')}"


def _absolute(url: Any) -> bool:
    return isinstance(url, str) and (url.startswith("https://") or url.startswith("http://"))


def _base(full_url: str) -> str:
    """The server base of an absolute fullUrl ('https://h/fhir/Observation/1' -> 'https://h/fhir')."""
    parts = _norm(full_url).split("/")
    return "/".join(parts[:-2])


def _relative(ref: str) -> str:
    parts = ref.split("/")
    if "_history" in parts:
        parts = parts[:parts.index("_history")]
    return "/".join(parts[-2:])


class PatientRefs:
    """Resolves References to the chart's patient. `target` is 'Patient/<id>'; `patient_urls` the fullUrls
    of that Patient's entries; `server` the FHIR server base the data came from (CDS Hooks fhirServer)."""

    def __init__(self, target: str | None, full_urls: dict[str, Any], patient_resources: list[Any],
                 patient_urls: list[str], server: str | None = None) -> None:
        self.target = target
        self.full_urls = full_urls
        self._patients = {id(r) for r in patient_resources}
        known = [u for u in patient_urls if _absolute(u)]
        if server and _absolute(server) and target:
            known.append(f"{server.rstrip('/')}/{target}")
        self.absolute = {_norm(u) for u in known}  # where the patient lives, when the chart says so
        self.bases = {_base(u) for u in self.absolute}
        self.unresolved_urns = 0

    def whose(self, ref_obj: Any, entry_url: str | None = None) -> str:
        """TARGET, OTHER or UNRESOLVED (an internal urn no entry carries) for a `subject`/`patient` Reference
        found in the entry at `entry_url`."""
        ref = ref_obj.get("reference") if isinstance(ref_obj, dict) else None
        if not isinstance(ref, str) or not ref or self.target is None:
            return OTHER
        hit = self.full_urls.get(ref)
        if hit is not None:  # a reference to an entry of this chart: that entry decides
            return TARGET if id(hit) in self._patients else OTHER
        if ref.startswith("urn:"):
            self.unresolved_urns += 1
            return UNRESOLVED
        if _absolute(ref):
            return TARGET if _norm(ref) in self.absolute else OTHER
        if _relative(ref) != self.target:
            return OTHER
        # A relative reference is relative to the server the entry came from: another server's entry
        # pointing at "Patient/<same id>" is that server's patient.
        if self.bases and _absolute(entry_url) and _base(entry_url) not in self.bases:  # type: ignore[arg-type]
            return OTHER
        return TARGET


def resolve(ref_obj: Any, full_urls: dict[str, Any], by_key: dict[str, Any], container: Any = None) -> Any:
    """The resource a non-patient Reference (a Tumor `focus`, a `medicationReference`) points to in the chart:
    a contained resource ('#id'), an entry by fullUrl, or by 'Type/id'; None when the chart lacks it."""
    ref = ref_obj.get("reference") if isinstance(ref_obj, dict) else None
    if not isinstance(ref, str) or not ref:
        return None
    if ref.startswith("#") and isinstance(container, dict):
        contained = container.get("contained")
        if isinstance(contained, list):
            return next((r for r in contained if isinstance(r, dict) and r.get("id") == ref[1:]), None)
        return None
    if ref in full_urls:
        return full_urls[ref]
    if ref.startswith("urn:"):
        return None
    return by_key.get(_relative(ref))
