"""Liver tumours as mCODE records them: one Tumor (BodyStructure) per tumour, located in the liver (with the
side of the liver as its location qualifier), measured by Tumor Size Observations (LOINC 21889-1, focus
the Tumor, longest dimension LOINC 33728-7). From them: the number of liver metastases, the largest
diameter and bilobar disease, all dated by the latest imaging (the imaging TTL applies).

Where the chart allows only a coarse form it gives that and says why: when not every tumour was measured
on the latest imaging (RECIST measures at most two per organ), a largest diameter over 5 cm is still
certain; when tumours are known only through their measurements, the count is a lower bound, so "more
than one" and "more than 4" are certain once that many are seen."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ehr.chart_observations import about_patient, status_ok
from ehr.chart_values import Pool, Span
from ehr.fhir_read import UNDATED, Mapped, Problem, codings_of, label_of, observed_at, read_value
from ehr.fhir_refs import TARGET, PatientRefs, resolve
from feature_store import contract as c
from feature_store.standard_codes import LATERALITY, LIVER, LONGEST_DIMENSION

LARGEST = c.BY_NAME["largest_metastasis_cm"]
LONGEST_CODE = next(x for x in LARGEST.codes if (x.system, x.code) == LONGEST_DIMENSION)
Entry = tuple[int, str | None, dict[str, Any]]


@dataclass
class Tumour:
    label: str
    lobe: str | None
    sizes: list[tuple[Span, float, str]] = field(default_factory=list)


def _sites(concept: Any) -> set[str]:
    concepts = concept if isinstance(concept, list) else [concept]
    return {code for cc in concepts for system, code in codings_of(cc) if system == c.SNOMED}


def _longest(res: dict[str, Any], where: str, out: Mapped) -> float | None:
    for comp in res.get("component") or []:
        if isinstance(comp, dict) and LONGEST_DIMENSION in codings_of(comp.get("code")):
            value, kind, message = read_value(comp, LARGEST, LONGEST_CODE)
            if kind:
                out.problems.append(Problem(kind, f"{where} (component)", message or "", LARGEST.name))
                return None
            return value
    return None


class Tumours:
    def __init__(self, refs: PatientRefs, full_urls: dict[str, Any], by_key: dict[str, Any], pool: Pool,
                 out: Mapped) -> None:
        self.refs, self.full_urls, self.by_key, self.pool, self.out = refs, full_urls, by_key, pool, out
        self.liver: dict[int, Tumour] = {}
        self.loose: dict[str, list[tuple[Span, float, str]]] = {}  # liver measurements whose Tumor is not in the chart

    def body(self, res: dict[str, Any], index: int, url: str | None) -> None:
        if LIVER not in _sites(res.get("location")) or res.get("active") is False:
            return
        label = label_of(res, index)
        if self.refs.whose(res.get("patient"), url) != TARGET:
            self.out.problems.append(Problem("other_patient", label, "about another patient (or no patient); ignored"))
            return
        lobes = {LATERALITY[code] for code in _sites(res.get("locationQualifier")) if code in LATERALITY}
        self.liver[id(res)] = Tumour(label, next(iter(lobes)) if len(lobes) == 1 else None)

    def size(self, res: dict[str, Any], index: int, url: str | None) -> None:
        label = label_of(res, index)
        if not about_patient(res, label, url, self.refs, self.out) or not status_ok(res, label, self.out):
            return
        span = observed_at(res)
        if span is None:
            self.out.problems.append(Problem(UNDATED, label, "Tumor Size without a date; ignored", LARGEST.name))
            return
        value = _longest(res, label, self.out)
        if value is None:
            return
        focus = res.get("focus")
        refs = focus if isinstance(focus, list) else [focus] if focus else []
        tumours = [resolve(r, self.full_urls, self.by_key, res) for r in refs]
        mine = [self.liver.get(id(t)) for t in tumours if t is not None]
        if any(mine):
            for t in mine:
                if t:
                    t.sizes.append((span, value, label))
        elif LIVER in _sites(res.get("bodySite")):  # a liver tumour the chart does not carry as a BodyStructure
            key = next((r.get("reference") for r in refs if isinstance(r, dict) and r.get("reference")), label)
            self.loose.setdefault(str(key), []).append((span, value, label))

    def settle(self) -> None:
        if self.liver:
            self._from_bodies()
        elif self.loose:
            self._from_sizes_only()

    def _offer(self, name: str, span: Span, value: Any, ref: str, source: str) -> None:
        self.pool.offer(c.BY_NAME[name], span, value, ref, ref, source)

    def _from_bodies(self) -> None:
        sizes = [s for t in self.liver.values() for s in t.sizes]
        if not sizes:
            self.out.problems.append(Problem(UNDATED, "BodyStructure", f"{len(self.liver)} liver tumour(s) with no "
                                             "dated Tumor Size: their count is not dated; not used",
                                             "n_liver_metastases"))
            return
        span, _, ref = max(sizes, key=lambda s: s[0][0])
        day = span[0].date()
        source = "mCODE Tumor (BodyStructure) and Tumor Size"
        self._offer("n_liver_metastases", span, len(self.liver), ref, source)
        latest = {i: max((s for s in t.sizes if s[0][0].date() == day), key=lambda s: s[1], default=None)
                  for i, t in self.liver.items()}
        measured = [s[1] for s in latest.values() if s]
        if len(measured) == len(self.liver):
            self._offer("largest_metastasis_cm", span, max(measured), ref, source)
        elif max(measured) > 5:
            self._offer("largest_metastasis_over_5cm", span, True, ref, source)
            self._note(f"{len(measured)} of {len(self.liver)} liver tumours measured on the latest imaging: the largest "
                       "diameter is known only as over 5 cm", "largest_metastasis_cm")
        else:
            self._note(f"{len(measured)} of {len(self.liver)} liver tumours measured on the latest imaging: the largest "
                       "diameter is not known", "largest_metastasis_cm")
        lobes = {t.lobe for t in self.liver.values()}
        if {"right", "left"} <= lobes:
            self._offer("bilobar_disease", span, True, ref, source)
        elif None not in lobes:
            self._offer("bilobar_disease", span, False, ref, source)
        else:
            self._note("not every liver tumour has its side of the liver (locationQualifier): bilobar disease is "
                       "not known", "bilobar_disease")

    def _from_sizes_only(self) -> None:
        latest = max(s[0][0] for sizes in self.loose.values() for s in sizes)
        day: datetime = latest
        seen = {k: max(s[1] for s in v if s[0][0].date() == day.date()) for k, v in self.loose.items()
                if any(s[0][0].date() == day.date() for s in v)}
        span, _, ref = next(s for v in self.loose.values() for s in v if s[0][0] == latest)
        source = "mCODE Tumor Size (tumours not in the chart as BodyStructures)"
        self._note(f"{len(seen)} liver tumour(s) known only through Tumor Size: the count is a lower bound",
                   "n_liver_metastases")
        if len(seen) > 1:
            self._offer("multiple_liver_metastases", span, True, ref, source)
        if len(seen) > 4:
            self._offer("more_than_4_liver_metastases", span, True, ref, source)
        if max(seen.values()) > 5:
            self._offer("largest_metastasis_over_5cm", span, True, ref, source)

    def _note(self, message: str, feature: str) -> None:
        self.out.problems.append(Problem("partial", "BodyStructure", message, feature))
