"""Model card: the fields of "Model Cards for Model Reporting" (Mitchell et al. 2019) and
the TRIPOD+AI items that apply, as JSON and Markdown."""

from __future__ import annotations

from typing import Any

from feature_store import contract as c
from feature_store.study import INTENDED_QUESTION, OUTCOME_TEXT, POPULATION_TEXT, prediction_time_text
from training.card_sections import extra_markdown, optimism_markdown

RESEARCH_NOTICE = (
    "Research use only. Not a medical device and not validated for clinical decisions; "
    "predictions must not replace multidisciplinary judgement."
)

# The card's fixed text; build_card copies the containers so that no card shares them with another.
INTENDED_USE = {
    "purpose": "Estimate, at the PVE decision, the risk that colorectal liver metastases progress "
               "between portal vein embolization and planned resection.",
    "users": "Hepatobiliary surgeons, interventional radiologists, oncologists and researchers, "
             "as a research aid next to the clinical scores.",
    "notice": RESEARCH_NOTICE,
}
OUT_OF_SCOPE = (
    "Patients without colorectal liver metastases or not considered for PVE.",
    "Use after PVE with post-PVE measurements (hypertrophy, KGR): the model is pre-PVE only.",
    "Survival prediction; deciding treatment without clinical review.",
    "Any clinical use of a model trained on simulated data.",
)
MISSING_DATA_TEXT = ("Missing inputs are left missing: XGBoost learns a default direction per split. "
                     "The logistic baseline imputes the median with missing-indicators.")
LIMITATIONS = (
    "No published multivariable model of progression after PVE exists to validate against.",
    "Clinical scores (Fong, GAME, m-CRS, TBS) were built for survival after resection, not progression.",
    "Cohorts are small (40-600 per centre): intervals are wide; external validation is needed.",
)


