"""mCODE staging and genomics: the TNM regional nodes (N) category of the primary, and the tumour's KRAS, NRAS
and BRAF results as genomics-reporting Variant and Region Studied Observations (genes by HGNC id)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ehr.chart_observations import about_patient, status_ok
from ehr.chart_values import Pool, Span
from ehr.fhir_read import CODE, UNDATED, Mapped, Problem, codings_of, label_of, observed_at
from ehr.fhir_refs import PatientRefs
from feature_store import contract as c
from feature_store.codes import AJCC, HGNC
from feature_store.standard_codes import (
    AMINO_ACID_CHANGE,
    BRAF_V600E,
    DNA_CHANGE,
    GENE_STUDIED,
    GENES,
    GENOMIC_DNA_CHANGE,
    N_CATEGORY_CODES,
    N_VALUES,
    PATHOLOGICAL_N,
    REGION_STUDIED,
    VARIANT,
    VARIANT_ABSENT,
    VARIANT_PRESENT,
)

N_CODES = set(N_CATEGORY_CODES)
HGNC_SYSTEMS = {HGNC, "http://www.genenames.org", "https://www.genenames.org/geneId"}
_AJCC_N = re.compile(r"(?:y|r|a)?(?:c|p)?N(X|\d)", re.IGNORECASE)


def n_positive(concept: Any) -> tuple[bool | None, bool]:
    """(node positive, understood) of an N category value: SNOMED CT AJCC categories, or cancerstaging.org
    codes ('cN0', 'pN1a', 'ypN2b'); NX is understood and not known (None)."""
    for system, code in codings_of(concept):
        if system == c.SNOMED and code in N_VALUES:
            return N_VALUES[code], True
        if system == AJCC and (m := _AJCC_N.match(code)):
            return (None if m.group(1).upper() == "X" else m.group(1) != "0"), True
    return None, False


def _component_codes(res: dict[str, Any], code: tuple[str, str]) -> list[str]:
    """Codes and displays of the components with this code (genes, HGVS changes)."""
    out: list[str] = []
    for comp in res.get("component") or []:
        if isinstance(comp, dict) and code in codings_of(comp.get("code")):
            value = comp.get("valueCodeableConcept")
            coding = value.get("coding") if isinstance(value, dict) else None
            for cd in coding if isinstance(coding, list) else []:
                if isinstance(cd, dict):
                    out += [x for x in (cd.get("code"), cd.get("display")) if isinstance(x, str)]
            if isinstance(comp.get("valueString"), str):
                out.append(comp["valueString"])
    return out


def _genes(res: dict[str, Any]) -> set[str]:
    genes = set()
    for comp in res.get("component") or []:
        if isinstance(comp, dict) and GENE_STUDIED in codings_of(comp.get("code")):
            for system, code in codings_of(comp.get("valueCodeableConcept")):
                gene = GENES.get(code if code.startswith("HGNC:") else f"HGNC:{code}")
                if gene and (system in HGNC_SYSTEMS or system.endswith("genenames.org/geneId")):
                    genes.add(gene)
    return genes


@dataclass
class Genotype:
    present: dict[str, list[tuple[Span, bool, str]]] = field(default_factory=dict)  # gene -> (date, V600E, ref)
    studied: dict[str, list[tuple[Span, str]]] = field(default_factory=dict)  # gene -> (date, ref)


class Mcode:
    def __init__(self, refs: PatientRefs, pool: Pool, out: Mapped) -> None:
        self.refs, self.pool, self.out = refs, pool, out
        self.n: list[tuple[bool, Span, bool, str]] = []  # (pathological, date, positive, ref)
        self.geno = Genotype()

    def owns(self, codings: list[tuple[str, str]]) -> bool:
        return any(cd in N_CODES or cd == VARIANT or cd == REGION_STUDIED for cd in codings)

    def read(self, res: dict[str, Any], index: int, url: str | None, codings: list[tuple[str, str]]) -> None:
        label = label_of(res, index)
        if not about_patient(res, label, url, self.refs, self.out) or not status_ok(res, label, self.out):
            return
        span = observed_at(res)
        if span is None:
            self.out.problems.append(Problem(UNDATED, label, "no date; ignored"))
            return
        if any(cd in N_CODES for cd in codings):
            positive, understood = n_positive(res.get("valueCodeableConcept"))
            if not understood:
                self.out.problems.append(Problem(CODE, label, "N category value not an AJCC N category the mapping "
                                                 "knows", "node_positive_primary"))
            elif positive is not None:
                self.n.append((any(cd in PATHOLOGICAL_N for cd in codings), span, positive, label))
            return
        genes = _genes(res)
        if VARIANT in codings:
            value = set(codings_of(res.get("valueCodeableConcept")))
            changes = " ".join(_component_codes(res, AMINO_ACID_CHANGE) + _component_codes(res, DNA_CHANGE)
                               + _component_codes(res, GENOMIC_DNA_CHANGE))
            v600e = any(p in changes for p in BRAF_V600E)
            for gene in genes:
                if VARIANT_PRESENT in value:
                    self.geno.present.setdefault(gene, []).append((span, v600e, label))
                elif VARIANT_ABSENT in value:
                    self.geno.studied.setdefault(gene, []).append((span, label))
        else:  # region studied: these genes were looked at
            for gene in genes:
                self.geno.studied.setdefault(gene, []).append((span, label))

    def settle(self) -> None:
        if self.n:  # pathological staging when there is one, else clinical; the latest of that kind
            kind = any(p for p, *_ in self.n)
            _, span, positive, ref = max((x for x in self.n if x[0] == kind), key=lambda x: x[1][0])
            source = "mCODE TNM regional nodes category (" + ("pathological" if kind else "clinical") + ")"
            # The primary's nodal status is a fact of the primary, like its Condition: read whatever its age (a
            # metachronous patient's resection is years old). A tumour board's restated value (local code) is a
            # record of its own and keeps the clinical record's TTL.
            self.pool.offer(c.BY_NAME["node_positive_primary"], None, positive, ref, ref, source)
        g = self.geno
        ras = [x for gene in ("KRAS", "NRAS") for x in g.present.get(gene, [])]
        source = "genomics-reporting Variant / Region Studied"
        if ras:
            span, _, ref = max(ras, key=lambda x: x[0][0])
            self.pool.offer(c.BY_NAME["ras_status"], span, "mutant", ref, ref, source)
        elif g.studied.get("KRAS"):
            span, ref = max(g.studied["KRAS"], key=lambda x: x[0][0])
            self.pool.offer(c.BY_NAME["ras_status"], span, "wild_type", ref, ref, source)
        braf = [x for x in g.present.get("BRAF", []) if x[1]]
        if braf:
            span, _, ref = max(braf, key=lambda x: x[0][0])
            self.pool.offer(c.BY_NAME["braf_v600e"], span, "mutant", ref, ref, source)
        elif g.studied.get("BRAF") or g.present.get("BRAF"):
            span, ref = max([(s, r) for s, r in g.studied.get("BRAF", [])]
                            + [(s, r) for s, _, r in g.present.get("BRAF", [])], key=lambda x: x[0][0])
            self.pool.offer(c.BY_NAME["braf_v600e"], span, "wild_type", ref, ref, source)
