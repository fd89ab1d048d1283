"""How much a risk depends on an input the chart did not give: the patient's risk recomputed with that input
set to typical values (the 10th and 90th centiles of the training cohort, from the reference profile the
model carries; each level of a yes/no or category), everything else as it is. Shown on the card beside
an input that is not known, so a surgeon can see whether finding it would change the answer."""

from __future__ import annotations

from typing import Any, Mapping

from feature_store import contract as c


def _typical(name: str, profile: Mapping[str, Any]) -> list[Any]:
    f = c.BY_NAME[name]
    if f.kind in (c.Kind.NUMBER, c.Kind.INTEGER):
        edges = (profile.get(name) or {}).get("edges") or []
        return [edges[0], edges[-1]] if edges else []
    if f.kind is c.Kind.BOOLEAN:
        return [False, True]
    return list(f.known_categories)


def risk_ranges(record: Mapping[str, Any], names: list[str], risk: Any) -> dict[str, tuple[float, float]]:
    """Model input -> (lowest, highest) risk over its typical values, for the inputs in `names` (one batch
    through the model; none when the model carries no reference profile)."""
    profile = ((risk.metadata.get("reference_profile") or {}).get("features") or {})
    rows: list[dict[str, Any]] = []
    owners: list[str] = []
    for name in names:
        for value in _typical(name, profile):
            rows.append({**record, name: value})
            owners.append(name)
    if not rows:
        return {}
    keys = set().union(*rows)
    columns = {k: [r.get(k) for r in rows] for k in keys}
    derived, conflicts = risk.derive(columns)
    if conflicts:  # a typical value contradicting a coarse flag in the record: no range for that input
        bad = {owners[i] for rows_ in conflicts.values() for i in rows_}
        keep = [i for i, o in enumerate(owners) if o not in bad]
        if not keep:
            return {}
        derived = {k: [v[i] for i in keep] for k, v in derived.items()}
        owners = [owners[i] for i in keep]
    p = risk.score_arrays(derived, len(owners), explain=False).probability
    out: dict[str, tuple[float, float]] = {}
    for name, prob in zip(owners, p.tolist()):
        lo, hi = out.get(name, (prob, prob))
        out[name] = (min(lo, prob), max(hi, prob))
    return out
