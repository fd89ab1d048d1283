"""Model-card sections beyond the basic ones (training/model_card.py): internal validation on the training
cohort, internal-external validation across centres, federated sites, risk bands, and the centres a model
was validated (and updated) at. Each renders from the card's JSON, so the Markdown and `GET /v1/model`
say the same."""

from __future__ import annotations

from typing import Any


def _f(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _ci(est: Any, lo: Any, hi: Any, nd: int = 3) -> str:
    if est is None or (isinstance(est, float) and est != est):
        return "-"
    return f"{_f(est, nd)} ({_f(lo, nd)} to {_f(hi, nd)})"


def optimism_markdown(card: dict[str, Any]) -> list[str]:
    """Harrell's optimism correction: figures from the training cohort alone, in a table of their own."""
    opt = (card.get("internal_validation") or {}).get("optimism_correction")
    if not opt:
        return []
    slope = (_f(opt["apparent_calibration_slope"]) if opt["apparent_calibration_slope"] == opt[
        "apparent_calibration_slope"] else "undefined (see Limitations: why)")
    return ["", "### Internal validation (training cohort only, not the evaluation above)", "",
            "| metric | apparent | optimism-corrected |", "|---|---|---|",
            f"| AUROC | {_f(opt['apparent_auroc'])} | {_f(opt['optimism_corrected_auroc'])} |",
            f"| calibration slope | {slope} | {_f(opt['optimism_corrected_calibration_slope'])} |",
            "", f"{opt['method']}; {int(opt['optimism_bootstrap_samples'])} bootstrap samples (each with at least "
                "two patients of each outcome)."]


def _pooled_rows(pooled: dict[str, Any]) -> list[str]:
    rows = []
    for name, p in pooled.items():
        if not p or p.get("k", 0) == 0:
            rows.append(f"| {name} | - | - | - | - | {p.get('note', 'no centre with a figure') if p else '-'} |")
            continue
        rows.append(f"| {name} | {p['k']} | {_ci(p['estimate'], p['ci_low'], p['ci_high'])} | "
                    f"{_f(p.get('pi_low'))} to {_f(p.get('pi_high'))} | {_f(p['i2'], 2)} / {_f(p['tau2'], 4)} | "
                    f"{p.get('note', '')} |")
    return rows


def centres_markdown(block: dict[str, Any], title: str) -> list[str]:
    """Per-centre figures with intervals, the random-effects pooled estimates and the centres too small."""
    lines = ["", f"## {title}", "", block.get("design", ""), "",
             "| centre | patients | events | AUROC (95% CI) | calibration intercept (95% CI) | "
             "calibration slope (95% CI) |", "|---|---|---|---|---|---|"]
    for r in block.get("centres", []):
        lines.append(f"| {r['centre']} | {r['n']} | {r['events']} | "
                     f"{_ci(r.get('auroc'), r.get('auroc_ci_low'), r.get('auroc_ci_high'))} | "
                     f"{_ci(r.get('calibration_intercept'), r.get('intercept_ci_low'), r.get('intercept_ci_high'), 2)} | "
                     f"{_ci(r.get('calibration_slope'), r.get('slope_ci_low'), r.get('slope_ci_high'), 2)} |")
    lines += ["", "Pooled by random-effects meta-analysis (" + block.get("method", "") + "):", "",
              "| measure | centres | pooled (95% CI) | 95% prediction interval, new centre | I2 / tau2 | note |",
              "|---|---|---|---|---|---|", *_pooled_rows(block.get("pooled", {}))]
    small = block.get("too_small", [])
    if small:
        lines += ["", "Centres listed without a figure (too small), never dropped silently:",
                  *[f"- {s['centre']}: {s['reason']}" for s in small]]
    if block.get("forest_plot"):
        lines += ["", f"Forest plot: `{block['forest_plot']}` (MLflow run artifact)."]
    return lines


def federated_markdown(fed: dict[str, Any]) -> list[str]:
    lines = ["", "## Federated training", "",
             f"Flower {fed.get('flower_version', '')}, strategy {fed['strategy']}, {fed['rounds']} rounds; only model "
             "updates and aggregate metrics left the sites, never rows or identifiers.", "",
             "| site | patients | events | took part | study design |", "|---|---|---|---|---|"]
    for s in fed.get("sites", []):
        design = s.get("study_design") or {}
        stated = "; ".join(f"{k}: {v}" for k, v in design.items()) if design else "not stated"
        lines.append(f"| {s['site']} | {s.get('n', '-')} | {s.get('events', '-')} | {s.get('status', '')} | {stated} |")
    for note in fed.get("notes", []):
        lines.append(f"\n{note}")
    recorded = fed.get("inputs_recorded_by") or {}
    if recorded:
        lines += ["", "| input | recorded by |", "|---|---|",
                  *[f"| `{k}` | {', '.join(v) or 'none'} |" for k, v in recorded.items()]]
    return lines


def bands_markdown(bands: dict[str, Any] | None) -> list[str]:
    if not bands:
        return []
    return ["", "## Risk bands", "",
            f"Low below {bands['low_below']:.0%}, high from {bands['high_from']:.0%} (training outcome rate "
            f"{bands.get('base_rate', 0):.1%}; rule: {bands.get('rule', '')}). A deployment may override them "
            "(PVERISK_SERVE_BAND_LOW_BELOW / _HIGH_FROM). Descriptive cut-offs, not validated decision thresholds."]


def validated_markdown(entries: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for v in entries:
        b, a = v.get("before", {}), v.get("after", {})
        lines += ["", f"## Validated at {v['centre']}", "",
                  f"{v['n']} patients, {v['events']} events ({v.get('dataset', '')}); study design: "
                  f"{v.get('study_design') or 'not stated'}.", "",
                  "| | AUROC (95% CI) | calibration-in-the-large (95% CI) | calibration slope (95% CI) |",
                  "|---|---|---|---|",
                  f"| version {v['parent_version']} as trained | {_ci(b.get('auroc'), b.get('auroc_ci_low'), b.get('auroc_ci_high'))} | "
                  f"{_ci(b.get('citl'), b.get('citl_ci_low'), b.get('citl_ci_high'), 2)} | "
                  f"{_ci(b.get('slope'), b.get('slope_ci_low'), b.get('slope_ci_high'), 2)} |",
                  f"| updated ({v['method']}), cross-validated | {_f(a.get('auroc'))} | {_f(a.get('citl'), 2)} | "
                  f"{_f(a.get('slope'), 2)} |", "", f"Updating: {v['method']}: {v['reason']}"]
        lines += [f"\n**{w}**" for w in v.get("warnings", [])]
    return lines


def extra_markdown(card: dict[str, Any]) -> list[str]:
    lines = bands_markdown(card.get("risk_bands"))
    if card.get("internal_external_validation"):
        lines += centres_markdown(card["internal_external_validation"], "Internal-external validation (one centre "
                                  "left out at a time)")
    if card.get("federated"):
        lines += federated_markdown(card["federated"])
        if card["federated"].get("site_evaluation"):
            lines += centres_markdown(card["federated"]["site_evaluation"], "Held-out patients of each site")
    lines += validated_markdown(card.get("validated_at") or [])
    return lines
