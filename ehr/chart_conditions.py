"""The Patient and the problem list: who the chart is about, whether the model applies (alive, an active
liver-metastasis Condition), the primary tumour's side, and the timing of the metastases (US Core
Patient, mCODE Primary and Secondary Cancer Conditions, or plain ICD-10 / SNOMED CT problem lists).

Safety fields fail closed: a deceased flag, clinical status or verification status that cannot be read
is never taken as alive or active; it is said (`Mapped.unreadable`), naming the field, never the value."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from ehr.chart_values import Pool
from ehr.fhir_read import FUTURE, IMPRECISE, MALFORMED, Mapped, Problem, codings_of, label_of, parse_when
from ehr.fhir_refs import TARGET, UNRESOLVED, PatientRefs
from feature_store import contract as c
from feature_store.codes import PRIMARY_SITE_SNOMED
from feature_store.standard_codes import COLON_SITE_SIDE, LIVER, LIVER_METASTASIS, PROFILES

LIVER_CODES = set(LIVER_METASTASIS)
ICD10_SYSTEMS = {c.ICD10, c.ICD10CM}
CLINICAL_CODES = {"active", "recurrence", "relapse", "inactive", "remission", "resolved", "unknown"}
ACTIVE = {"active", "recurrence", "relapse"}
VERIFICATION_CODES = {"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"}
EXCLUDED_VERIFICATION = {"refuted", "entered-in-error"}
# Colorectal cancer concepts whose side is given by bodySite (Synthea's colorectal module codes the primary
# with these; mCODE's primary cancer condition may code any cancer and put the site in bodySite).
COLORECTAL_SNOMED = {"363406005", "93761005", "109838007"}
PRIMARY_PROFILE = PROFILES["primary"][1]
SECONDARY_PROFILE = PROFILES["secondary"][1]
SYNCHRONOUS_DAYS = 91  # liver metastases found with or within 3 months of the primary (contract)


def primary_side(code: str) -> str | None:
    """ICD-10 primary site -> sidedness: C18.0-C18.4 right, C18.5-C18.7 and C19 left, C20 rectum."""
    m = re.fullmatch(r"C(\d\d)\.?(\d)?.*", code.upper())
    if not m:
        return None
    block, sub = m.group(1), m.group(2)
    if block == "18" and sub is not None:
        return "right_colon" if int(sub) <= 4 else "left_colon" if int(sub) <= 7 else None
    return {"19": "left_colon", "20": "rectum"}.get(block)


def _status(concept: Any, allowed: set[str]) -> tuple[set[str], bool]:
    """(codes, readable) of a status CodeableConcept: absent is readable and empty; anything present must be
    an object whose codings carry at least one code of `allowed` (the system is often left out there)."""
    if concept is None:
        return set(), True
    coding = concept.get("coding") if isinstance(concept, dict) else None
    if not isinstance(coding, list):
        return set(), False
    codes = {cd.get("code") for cd in coding if isinstance(cd, dict) and isinstance(cd.get("code"), str)}
    known = codes & allowed
    return known, bool(known)


def _profiles(res: dict[str, Any]) -> set[str]:
    meta = res.get("meta")
    prof = meta.get("profile") if isinstance(meta, dict) else None
    return {p.split("|", 1)[0] for p in prof if isinstance(p, str)} if isinstance(prof, list) else set()


def _onset(res: dict[str, Any]) -> tuple[datetime, datetime, str] | None:
    period = res.get("onsetPeriod") if isinstance(res.get("onsetPeriod"), dict) else {}
    return parse_when(res.get("onsetDateTime")) or parse_when(period.get("start"))


class Conditions:
    """Reads the chart's Conditions into the applicability, side and timing of the disease."""

    def __init__(self, refs: PatientRefs, decision: datetime, pool: Pool, out: Mapped) -> None:
        self.refs, self.decision, self.pool, self.out = refs, decision, pool, out
        self.sides: dict[str, str] = {}
        self.primary_onsets: list[datetime] = []
        self.liver_onsets: list[datetime] = []
        self.liver_unreadable: list[str] = []

    def read(self, res: dict[str, Any], index: int, entry_url: str | None) -> None:
        codings = codings_of(res.get("code"))
        profiles = _profiles(res)
        sites = {code for system, code in codings_of_list(res.get("bodySite")) if system == c.SNOMED}
        liver = any(cd in LIVER_CODES for cd in codings) or (SECONDARY_PROFILE in profiles and LIVER in sites)
        colorectal = PRIMARY_PROFILE in profiles or any(
            (s in ICD10_SYSTEMS and re.match(r"C(18|19|20)", cd.upper())) or (s == c.SNOMED and cd in COLORECTAL_SNOMED)
            for s, cd in codings)
        side = self._side(codings, sites if colorectal else set())
        if not (liver or side or colorectal):
            return
        label = label_of(res, index)
        whose = self.refs.whose(res.get("subject") or res.get("patient"), entry_url)
        if whose != TARGET:
            self.out.problems.append(Problem("other_patient", label, "about another patient (or no subject); ignored"))
            if whose == UNRESOLVED:
                self.out.unresolved += 1
                self.out.unresolved_liver |= liver
            return
        verification, readable = _status(res.get("verificationStatus"), VERIFICATION_CODES)
        if not readable:
            self._unreadable(label, "verificationStatus", liver)
            return
        if verification & EXCLUDED_VERIFICATION:
            return
        onset = _onset(res)
        recorded = parse_when(res.get("recordedDate"))
        if (onset or recorded) and (onset or recorded)[0] > self.decision:  # type: ignore[index]
            self.out.problems.append(Problem(FUTURE, label, "recorded after the decision date; ignored"))
            return
        if side or colorectal:  # the primary site stays the primary site once resected (resolved)
            if side:
                self.sides[label] = side
            if onset:
                self.primary_onsets.append(onset[0])
            self.out.basis.append(label)
        if liver:
            self._liver(res, label, onset)

    @staticmethod
    def _side(codings: list[tuple[str, str]], sites: set[str]) -> str | None:
        for system, code in codings:
            if system in ICD10_SYSTEMS and (side := primary_side(code)):
                return side
            if system == c.SNOMED and code in PRIMARY_SITE_SNOMED:
                return PRIMARY_SITE_SNOMED[code]
        return next((COLON_SITE_SIDE[s] for s in sites if s in COLON_SITE_SIDE), None)

    def _unreadable(self, label: str, member: str, liver: bool) -> None:
        self.out.problems.append(Problem(MALFORMED, label, f"{member} is not a readable status code"))
        if liver:
            self.liver_unreadable.append(f"{label}: {member} of a liver-metastasis Condition could not be read")

    def _liver(self, res: dict[str, Any], label: str, onset: tuple[datetime, datetime, str] | None) -> None:
        clinical, readable = _status(res.get("clinicalStatus"), CLINICAL_CODES)
        if not readable:
            self._unreadable(label, "clinicalStatus", True)
            return
        abated = not clinical and any(k.startswith("abatement") and v is not None for k, v in res.items())
        if (clinical and not clinical & ACTIVE) or abated:
            return
        self.out.liver_metastasis = True
        self.out.basis.append(label)
        if onset:
            self.liver_onsets.append(onset[0])

    def settle(self) -> None:
        out = self.out
        if not out.liver_metastasis:
            out.unreadable.extend(self.liver_unreadable)
        if len(set(self.sides.values())) == 1:
            self.pool.offer(c.BY_NAME["primary_side"], None, next(iter(self.sides.values())), "Condition",
                            "Condition", "primary cancer condition (code or bodySite)")
        elif len(set(self.sides.values())) > 1:
            out.problems.append(Problem("conflict", "Condition", "primary site coded with different sides; left missing",
                                        "primary_side"))
        if self.primary_onsets and self.liver_onsets:
            days = (min(self.liver_onsets) - min(self.primary_onsets)).days
            synchronous = days <= SYNCHRONOUS_DAYS
            source = "onset dates of the primary and secondary (liver) cancer conditions"
            self.pool.offer(c.BY_NAME["synchronous_metastases"], None, synchronous, "Condition", "Condition", source,
                            fallback=True)
            self.pool.offer(c.BY_NAME["disease_free_interval_months"], None,
                            0.0 if synchronous else days * 12 / 365.25, "Condition", "Condition", source, fallback=True)


