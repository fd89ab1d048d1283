"""The CDS Hooks card: the risk, its band, factors and scores at clinical precision, what is missing
and why, and the data problems counted by kind (the full list is in the API answers)."""

from __future__ import annotations

from typing import Any

from ehr.cds_models import OVERRIDE_REASONS, Card, CardsResponse, Link, Source
from ehr.fhir_read import BOUND, IMPRECISE, MALFORMED, OTHER_PATIENT, REFUSED, STALE, UNIT, Mapped
from feature_store import contract as c


def _pct(p: float) -> str:
    return f"{100 * p:.0f}%"


# Decimals a clinician reads a value at, by contract unit (a lab prints bilirubin 1.1, not 1.1228).
DECIMALS_BY_UNIT = {"years": 0, "count": 0, "cycles": 0, "10^9/L": 0, "%": 0, "months": 0, "weeks": 0,
                    "ratio": 1, "mg/dL": 1, "g/dL": 1, "ng/mL": 1, "cm": 1}


def clinical_value(name: str, value: Any) -> str:
    """A feature's value as a clinician reads it: rounded to clinical precision, with its unit."""
    if isinstance(value, bool) or value is None:
        # a missing input the model routed down its learned default branch
        return "yes" if value is True else "no" if value is False else "missing"
    if isinstance(value, (int, float)):
        f = c.BY_NAME.get(name)
        unit = f.unit if f else None
        decimals = DECIMALS_BY_UNIT.get(unit or "", 2)
        text = f"{value:.{decimals}f}"
        if unit == "%":
            return f"{text}%"
        return f"{text} {unit}" if unit and unit not in ("count", "ratio") else text
    return str(value).replace("_", " ")


def _score_line(s: dict[str, Any]) -> str | None:
    """The clinical scores that could be computed; absent ones are left out, not printed as None."""
    parts = []
    if s.get("fong_crs") is not None:
        parts.append(f"Fong CRS {s['fong_crs']:.0f}")
    if s.get("game_score") is not None:
        parts.append(f"GAME {s['game_score']:.0f}" + (f" ({s['game_group']})" if s.get("game_group") else ""))
    if s.get("m_crs") is not None:
        parts.append(f"m-CRS {s['m_crs']:.0f}")
    if s.get("tumour_burden_score") is not None:
        parts.append(f"TBS {s['tumour_burden_score']:.1f}")
    return "; ".join(parts) or None


PROBLEM_LABELS = {
    STALE: "stale", UNIT: "unit not understood", BOUND: "reported as a bound (<, >), not a value",
    OTHER_PATIENT: "about another patient", REFUSED: "refused by the contract",
}


def problem_summary(mapped: Mapped | None, max_age_days: int) -> str | None:
    """Counts of data problems per kind (the full list is in the API response, not the card)."""
    if mapped is None or not mapped.problems:
        return None
    counts = mapped.counts()
    parts = []
    for kind, label in PROBLEM_LABELS.items():
        n = counts.pop(kind, 0)
        if n:
            extra = f" (older than {max_age_days} days)" if kind == STALE else ""
            parts.append(f"{n} {label}{extra}")
    counts.pop(IMPRECISE, None)  # informative only: the value was used
    other = sum(counts.values())
    if other:
        parts.append(f"{other} other (malformed, undated, unknown code or after the decision date)")
    refused = sorted({p.feature for p in mapped.problems if p.kind == REFUSED and p.feature})
    text = "**Data problems:** " + ("; ".join(parts) if parts else "none that changed an input")
    if refused:
        text += ". Refused: " + ", ".join(f"`{r}`" for r in refused)
    return text


def missing_explained(names: list[str], mapped: Mapped | None) -> str:
    """Missing inputs, each with why when the chart had it (stale, refused, unit, bound)."""
    out = []
    for name in names:
        kinds = [k for k in (mapped.reasons(name) if mapped else []) if k in PROBLEM_LABELS or k == MALFORMED]
        why = {STALE: "present but stale", REFUSED: "refused", UNIT: "unit not understood", BOUND: "only a bound",
               MALFORMED: "unreadable"}
        reasons = [why[k] for k in kinds if k in why]
        refusal = next((p.message.removesuffix("; refused") for p in mapped.problems
                        if p.kind == REFUSED and p.feature == name), None) if mapped else None
        if refusal:  # say why the contract refused it (the allowed range), never the value
            reasons = [f"refused: {refusal}" if r == "refused" else r for r in reasons]
        out.append(f"`{name}`" + (f" ({', '.join(reasons)})" if reasons else ""))
    return ", ".join(out) or "none"


