"""Observations coded for one contract input: US Core laboratory results, mCODE tumour markers, qualitative
genotype tests and the project's local codes (LOCAL_SYSTEM, code = the input's name). Driven by the
contract's codes: `system` AND `code` must match (never the text: LOINC 2039-6 collides with a race code
of the same digits); panels are read component by component."""

from __future__ import annotations

from typing import Any

from ehr.chart_values import Pool
from ehr.fhir_read import BOUND, MALFORMED, UNDATED, VALID_STATUS, Mapped, Problem, label_of, observed_at, read_value
from ehr.fhir_refs import TARGET, UNRESOLVED, PatientRefs
from feature_store import contract as c
from feature_store.codes import LOCAL_SYSTEM
from feature_store.standard_codes import FROM_PATIENT_AND_CONDITIONS

SYSTEM_NAMES = {c.LOINC: "LOINC", c.SNOMED: "SNOMED CT"}
# Features read from the Patient and the problem list, not from Observations.
DEMOGRAPHIC = FROM_PATIENT_AND_CONDITIONS


def _feature_codes() -> dict[tuple[str, str], tuple[c.Feature, c.Code | None]]:
    out: dict[tuple[str, str], tuple[c.Feature, c.Code | None]] = {}
    for f in c.features():
        if f.name in DEMOGRAPHIC:
            continue
        out[(LOCAL_SYSTEM, f.name)] = (f, None)
        for code in f.codes:
            # quantities (a unit) and qualitative tests with coded answers have an unambiguous value
            if code.unit is not None or code.answers:
                out[(code.system, code.code)] = (f, code)
    return out


FEATURE_CODES = _feature_codes()


def observation_queries() -> dict[str, list[str]]:
    """LOINC codes per feature (prefetch templates and FHIR searches use them)."""
    out: dict[str, list[str]] = {}
    for (system, code), (f, _) in FEATURE_CODES.items():
        if system == c.LOINC:
            out.setdefault(f.name, []).append(code)
    return out


def match(concept: Any) -> tuple[c.Feature, c.Code | None] | None:
    """The contract feature a CodeableConcept codes for (first matching coding), else None. Runs for every
    Observation of a chart, so it avoids building intermediate lists."""
    if type(concept) is not dict:
        return None
    coding = concept.get("coding")
    if type(coding) is not list:
        return None
    for cd in coding:
        if type(cd) is dict:
            system, code = cd.get("system"), cd.get("code")
            if type(system) is str and type(code) is str:  # a dict here would be unhashable
                hit = FEATURE_CODES.get((system, code))
                if hit:
                    return hit
    return None


def status_ok(res: dict[str, Any], label: str, out: Mapped) -> bool:
    status = res.get("status")
    if not isinstance(status, str) or status not in VALID_STATUS:  # a dict here is unhashable: type first
        if not isinstance(status, str):
            out.problems.append(Problem(MALFORMED, label, "status missing or not a code; ignored"))
        return False
    return True


def about_patient(res: dict[str, Any], label: str, entry_url: str | None, refs: PatientRefs, out: Mapped) -> bool:
    whose = refs.whose(res.get("subject") or res.get("patient"), entry_url)
    if whose == TARGET:
        return True
    out.problems.append(Problem("other_patient", label, "about another patient (or no subject); ignored"))
    if whose == UNRESOLVED:
        out.unresolved += 1
    return False


def read_observation(res: dict[str, Any], index: int, entry_url: str | None, refs: PatientRefs, pool: Pool,
                     out: Mapped) -> None:
    holders: list[tuple[dict[str, Any], c.Feature, c.Code | None]] = []
    hit = match(res.get("code"))
    if hit:
        holders.append((res, hit[0], hit[1]))
    components = res.get("component")
    if isinstance(components, list):  # panels: each component is read like an Observation of its own
        for comp in components:
            if isinstance(comp, dict):
                hit = match(comp.get("code"))
                if hit:
                    holders.append((comp, hit[0], hit[1]))
    if not holders:  # most of a chart: checked by code first, the cheapest test
        return
    label = label_of(res, index)
    if not about_patient(res, label, entry_url, refs, out) or not status_ok(res, label, out):
        return
    span = observed_at(res)
    for holder, f, code in holders:
        where = label if holder is res else f"{label} (component)"
        if span is None:
            out.problems.append(Problem(UNDATED, where, "no date; ignored", f.name))
            continue
        if not pool.fresh(f, span, where):
            continue
        value, kind, message = read_value(holder, f, code)
        source = "local code" if code is None else f"{SYSTEM_NAMES.get(code.system, code.system)} {code.code}"
        if kind:
            out.problems.append(Problem(kind, where, message or "", f.name))
            if kind == BOUND:  # a bound hides older values: the newest result is not a value
                pool.add(f, span, None, label, where, source, BOUND)
            continue
        pool.add(f, span, value, label, where, source)