def build_card(
    *,
    model_name: str,
    cohort: Any,
    features: list[str],
    params: dict[str, Any],
    calibration: dict[str, Any],
    evaluation: dict[str, Any],
    baselines: dict[str, Any],
    subgroups: list[dict[str, Any]],
    oracle: dict[str, Any] | None,
    evaluation_design: str,
    n_train: int,
    events_train: int,
    warnings: list[str],
    required: list[str] | None = None,
    skipped_features: list[dict[str, str]] | None = None,
    skipped_subgroups: list[dict[str, str]] | None = None,
    optimism: dict[str, float] | None = None,
    epv: float | None = None,
    n_columns: int | None = None,
    question_note: str | None = None,
    risk_bands: dict[str, Any] | None = None,
    slope_note: str | None = None,
    evaluation_cohort: Any | None = None,
    internal_external: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card as JSON: one section per Model Cards / TRIPOD+AI heading, in the order the Markdown reads."""
    required = required or []
    design = cohort.design.stated() if cohort.design else {}
    return {
        "model_details": _model_details(model_name, features, params, calibration),
        "intended_use": dict(INTENDED_USE),
        "out_of_scope": list(OUT_OF_SCOPE),
        "data": _data_section(cohort, n_train, events_train),
        "study_design": {
            "stated": design,
            "population": POPULATION_TEXT.get(design.get("population", ""), "not stated"),
            "intended_question": INTENDED_QUESTION,
            "differs_from_intended": question_note,
        },
        "outcome": _outcome_section(design),
        "predictors": _predictors(cohort, features, required),
        "features_skipped": skipped_features or [],
        "required_inputs": required,
        "sample_size": {"events": cohort.events, "candidate_predictor_parameters": n_columns,
                        "events_per_parameter": epv},
        "missing_data": MISSING_DATA_TEXT,
        "evaluation": _evaluation_section(evaluation_design, evaluation, subgroups, skipped_subgroups, slope_note,
                                          evaluation_cohort),
        "internal_validation": _internal_validation(optimism),
        "internal_external_validation": internal_external,
        "risk_bands": risk_bands,
        "baselines": baselines,
        "oracle": oracle,
        "calibration": {"method": calibration["method"]},
        "limitations": [*LIMITATIONS, *warnings],
    }


def _model_details(model_name: str, features: list[str], params: dict[str, Any],
                   calibration: dict[str, Any]) -> dict[str, Any]:
    # the constraints named are those of the inputs the model has, not of the whole contract
    monotone = [f.name for f in c.FEATURES if f.monotone and f.name in features]
    return {
        "name": model_name,
        "type": "XGBoost gradient-boosted trees, probability calibrated "
                f"({calibration['method']})"
                + (f", monotone constraints on {', '.join(monotone)}" if monotone else ", no monotone constraint "
                   "(none of the constrained features is among its inputs)"),
        "feature_contract_version": c.CONTRACT_VERSION,
        "hyperparameters": params,
        "tuning": "random search, stratified cross-validation (repeated for small cohorts) with early stopping",
    }


def _data_section(cohort: Any, n_train: int, events_train: int) -> dict[str, Any]:
    simulated = cohort.kind == "simulated"
    return {
        "dataset": cohort.name,
        "kind": cohort.kind,
        "simulated": simulated,
        "digest": cohort.digest,
        "patients": cohort.n,
        "events": cohort.events,
        "train_patients": n_train,
        "train_events": events_train,
        "note": ("SIMULATED data from a literature-grounded generator; performance says nothing about real "
                 "patients." if simulated else "Real cohort imported and validated against the contract."),
    }


def _outcome_section(design: dict[str, Any]) -> dict[str, Any]:
    # as the cohort stated it; nothing invented
    outcome_text = design.get("outcome_definition") or (OUTCOME_TEXT.get(design["outcome"]) if "outcome" in design
                                                        else None)
    return {
        "definition": outcome_text or "not stated by the cohort",
        "progression_definition": design.get("progression_definition", "not stated"),
        "horizon": f"{design['horizon_months']:g} months" if "horizon_months" in design else "not stated",
        "prediction_time": prediction_time_text(design),
    }


def _predictors(cohort: Any, features: list[str], required: list[str]) -> list[dict[str, Any]]:
    """The model's inputs in contract order, with their share missing in the cohort."""
    return [
        {"name": f.name, "type": f.kind.value, "unit": f.unit, "allowed": f.range_text,
         "required": f.name in required, "derived_from": f"{f.derivation.rule}" if f.derivation else None,
         "monotone": f.monotone, "missing_share": float(cohort.frame[f.name].isna().mean()) if f.name in
         cohort.frame else None,
         "codes": [f"{x.system} {x.code}" for x in f.codes]}
        for f in c.FEATURES if f.name in features
    ]


def _evaluation_section(evaluation_design: str, evaluation: dict[str, Any], subgroups: list[dict[str, Any]],
                        skipped_subgroups: list[dict[str, str]] | None, slope_note: str | None,
                        evaluation_cohort: Any | None) -> dict[str, Any]:
    return {"design": evaluation_design, "metrics": evaluation, "subgroups": subgroups,
            "subgroups_skipped": skipped_subgroups or [],
            "calibration_slope_note": slope_note,
            # the evaluation file's own design, when it is not the training cohort
            "cohort": ({"dataset": evaluation_cohort.name, "patients": evaluation_cohort.n,
                        "events": evaluation_cohort.events, "kind": evaluation_cohort.kind,
                        "study_design": evaluation_cohort.design.stated() if evaluation_cohort.design
                        else "not stated"} if evaluation_cohort is not None else None)}


def _internal_validation(optimism: dict[str, float] | None) -> dict[str, Any]:
    # figures from the training cohort only (never mixed into the evaluation table)
    return {"optimism_correction": (
        {**optimism, "method": "Harrell bootstrap optimism correction on the training cohort; hyperparameters "
         "held at the tuned values in each sample"} if optimism else None)}


def _f(x: Any, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def card_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown, from its JSON alone (so the file and `GET /v1/model` say the same)."""
    lines = _header_lines(card)
    lines += _performance_lines(card)
    lines += _evaluation_cohort(card["evaluation"].get("cohort"))
    lines += optimism_markdown(card)
    lines += _baseline_lines(card)
    lines += _subgroup_lines(card)
    lines += _predictor_lines(card)
    lines += extra_markdown(card)
    lines += ["", "## Limitations", *[f"- {x}" for x in card["limitations"]], ""]
    return "\n".join(lines)


def _header_lines(card: dict[str, Any]) -> list[str]:
    """Title, notice, data, model, intended use and scope, study design, outcome and sample size."""
    d = card["data"]
    return [
        f"# Model card: {card['model_details']['name']}",
        "",
        f"**{card['intended_use']['notice']}**",
        "",
        f"**Data: {d['kind'].upper()}** ({d['dataset']}, digest `{d['digest']}`). {d['note']}",
        "",
        "## Model", f"{card['model_details']['type']}. Feature contract "
        f"{card['model_details']['feature_contract_version']}. Tuning: {card['model_details']['tuning']}.",
        "",
        "## Intended use", card["intended_use"]["purpose"], "", f"Users: {card['intended_use']['users']}",
        "", "## Out of scope", *[f"- {x}" for x in card["out_of_scope"]],
        "", "## Study design",
        *([f"**{sd['differs_from_intended']}**", ""] if (sd := card.get("study_design", {})).get(
            "differs_from_intended") else []),
        *([f"- {k}: {' to '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
           for k, v in sd.get("stated", {}).items()] or ["- not stated by the cohort"]),
        "", "## Outcome", f"{card['outcome']['definition']} (progression definition: "
        f"{card['outcome'].get('progression_definition', 'not stated')}). Horizon: {card['outcome']['horizon']}. "
        f"Prediction time: {card['outcome']['prediction_time']}.",
        "", "## Data and sample size",
        f"{d['patients']} patients, {d['events']} events; training {d['train_patients']} patients, "
        f"{d['train_events']} events.", "", f"Missing data: {card['missing_data']}",
        *(["", f"Events per candidate predictor parameter: {_f(ss['events_per_parameter'], 1)} "
           f"({ss['events']} events, {ss['candidate_predictor_parameters']} parameters)."]
          if (ss := card.get("sample_size", {})).get("events_per_parameter") is not None else []),
    ]


def _performance_lines(card: dict[str, Any]) -> list[str]:
    m = card["evaluation"]["metrics"]
    return [
        "", "## Performance", f"Design: {card['evaluation']['design']}.", "",
        "| metric | value |", "|---|---|",
        f"| AUROC | {_f(m['auroc'])} ({_f(m['auroc_ci_low'])}-{_f(m['auroc_ci_high'])}) |",
        f"| average precision | {_f(m['average_precision'])} ({_f(m['average_precision_ci_low'])}-"
        f"{_f(m['average_precision_ci_high'])}) |",
        f"| Brier score | {_f(m['brier'])} |",
        f"| calibration intercept | {_f(m['calibration_intercept'])} |",
        f"| calibration slope | {_slope(m['calibration_slope'], card['evaluation'].get('calibration_slope_note'))} |",
    ]


def _baseline_lines(card: dict[str, Any]) -> list[str]:
    """The clinical scores on the same evaluation data, then the oracle (simulated data only)."""
    lines = ["", "### Baselines (same evaluation data)", "", "| model | n | AUROC | model AUROC, same patients |",
             "|---|---|---|---|"]
    for name, b in card["baselines"].items():
        skipped = f" ({b['skipped']})" if b.get("skipped") else f" ({b['note']})" if b.get("note") else ""
        lines.append(f"| {name} | {b.get('n', '-')} | {_f(b.get('auroc'))}{skipped} | "
                     f"{_f(b.get('model_auroc_same_patients'))} |")
    if card.get("oracle"):
        o = card["oracle"]
        lines += ["", f"Oracle (true simulated probabilities): AUROC {_f(o['auroc'])}, Brier {_f(o['brier'])}; "
                      f"model minus oracle AUROC {_f(o['auroc_gap'])}."]
    return lines


def _subgroup_lines(card: dict[str, Any]) -> list[str]:
    lines = ["", "### Subgroups", "", "| variable | level | n | events | AUROC | Brier |", "|---|---|---|---|---|---|"]
    for s in card["evaluation"]["subgroups"]:
        lines.append(f"| {s['variable']} | {s['level']} | {s['n']} | {s['events']} | {_f(s['auroc'])} | {_f(s['brier'])} |")
    for s in card["evaluation"].get("subgroups_skipped", []):
        lines.append(f"\nSubgroup {s['subgroup']} skipped: {s['reason']}.")
    return lines


def _predictor_lines(card: dict[str, Any]) -> list[str]:
    lines = ["", "## Predictors", "", "| name | type | unit | allowed | required | derived from | missing | codes |",
             "|---|---|---|---|---|---|---|---|"]
    for p in card["predictors"]:
        lines.append(f"| `{p['name']}` | {p['type']} | {p['unit'] or '-'} | {p['allowed']} | "
                     f"{'yes' if p.get('required') else 'no'} | {p.get('derived_from') or '-'} | "
                     f"{_share(p.get('missing_share'))} | "
                     f"{'; '.join(p['codes']) or '-'} |")
    if card.get("features_skipped"):
        lines += ["", "Contract features not used:", *[f"- `{x['feature']}`: {x['reason']}" for x in card["features_skipped"]]]
    return lines


def _slope(x: Any, note: str | None) -> str:
    """A calibration slope, or what its absence means (never a bare "nan")."""
    if isinstance(x, float) and x != x:
        return note or "undefined"
    return _f(x)


def _evaluation_cohort(cohort: dict[str, Any] | None) -> list[str]:
    if not cohort:
        return []
    design = cohort["study_design"]
    stated = ("; ".join(f"{k}: {' to '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                        for k, v in design.items()) if isinstance(design, dict) else design)
    return ["", f"Evaluation cohort: {cohort['dataset']} ({cohort['kind']}, {cohort['patients']} patients, "
                f"{cohort['events']} events); its study design: {stated or 'not stated'}."]