def build_cards(prediction: dict[str, Any] | None, mapped_record: dict[str, Any], notes: list[str],
                base_url: str, missing_required: list[str], share: float, min_share: float,
                notice: str, model_label: str, mapped: Mapped | None = None, max_age_days: int = 120,
                features: list[str] | None = None, prefill_token: str | None = None,
                from_store: dict[str, float] | None = None) -> CardsResponse:
    source = Source(label=model_label, url=f"{base_url}/model")
    links = [Link(label="Model card and metrics", url=f"{base_url}/model")]
    if prefill_token:
        # the token in the fragment, never the patient's values: see ehr/prefill.py
        links.insert(0, Link(label="Open in the risk calculator (prefilled; link valid 15 minutes)",
                             url=f"{base_url}/#prefill={prefill_token}"))
    summary_line = problem_summary(mapped, max_age_days)
    if from_store:
        stored = ", ".join(f"`{f}` = {clinical_value(f, mapped_record.get(f))} (recorded {age:.0f} days ago)"
                           for f, age in from_store.items())
        store_line = f"**From the feature store** (not in the chart; fresh within each source's TTL): {stored}"
        summary_line = f"{store_line}\n\n{summary_line}" if summary_line else store_line
    if prediction is None:
        inputs = features or c.feature_names()
        missing = missing_required or [f for f in inputs if f not in mapped_record]
        stale_or_refused = [f for f in inputs if f not in mapped_record and f not in missing
                            and mapped and set(mapped.reasons(f)) & {STALE, REFUSED, UNIT, BOUND}]
        detail = "\n".join([
            "Not enough data to estimate the risk responsibly "
            f"({_pct(share)} of inputs available; at least {_pct(min_share)} and all required inputs needed).",
            "", "**Missing required inputs:** " + missing_explained(missing, mapped),
            *(["", "**Also not usable:** " + missing_explained(stale_or_refused, mapped)] if stale_or_refused else []),
            *(["", summary_line] if summary_line else []),
            "", f"_{notice}_",
        ])
        return CardsResponse(cards=[Card(summary="PVE progression risk: not enough data to estimate (research use)",
                                         detail=detail, indicator="info", source=source, links=links)])
    p, band = prediction["probability"], prediction["risk_band"]
    indicator = {"low": "info", "intermediate": "warning", "high": "critical"}[band]
    factors = "\n".join(f"- `{f['feature']}` = {clinical_value(f['feature'], f['value'])}: {f['direction']} "
                        f"({f['contribution_log_odds']:+.2f} log-odds)" for f in prediction["top_factors"])
    scores = _score_line(prediction["clinical_scores"])
    detail = "\n".join([
        f"**Estimated risk of {prediction.get('predicted_outcome', 'liver progression between PVE and resection')}: "
        f"{_pct(p)} ({band}).** "
        f"Bands: low < {_pct(prediction['band_thresholds']['low_below'])}, high >= "
        f"{_pct(prediction['band_thresholds']['high_from'])}.",
        "", "**Top factors**", factors or "- none",
        *(["", "**Clinical scores** (built for survival after resection, shown for comparison): " + scores]
          if scores else []),
        "", "**Missing inputs:** " + missing_explained(prediction["missing_inputs"], mapped),
        *(["", summary_line] if summary_line else []),
        *(["", f"**{prediction['question_note']}**"] if prediction.get("question_note") else []),
        "", f"_{notice}_",
    ])
    summary = f"PVE progression risk {_pct(p)} ({band}) - research use only"
    return CardsResponse(cards=[Card(summary=summary, detail=detail, indicator=indicator, source=source,
                                     links=links, overrideReasons=OVERRIDE_REASONS)])
