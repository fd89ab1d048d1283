"""Values offered by the chart's readers, settled into one record: one rule for every route.

A value is dated by the record it came from; it is used only if it is not after the decision and not
older than its source group's TTL in the contract (labs 30 days, imaging 60, plan 90, clinical record
365, genotype never): the same rule as the feature store's. The newest value of each input wins; two
different values at that same time are a conflict, left missing and said, never a silent choice.
Values are kept at the contract's clinical precision."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ehr.fhir_read import BOUND, CONFLICT, FUTURE, IMPRECISE, STALE, Mapped, Problem
from feature_store import contract as c
from feature_store.clinical import clinical_round

Span = tuple[datetime, datetime, str]


@dataclass
class Candidate:
    when: datetime
    value: Any
    ref: str
    kind: str | None  # None: a value; BOUND: a bound that hides older values
    source: str = ""  # which profile or rule gave it (the response's input_sources)
    # Derived from dates of the problem list (synchronous metastases, disease-free interval): used only when
    # the chart records no value of the input itself.
    fallback: bool = False


@dataclass
class Pool:
    decision: datetime
    out: Mapped
    values: dict[str, list[Candidate]] = field(default_factory=dict)

    def offer(self, f: c.Feature, span: Span | None, value: Any, ref: str, where: str, source: str,
              kind: str | None = None, fallback: bool = False) -> bool:
        """Keep a value of `f` dated `span` (None: a fact of the chart as it stands now, such as a Condition's
        onset, which is current by construction); say why when it is not kept."""
        if span is not None and not self.fresh(f, span, where):
            return False
        self.add(f, span, value, ref, where, source, kind, fallback)
        return True

    def fresh(self, f: c.Feature, span: Span, where: str) -> bool:
        """Whether a value dated `span` can be used at the decision (not after it, not past its TTL)."""
        if span[0] > self.decision:
            self.out.problems.append(Problem(FUTURE, where, "dated after the decision date; ignored", f.name))
            return False
        ttl = f.ttl_days
        if ttl is not None and (self.decision - span[1]).days > ttl:
            self.out.problems.append(Problem(
                STALE, where, f"older than {ttl} days ({f.source_group.title}); ignored as stale", f.name))
            return False
        return True

    def add(self, f: c.Feature, span: Span | None, value: Any, ref: str, where: str, source: str,
            kind: str | None = None, fallback: bool = False) -> None:
        """Keep a value already checked with `fresh`."""
        if span is None:
            when = self.decision
        else:
            lo, hi, precision = span
            hi = min(hi, self.decision) if lo <= self.decision else hi
            when = lo + (hi - lo) / 2  # a partial date: the middle of its part before the decision
            if precision in ("year", "month") and kind is None:
                self.out.problems.append(Problem(IMPRECISE, where, f"dated to the {precision} only", f.name))
        self.values.setdefault(f.name, []).append(
            Candidate(when, clinical_round(f.name, value), ref, kind, source, fallback))

    def settle(self) -> None:
        """The newest value of each input into the record (a newest bound hides older values; two values at
        the newest time that differ are a conflict)."""
        out = self.out
        for name, cands in self.values.items():
            cands = [x for x in cands if not x.fallback] or cands
            newest = max(x.when for x in cands)
            latest = [x for x in cands if x.when == newest]
            if any(x.kind == BOUND for x in latest):
                continue  # the newest result is only a bound: no value, the bound's note says why
            distinct = {repr(x.value) for x in latest}
            if len(distinct) > 1:
                refs = ", ".join(sorted({x.ref for x in latest}))
                out.problems.append(Problem(CONFLICT, refs, f"{len(distinct)} different values at the same time; "
                                            "left missing rather than choosing one", name))
                continue
            out.record[name] = latest[0].value
            out.basis.extend(x.ref for x in latest)
            out.sources[name] = latest[0].source
        out.basis = list(dict.fromkeys(out.basis))
