"""The CDS Hooks card a surgeon reads: the risk and its band, what drives it in words, what is not known and
what would carry it, the clinical scores, and the data problems counted by kind (the full list is in the
API answers). Contract labels and clinical units throughout, never code names or log-odds; the indicator
follows the band (CDS Hooks allows info, warning, critical: a research estimate is never critical)."""

from __future__ import annotations

from typing import Any

from ehr.cds_models import OVERRIDE_REASONS, Card, CardsResponse, Link, Source
from ehr.fhir_read import BOUND, CONFLICT, IMPRECISE, MALFORMED, OTHER_PATIENT, PARTIAL, REFUSED, STALE, UNIT, Mapped
from feature_store.clinical import label, value_text
from feature_store.coverage import would_take

INDICATOR = {"low": "info", "intermediate": "info", "high": "warning"}
# Below this many percentage points of difference across its typical values, a missing input is listed
# briefly (finding it would hardly change this estimate).
SMALL_EFFECT = 0.02


def _pct(p: float) -> str:
    return f"{100 * p:.0f}%"


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
    STALE: "too old for its source (labs 30 days, imaging 60, plan 90, clinical record 365)",
    UNIT: "unit not understood", BOUND: "reported as a bound (<, >), not a value", CONFLICT: "values in conflict",
    OTHER_PATIENT: "about another patient", REFUSED: "refused by the contract",
}
# Why an input is not known, as the card says it (the value itself is never shown).
WHY = {STALE: "left out: too old", UNIT: "left out: unit not understood", BOUND: "only a bound (<, >)",
       CONFLICT: "left out: values in conflict", REFUSED: "refused", MALFORMED: "unreadable",
       PARTIAL: "only partly given"}


def problem_summary(mapped: Mapped | None, record: dict[str, Any]) -> str | None:
    """Counts of data problems per kind (the full list is in the API response, not the card). A problem with a
    value the chart has a good newer one for (years of older labs) changed nothing and is not counted."""
    if mapped is None or not mapped.problems:
        return None
    counts: dict[str, int] = {}
    for p in mapped.problems:
        if p.feature is None or p.feature not in record:
            counts[p.kind] = counts.get(p.kind, 0) + 1
    parts = [f"{n} {text}" for kind, text in PROBLEM_LABELS.items() if (n := counts.pop(kind, 0))]
    counts.pop(IMPRECISE, None)  # informative only: the value was used
    counts.pop(PARTIAL, None)  # said beside the input
    counts.pop("absent", None)  # an optional prefetch key not sent: for the integrator (discovery), not the surgeon
    if other := sum(counts.values()):
        parts.append(f"{other} other (malformed, undated, unknown code or after the decision date)")
    return "**Data problems:** " + "; ".join(parts) if parts else None


def _why(name: str, mapped: Mapped | None) -> str:
    if mapped is None:
        return ""
    kinds = mapped.reasons(name)
    reasons = [WHY[k] for k in kinds if k in WHY]
    refusal = next((p.message.removesuffix("; refused") for p in mapped.problems
                    if p.kind == REFUSED and p.feature == name), None)
    partial = next((p.message for p in mapped.problems if p.kind == PARTIAL and p.feature == name), None)
    reasons = [f"refused: {refusal}" if r == "refused" and refusal else partial if r == WHY[PARTIAL] and partial
               else r for r in reasons]
    return "; ".join(dict.fromkeys(reasons))


def not_known(names: list[str], mapped: Mapped | None, ranges: dict[str, tuple[float, float]]) -> list[str]:
    """One line per input the chart did not give: why, what would carry it, and how much the risk depends on
    it; inputs that would hardly change the estimate share one line."""
    lines, small = [], []
    order = sorted(names, key=lambda n: -(ranges[n][1] - ranges[n][0]) if n in ranges else 0)
    for name in order:
        why = _why(name, mapped)
        spread = ranges.get(name)
        if spread is not None and spread[1] - spread[0] < SMALL_EFFECT and not why:
            small.append(label(name))
            continue
        line = f"- {label(name)}" + (f" ({why})" if why else "") + f": would come from {would_take(name)}"
        if spread is not None:
            line += f"; risk {_pct(spread[0])} to {_pct(spread[1])} across typical values"
        lines.append(line)
    if small:
        lines.append(f"- Also not known, changing this estimate by under {100 * SMALL_EFFECT:.0f} points: "
                     + ", ".join(small))
    return lines


