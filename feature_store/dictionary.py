"""The contract as documents: the machine-readable summary logged with every model and the Markdown
data dictionary (generated, never edited by hand)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from feature_store import contract as c
from feature_store.standard_codes import rows_for


@lru_cache(maxsize=1)
def contract_summary() -> dict[str, Any]:
    """Machine-readable contract (served as model metadata, logged with every model)."""
    return {
        "version": c.CONTRACT_VERSION,
        "features": [
            {
                "name": f.name,
                "type": f.kind.value,
                "unit": f.unit,
                "minimum": f.minimum,
                "maximum": f.maximum,
                "categories": list(f.categories),
                "timing": f.timing.value,
                "coarse_of": list(f.derivation.sources) if f.derivation else [],
                "derivation": f.derivation.rule if f.derivation else None,
                "label": f.label,
                "description": f.description,
                "codes": [{"system": x.system, "code": x.code, "display": x.display} for x in f.codes],
                "source": f.source,
            }
            for f in c.FEATURES
        ],
    }


def data_dictionary_markdown() -> str:
    """The data dictionary, generated from the contract (docs are never edited by hand)."""
    lines = [
        "# Data dictionary",
        "",
        f"Generated from `feature_store/contract.py` (contract version {c.CONTRACT_VERSION}) by "
        "`pverisk data-dictionary`. Do not edit by hand.",
        "",
        "Pre-PVE features are the candidate inputs; each model uses the ones its training cohort "
        "recorded, and which of them it requires is the model's own (see its card and `GET /v1/model`). "
        "Coarse forms (a 0/1 flag where the fine feature is a count) are derived from the fine "
        "feature by the rule given, so a model trained on either form serves patients recorded "
        "either way. Post-PVE features are known only after the embolization and are refused as "
        "inputs of the pre-PVE model.",
        "",
        "| feature | label | type | unit | allowed | known | derived from | codes | in a standard chart | description "
        "| source |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in c.FEATURES:
        codes = "; ".join(f"{x.system.rsplit('/', 1)[-1]} {x.code}" for x in f.codes) or "-"
        derived = f.derivation.rule if f.derivation else "-"
        ehr = "; ".join(dict.fromkeys(r.profile_title for r in rows_for(f.name))) or (
            "local code only" if not f.derivation else "from its fine form")
        lines.append(
            f"| `{f.name}` | {f.label} | {f.kind.value} | {f.unit or '-'} | {f.range_text} | "
            f"{f.timing.value} | {derived} | {codes} | {ehr} | {f.description} | {f.source} |"
        )
    lines += [
        "",
        "Cohort columns that are never model inputs:",
        "",
        f"- `{c.PATIENT_ID}`: pseudonymous patient id (never logged).",
        f"- `{c.EVENT_TIMESTAMP}`: date of the PVE decision (the prediction time; point-in-time joins).",
        f"- `{c.OUTCOME_DATE}`: date the outcome was assessed.",
        f"- `{c.OUTCOME}`: progression of liver disease between PVE and planned resection (true/false).",
        f"- `{c.NON_RESECTION_REASON}`: one of {', '.join(c.NON_RESECTION_REASONS)}.",
        f"- `{c.PROGRESSION_DEFINITION}`: one of {', '.join(c.PROGRESSION_DEFINITIONS)}.",
        f"- `{c.TRUE_PROBABILITY}`: simulated cohorts only, the generating probability (the oracle).",
        f"- `{c.RECORDED_SCORE_PREFIX}<score>`: a clinical score the registry recorded itself (a baseline, never an input).",
        "",
        "Where each pre-PVE feature is recorded (one feature view each in the feature store, dated by its own "
        "records) and how long a value stays current for a decision: older values are missing, never carried "
        "forward. Coarse forms are recorded with their fine source.",
        "",
        "| source | TTL | features | why this TTL |",
        "|---|---|---|---|",
    ]
    for g in c.SOURCE_GROUPS.values():
        names = ", ".join(f"`{f.name}`" for f in c.features() if f.source_group is g)
        ttl = f"{g.ttl_days} days" if g.ttl_days is not None else "none"
        lines.append(f"| {g.title} (`{g.name}`) | {ttl} | {names} | {g.ttl_reason} |")
    lines.append("")
    return "\n".join(lines)
