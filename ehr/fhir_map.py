"""FHIR R4 resources -> a contract record: the source adapter for EHR data.

Reads whole patient charts as EHRs export them, with the mapping table of the contract's room
(feature_store/standard_codes.py): US Core Patient and laboratory results, mCODE cancer conditions,
staging, tumours and tumour sizes, tumour markers, genomics, cancer medications, and the PVE and
hepatectomy orders; inputs no standard code carries come as Observations in the project's local code
system (LOCAL_SYSTEM, code = contract feature name).

Identity is checked for every resource used: its `subject`/`patient` Reference must resolve to the
patient against the chart's fullUrls and the FHIR server's base (ehr/fhir_refs.py); anything else is
another patient, skipped and counted. One rule dates every value (the contract's TTL per source,
ehr/chart_values.py). The reader is plain dict code rather than fhir.resources models: a 4 MB chart
holds thousands of resources, most irrelevant, and a strict model would refuse a whole resource for
one bad member; every member is type-checked before use and what cannot be read is a Problem naming
the resource, never the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from ehr.chart_conditions import Conditions, primary_side, read_patient  # noqa: F401  (primary_side: re-export)
from ehr.chart_mcode import Mcode
from ehr.chart_observations import DEMOGRAPHIC, observation_queries, read_observation  # noqa: F401
from ehr.chart_treatment import Treatment
from ehr.chart_tumours import Tumours
from ehr.chart_values import Pool
from ehr.fhir_read import MALFORMED, Mapped, Problem, codings_of, entry_key, label_of, ref_key
from ehr.fhir_refs import PatientRefs
from feature_store.codes import LOCAL_SYSTEM  # noqa: F401  (re-export: the local code system)
from feature_store.standard_codes import TUMOR_SIZE

# Resource types the mapping reads; every other type of a whole chart is skipped unread.
READ = {"Patient", "Condition", "Observation", "BodyStructure", "MedicationAdministration", "MedicationRequest",
        "Medication", "ServiceRequest", "Procedure"}
# Types other resources point to (a Tumor Size's focus, a medicationReference): looked up by Type/id.
TARGETS = {"BodyStructure", "Medication"}

Item = tuple[int, str | None, dict[str, Any]]


@dataclass
class _Chart:
    full_urls: dict[str, dict[str, Any]]
    patients: dict[str, list[Item]] = field(default_factory=dict)  # Patient key -> its entries
    items: dict[str, list[Item]] = field(default_factory=dict)  # resource type -> entries, each resource once
    by_key: dict[str, dict[str, Any]] = field(default_factory=dict)


def map_resources(resources: Iterable[Any], decision: datetime | None = None, patient_id: str | None = None,
                  fhir_server: str | None = None) -> Mapped:
    """Map a patient's resources onto the contract."""
    return map_chart([(None, r) for r in resources], decision, patient_id, fhir_server=fhir_server)


def map_chart(entries: list[tuple[str | None, Any]], decision: datetime | None = None,
              patient_id: str | None = None, problems: list[Problem] | None = None,
              fhir_server: str | None = None) -> Mapped:
    """Map (fullUrl, resource) pairs of one patient's chart onto the contract.

    `patient_id` (CDS Hooks context.patientId) is who the chart must be about; without it the chart's
    single Patient is. `fhir_server` is the base the resources came from (CDS Hooks fhirServer). Resources
    about anyone else are skipped and counted; a Patient that is someone else, or two different Patients,
    set `identity_conflict` (no risk then).
    """
    decision = decision or datetime.now(timezone.utc)
    out = Mapped(record={}, problems=list(problems or []))
    chart = _index(entries, out)
    target = _whose(chart, patient_id, out)
    if out.identity_conflict:
        return out
    out.patient_id = target.split("/", 1)[1] if target and target.startswith("Patient/") else target
    mine = chart.patients.get(target or "", [])
    for i, _, res in mine:
        read_patient(res, i, decision, out)
    refs = PatientRefs(target, chart.full_urls, [r for _, _, r in mine], [u for _, u, _ in mine if u], fhir_server)
    pool = Pool(decision, out)
    conditions = Conditions(refs, decision, pool, out)
    tumours = Tumours(refs, chart.full_urls, chart.by_key, pool, out)
    mcode = Mcode(refs, pool, out)
    treatment = Treatment(refs, chart.full_urls, chart.by_key, decision, pool, out)
    for i, url, res in chart.items.get("Condition", []):
        conditions.read(res, i, url)
    for i, url, res in chart.items.get("BodyStructure", []):
        tumours.body(res, i, url)
    for i, url, res in chart.items.get("Observation", []):
        codings = codings_of(res.get("code"))
        if TUMOR_SIZE in codings:
            tumours.size(res, i, url)
        elif mcode.owns(codings):
            mcode.read(res, i, url, codings)
        else:
            read_observation(res, i, url, refs, pool, out)
    for rtype in ("MedicationAdministration", "MedicationRequest"):
        for i, url, res in chart.items.get(rtype, []):
            treatment.medication(res, i, url)
    for rtype in ("ServiceRequest", "Procedure"):
        for i, url, res in chart.items.get(rtype, []):
            treatment.order(res, i, url)
    for reader in (conditions, tumours, mcode, treatment):
        reader.settle()
    pool.settle()
    return out


def _index(entries: list[tuple[str | None, Any]], out: Mapped) -> _Chart:
    """The chart's resources of the types read (other types skipped), each once, and its fullUrls."""
    chart = _Chart({})
    seen: set[tuple[str, str]] = set()
    for i, (full_url, res) in enumerate(entries):
        if type(res) is not dict:
            out.problems.append(Problem(MALFORMED, f"entry {i}", "not a FHIR resource object"))
            continue
        rtype = res.get("resourceType")
        if full_url is not None and type(full_url) is str:
            chart.full_urls[full_url] = res
        if type(rtype) is not str or rtype not in READ:  # a list here would be unhashable: type first
            continue
        rid = res.get("id")
        if rtype == "Patient":
            key = entry_key(full_url, res)
            if key is None:
                out.problems.append(Problem(MALFORMED, label_of(res, i), "Patient without an id"))
                continue
            chart.patients.setdefault(ref_key({"reference": key}, {}) or key, []).append((i, full_url, res))
            continue
        if type(rid) is str:
            if (rtype, rid) in seen:  # the same resource in two prefetch keys counts once
                continue
            seen.add((rtype, rid))
            if rtype in TARGETS:
                chart.by_key[f"{rtype}/{rid}"] = res
        chart.items.setdefault(rtype, []).append((i, full_url, res))
    return chart


def _whose(chart: _Chart, patient_id: str | None, out: Mapped) -> str | None:
    """The 'Patient/<id>' the chart is about, or an identity conflict set on `out`."""
    target = f"Patient/{patient_id}" if patient_id else None
    if target:
        if any(k != target for k in chart.patients):
            out.identity_conflict = "the Patient in the data is not the patient in context.patientId"
    elif len(chart.patients) > 1:
        out.identity_conflict = f"{len(chart.patients)} different Patient resources in one request; send one patient"
    elif chart.patients:
        target = next(iter(chart.patients))
    if out.identity_conflict or target is not None:
        return target
    # no Patient resource: the chart is whoever all the coded resources are about
    subjects = {ref_key(r.get("subject") or r.get("patient"), chart.full_urls)
                for items in chart.items.values() for _, _, r in items} - {None}
    if len(subjects) > 1:
        out.identity_conflict = "no Patient resource and resources about several patients"
        return None
    return next(iter(subjects), None)