def _links(base_url: str, model_label: str, prefill_token: str | None) -> tuple[Source, list[Link]]:
    # base_url is the configured public URL, or "" for links relative to this service (never a Host header)
    source = Source(label=model_label, url=f"{base_url}/model")
    links = [Link(label="Model card and metrics", url=f"{base_url}/model")]
    if prefill_token:  # the token in the fragment, never the patient's values: see ehr/prefill.py
        links.insert(0, Link(label="Open in the risk calculator (prefilled; link valid 15 minutes, once)",
                             url=f"{base_url}/#prefill={prefill_token}"))
    return source, links


def build_cards(prediction: dict[str, Any] | None, record: dict[str, Any], base_url: str,
                missing_required: list[str], share: float, min_share: float, notice: str, model_label: str,
                mapped: Mapped | None = None, features: list[str] | None = None, prefill_token: str | None = None,
                from_store: dict[str, float] | None = None,
                ranges: dict[str, tuple[float, float]] | None = None) -> CardsResponse:
    source, links = _links(base_url, model_label, prefill_token)
    extra = [x for x in (_store_line(record, from_store), problem_summary(mapped, record)) if x]
    if prediction is None:
        inputs = features or []
        rest = [f for f in inputs if f not in record and f not in missing_required]
        # "required" only for the model's required inputs; with all of those known, the rest is just not known
        known_lines = (["", "**Required and not known**", *not_known(missing_required, mapped, {})]
                       if missing_required else [])
        detail = "\n".join([
            "Not enough data to estimate the risk responsibly "
            f"({_pct(share)} of inputs available; at least {_pct(min_share)} and all required inputs needed).",
            *known_lines,
            *(["", "**Also not known**" if missing_required else "**Not known**", *not_known(rest, mapped, {})]
              if rest else []),
            *[x for e in extra for x in ("", e)], "", f"_{notice}_"])
        return CardsResponse(cards=[Card(summary="PVE progression risk: not enough data to estimate (research use)",
                                         detail=detail, indicator="info", source=source, links=links)])
    p, band = prediction["probability"], prediction["risk_band"]
    missing = list(prediction["missing_inputs"])
    drivers = [f"- {_factor(f)}" for f in prediction["top_factors"]
               if f["value"] is not None and f["feature"] not in missing]
    scores = _score_line(prediction["clinical_scores"])
    bands = prediction["band_thresholds"]
    detail = "\n".join([
        f"**Estimated risk of {prediction.get('predicted_outcome', 'liver progression between PVE and resection')}: "
        f"{_pct(p)} ({band}).** Bands: low under {_pct(bands['low_below'])}, high from {_pct(bands['high_from'])}.",
        "", "**What drives this estimate**", *(drivers or ["- no single input stands out"]),
        *(["", "**Not known** (the model used its learned default)", *not_known(missing, mapped, ranges or {})]
          if missing else []),
        *(["", "**Clinical scores** (built for survival after resection, shown for comparison): " + scores]
          if scores else []),
        *[x for e in extra for x in ("", e)],
        *(["", f"**{prediction['question_note']}**"] if prediction.get("question_note") else []),
        "", f"_{notice}_",
    ])
    summary = f"PVE progression risk {_pct(p)} ({band}) - research use only"
    return CardsResponse(cards=[Card(summary=summary, detail=detail, indicator=INDICATOR[band], source=source,
                                     links=links, overrideReasons=OVERRIDE_REASONS)])


def _factor(f: dict[str, Any]) -> str:
    """'CEA 250.0 ng/mL raises the risk'; 'Bridging chemotherapy planned: no - lowers the risk'."""
    direction = "raises the risk" if f["contribution_log_odds"] > 0 else "lowers the risk"
    name, value = f["feature"], f["value"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{label(name)} {value_text(name, value)} {direction}"
    return f"{label(name)}: {value_text(name, value)} - {direction}"


def _store_line(record: dict[str, Any], from_store: dict[str, float] | None) -> str | None:
    if not from_store:
        return None
    stored = ", ".join(f"{label(f)} {value_text(f, record.get(f))} (recorded {age:.0f} days ago)"
                       for f, age in from_store.items())
    return f"**From the feature store** (not in the chart; fresh within each source's TTL): {stored}"


def not_assessed(reason: str, base_url: str, model_label: str, notice: str) -> CardsResponse:
    """A chart whose safety fields cannot be read: no risk, and why, in plain words (field names, never values)."""
    source, links = _links(base_url, model_label, None)
    detail = "\n".join([f"The chart was not scored: {reason}.", "",
                        "A field that decides whether the model applies (alive; an active, confirmed liver "
                        "metastasis) is read only when it is well formed; fix it in the chart to get a risk.",
                        "", f"_{notice}_"])
    return CardsResponse(cards=[Card(summary="PVE progression risk: not assessed, chart data unreadable "
                                             "(research use)", detail=detail, indicator="info", source=source,
                                     links=links)])
