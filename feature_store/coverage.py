"""Which of a model's inputs a standard (mCODE / US Core) chart can carry, from the mapping table
(feature_store/standard_codes.py): the listing in GET /v1/model and `pverisk ehr-coverage`."""

from __future__ import annotations

from typing import Any, Sequence

from feature_store import contract as c
from feature_store.standard_codes import NO_STANDARD, local_code, rows_for


def _fine(name: str) -> tuple[str, ...]:
    d = c.BY_NAME[name].derivation
    return tuple(d.sources) if d else (name,)


def _own(row: dict[str, Any], profile: str, name: str) -> dict[str, Any]:
    """A row for one input. The laboratory row covers four labs: each input lists only its own LOINC codes
    (from the contract), so an integration engineer reads which code carries which value."""
    if profile == "us-core-lab":
        own = [x.code for x in c.BY_NAME[name].codes if x.system == c.LOINC]
        row = {**row, "reads": f"code LOINC {' / '.join(own)} (also as a panel component)"}
    return dict(row, feature=name)


def coverage(features: Sequence[str]) -> dict[str, Any]:
    """Per model input: the standard rows that carry it (a coarse input through all its fine sources), or
    the local code it needs and why; and the share of the inputs an mCODE chart can fill."""
    inputs = []
    for name in features:
        sources = _fine(name)
        rows = {s: rows_for(s) for s in sources}
        standard = all(rows[s] for s in sources)
        entry: dict[str, Any] = {
            "feature": name, "label": c.BY_NAME[name].label, "standard": standard,
            "carried_by": [_own(r.as_dict(), r.profile, s) for s in sources for r in rows[s]],
            "local_code": local_code(name),
        }
        if c.BY_NAME[name].derivation:
            entry["derived_from"] = list(sources)
        if not standard:
            entry["why_local"] = "; ".join(NO_STANDARD.get(s, "no standard profile carries it")
                                           for s in sources if not rows[s])
        inputs.append(entry)
    n_standard = sum(1 for e in inputs if e["standard"])
    return {
        "inputs": inputs,
        "standard_inputs": n_standard,
        "total_inputs": len(inputs),
        "standard_share": round(n_standard / len(inputs), 3) if inputs else 0.0,
        "local_only": [e["feature"] for e in inputs if not e["standard"]],
        "note": "An mCODE STU3/STU4 and US Core chart carries the 'standard' inputs; the others need an Observation "
                "coded in the project's local code system (code = the input's name). Train a model on the inputs "
                "EHRs carry with `pverisk train --features` (README, EHR integration).",
    }


def would_take(name: str) -> str:
    """What in a chart would carry an input, in a few words (the card's "not known" lines)."""
    sources = _fine(name)
    parts = []
    for s in sources:
        rows = sorted(rows_for(s), key=lambda r: r.features[0] != s)  # the row that is mainly about it first
        loincs = [x.code for x in c.BY_NAME[s].codes if x.system == c.LOINC and (x.unit or x.answers)]
        if rows and loincs and rows[0].profile in ("us-core-lab", "tumor-marker"):
            parts.append(f"{rows[0].profile_title} (LOINC {' or '.join(loincs)})")
        elif rows:
            parts.append(rows[0].hint)
        else:
            parts.append(f"an Observation coded {local_code(s)} (no standard code)")
    return "; ".join(dict.fromkeys(parts))