def codings_of_list(concepts: Any) -> list[tuple[str, str]]:
    """(system, code) pairs of a CodeableConcept or a list of them (bodySite is 0..1 in R4 Condition but a
    list in some exports)."""
    if isinstance(concepts, list):
        return [pair for cc in concepts for pair in codings_of(cc)]
    return codings_of(concepts)


def read_patient(res: dict[str, Any], index: int, decision: datetime, out: Mapped) -> None:
    """Sex, age at the decision (completed years) and whether the patient is alive then."""
    label = label_of(res, index)
    out.basis.append(label)
    gender = res.get("gender")
    if gender in ("male", "female"):
        out.record["sex"] = gender
        out.sources["sex"] = "US Core Patient.gender"
    died_at: datetime | None = None
    if "deceasedBoolean" in res and res["deceasedBoolean"] is not None:
        if res["deceasedBoolean"] is True:
            out.deceased = True
        elif res["deceasedBoolean"] is not False:  # "true", 1, {}: fail closed, never read as alive
            out.unreadable.append(f"{label}: deceasedBoolean is not true or false")
            out.problems.append(Problem(MALFORMED, label, "deceasedBoolean is not true or false"))
    if res.get("deceasedDateTime") is not None:
        span = parse_when(res["deceasedDateTime"])
        if span is None:
            out.unreadable.append(f"{label}: deceasedDateTime is not a FHIR dateTime")
            out.problems.append(Problem(MALFORMED, label, "deceasedDateTime is not a FHIR dateTime"))
        elif span[0] <= decision:
            out.deceased = True
            died_at = span[0]
    _age(res, label, min(decision, died_at) if died_at else decision, out)


def _age(res: dict[str, Any], label: str, at: datetime, out: Mapped) -> None:
    if res.get("birthDate") is None:
        return
    born = parse_when(res["birthDate"])
    if born is None:
        out.problems.append(Problem(MALFORMED, label, "birthDate is not a FHIR date", "age_years"))
        return
    if born[0] > at:
        out.problems.append(Problem(MALFORMED, label, "birthDate after the decision date", "age_years"))
        return
    if born[2] in ("year", "month"):
        out.problems.append(Problem(IMPRECISE, label, f"birthDate known to the {born[2]} only: age estimated from "
                                    f"the middle of the {born[2]}", "age_years"))
    mid = (born[0] + (born[1] - born[0]) / 2).date()
    day = at.date()
    # completed years, as clinicians state age (a calendar count, not days / 365.25)
    out.record["age_years"] = max(0, day.year - mid.year - ((day.month, day.day) < (mid.month, mid.day)))
    out.sources["age_years"] = "US Core Patient.birthDate"
