"""The treatment record: cancer medications (mCODE Cancer-Related Medication Administration and Request; RxNorm)
and the plan (US Core ServiceRequest: the portal vein embolization and the hepatectomy).

Inputs derived here, dated by the record they come from (treatment plan TTL):
- chemotherapy cycles before PVE: treatment days of oxaliplatin, irinotecan, fluorouracil or capecitabine
  before the decision, a new cycle after a gap of more than 5 days (FOLFOX's 2-day infusion is one cycle,
  capecitabine's 14 days of tablets too); from administrations, else from the orders;
- bevacizumab before PVE: given before the decision (no, when chemotherapy is recorded without it);
- bridging chemotherapy planned: a chemotherapy request starting after the decision, before the planned
  hepatectomy (no, when the chart holds the surgical plan and chemotherapy but no such request);
- planned interval: weeks from the planned (or done) PVE to the planned hepatectomy."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ehr.chart_observations import about_patient
from ehr.chart_values import Pool, Span
from ehr.fhir_read import Mapped, codings_of, label_of, parse_when
from ehr.fhir_refs import PatientRefs, resolve
from feature_store import contract as c
from feature_store.codes import RXNORM
from feature_store.standard_codes import BEVACIZUMAB, CHEMOTHERAPY, EMBOLIZATION, LIVER, PORTAL_VEIN, SURGICAL_PROCEDURE

AGENTS = {**CHEMOTHERAPY, **BEVACIZUMAB}
CYCLE_GAP_DAYS = 5
GIVEN = {"completed", "in-progress", "stopped"}  # administration statuses: the drug went in
ORDERED = {"completed", "active", "stopped"}  # request statuses of an order that was carried out or runs
PLANNED = {"active", "draft", "on-hold"}


def _agents(concepts: list[Any]) -> set[str]:
    """Agents named by RxNorm ingredient code, or by name in a clinical drug's display or text (RxNorm clinical
    drug names start with their ingredient); topical forms are not systemic therapy."""
    out: set[str] = set()
    for cc in concepts:
        if not isinstance(cc, dict):
            continue
        texts = [cc.get("text")]
        for cd in cc.get("coding") or [] if isinstance(cc.get("coding"), list) else []:
            if isinstance(cd, dict):
                if cd.get("system") == RXNORM and type(cd.get("code")) is str and cd["code"] in AGENTS:
                    out.add(AGENTS[cd["code"]])
                texts.append(cd.get("display"))
        for t in texts:
            low = t.lower() if isinstance(t, str) else ""
            if low and "topical" not in low and "cream" not in low:
                out |= {name for name in AGENTS.values() if name in low}
    return out


def _start(res: dict[str, Any]) -> Span | None:
    for di in res.get("dosageInstruction") or [] if isinstance(res.get("dosageInstruction"), list) else []:
        timing = di.get("timing") if isinstance(di, dict) else None
        repeat = timing.get("repeat") if isinstance(timing, dict) else None
        bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
        event = timing.get("event") if isinstance(timing, dict) else None
        span = parse_when((bounds or {}).get("start") if isinstance(bounds, dict) else None) or parse_when(
            event[0] if isinstance(event, list) and event else None)
        if span:
            return span
    dispense = res.get("dispenseRequest")
    validity = dispense.get("validityPeriod") if isinstance(dispense, dict) else None
    return parse_when(validity.get("start") if isinstance(validity, dict) else None) or parse_when(res.get("authoredOn"))


def _when(res: dict[str, Any], prefix: str) -> Span | None:
    period = res.get(f"{prefix}Period")
    return parse_when(res.get(f"{prefix}DateTime")) or parse_when(period.get("start") if isinstance(period, dict)
                                                                  else None)


def _cycles(days: list[datetime]) -> int:
    ordered = sorted({d.date() for d in days})
    return 1 + sum(1 for a, b in zip(ordered, ordered[1:]) if (b - a).days > CYCLE_GAP_DAYS) if ordered else 0


class Treatment:
    def __init__(self, refs: PatientRefs, full_urls: dict[str, Any], by_key: dict[str, Any], decision: datetime,
                 pool: Pool, out: Mapped) -> None:
        self.refs, self.full_urls, self.by_key, self.decision, self.pool, self.out = (
            refs, full_urls, by_key, decision, pool, out)
        self.given: dict[str, list[tuple[datetime, str]]] = {"admin": [], "order": [], "bev": []}
        self.planned: list[tuple[Span, Span | None, str]] = []  # (start, authored, ref)
        self.pve: list[tuple[Span, str]] = []
        self.hepatectomy: list[tuple[Span, Span | None, str]] = []

    def _medication(self, res: dict[str, Any]) -> set[str]:
        concepts = [res.get("medicationCodeableConcept")]
        med = resolve(res.get("medicationReference"), self.full_urls, self.by_key, res)
        if isinstance(med, dict):
            concepts.append(med.get("code"))
            for ing in med.get("ingredient") or [] if isinstance(med.get("ingredient"), list) else []:
                if isinstance(ing, dict):
                    concepts.append(ing.get("itemCodeableConcept"))
        return _agents(concepts)

    def medication(self, res: dict[str, Any], index: int, url: str | None) -> None:
        agents = self._medication(res)
        if not agents:
            return
        label = label_of(res, index)
        if not about_patient(res, label, url, self.refs, self.out):
            return
        status = res.get("status") if type(res.get("status")) is str else None  # a list would be unhashable
        if res["resourceType"] == "MedicationAdministration":
            span = _when(res, "effective")
            if status in GIVEN and span and span[0] <= self.decision:
                self._given("admin", agents, span[0], label)
            return
        start, authored = _start(res), parse_when(res.get("authoredOn"))
        if start is None:
            return
        if status in ORDERED and start[0] <= self.decision:
            self._given("order", agents, start[0], label)
        elif status in PLANNED and start[0] > self.decision and agents & set(CHEMOTHERAPY.values()):
            self.planned.append((start, authored, label))

    def _given(self, kind: str, agents: set[str], when: datetime, label: str) -> None:
        if agents & set(CHEMOTHERAPY.values()):
            self.given[kind].append((when, label))
        if agents & set(BEVACIZUMAB.values()):
            self.given["bev"].append((when, label))

    def order(self, res: dict[str, Any], index: int, url: str | None) -> None:
        """A ServiceRequest or Procedure: the PVE (planned or done) or the planned hepatectomy."""
        codes = set(codings_of(res.get("code")))
        sites = {code for cc in (res.get("bodySite") if isinstance(res.get("bodySite"), list) else [])
                 for _, code in codings_of(cc)}
        categories = {pair for cc in (res.get("category") if isinstance(res.get("category"), list) else [])
                      for pair in codings_of(cc)}
        pve = EMBOLIZATION in codes and PORTAL_VEIN in sites
        hepatectomy = res["resourceType"] == "ServiceRequest" and SURGICAL_PROCEDURE in categories and LIVER in sites
        if not (pve or hepatectomy):
            return
        label = label_of(res, index)
        if not about_patient(res, label, url, self.refs, self.out):
            return
        status = res.get("status") if type(res.get("status")) is str else None
        if res["resourceType"] == "Procedure":
            span = _when(res, "performed")
            if pve and span and status in ("completed", "in-progress", "preparation"):
                self.pve.append((span, label))
            return
        span = _when(res, "occurrence")
        if span is None or status not in PLANNED | {"completed"}:
            return
        if pve:
            self.pve.append((span, label))
        elif status in PLANNED:
            self.hepatectomy.append((span, parse_when(res.get("authoredOn")), label))

    def settle(self) -> None:
        f = c.BY_NAME
        days = self.given["admin"] or self.given["order"]
        chemo_recorded = bool(days) or bool(self.planned)
        source = "mCODE cancer-related medication administrations" if self.given["admin"] else \
            "mCODE cancer-related medication requests"
        if days:
            last = max(days)
            span = (last[0], last[0], "time")
            self.pool.offer(f["chemo_cycles_pre_pve"], span, _cycles([d for d, _ in days]), last[1], last[1], source)
            bev = max(self.given["bev"]) if self.given["bev"] else None
            ref, when = (bev[1], bev[0]) if bev else (last[1], last[0])
            self.pool.offer(f["bevacizumab_pre_pve"], (when, when, "time"), bool(bev), ref, ref, source)
        hep = max(self.hepatectomy, key=lambda h: h[0][0]) if self.hepatectomy else None
        bridging = [p for p in self.planned if hep is None or p[0][0] < hep[0][0]]
        if bridging:
            start, authored, ref = max(bridging, key=lambda p: p[0][0])
            self.pool.offer(f["bridging_chemo_planned"], authored, True, ref, ref, "mCODE cancer-related medication "
                            "request planned after the decision")
        elif hep and chemo_recorded:
            self.pool.offer(f["bridging_chemo_planned"], hep[1], False, hep[2], hep[2], "planned hepatectomy with no "
                            "chemotherapy planned before it")
        if hep and self.pve:
            pve_span, pve_ref = max(self.pve, key=lambda p: p[0][0])
            weeks = (hep[0][0] - pve_span[0]).days / 7
            if weeks > 0:
                self.pool.offer(f["planned_interval_weeks"], hep[1], weeks, hep[2], hep[2],
                                "planned PVE and hepatectomy (ServiceRequest occurrence)")
