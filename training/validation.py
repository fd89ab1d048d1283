"""Carrying a model to a new centre (`pverisk validate`): the registered model scored on the centre's own
patients (validated against the contract first), its discrimination, calibration (plot, in the large,
slope) and decision curve with intervals, under the new cohort's own study design; then the update chosen
by closed testing (training/updating.py), registered as a new version tagged with the centre and gated like
any other: its card is the original's with a "validated at" section.

The gate for an updated model: the same bar (AUROC lower 95% bound, calibration slope in range), on the
update's cross-validated risks (an update fitted and judged on the same patients would pass by
construction). An eligible version gets the alias `centre-<name>`, never `champion`: it is the model for that
centre, and the champion stays what the multi-centre evidence chose. One that is not eligible gets
`centre-<name>-candidate`, never the general `candidate` alias (a model recalibrated for one centre must not be
what `import-model --alias candidate` fetches).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import mlflow
import numpy as np
import pandas as pd

from feature_store import contract as c
from feature_store.coarse import derive_coarse
from feature_store.encoding import encode, encode_array
from model_runtime.bands import derive_bands
from monitoring.profile import build_profile
from training import evaluate as ev
from training import registry
from training.centre_metrics import centre_row
from training.data import Cohort, design_tags, load_cohort
from training.settings import TrackingSettings, TrainSettings
from training.tracking import conda_env, configure_tracking, tracking_guard
from training.train import fit_model
from training.updating import REFIT, ClosedTest, closed_test, cross_validated, refit_allowed, refit_out_of_fold
from training.validation_plots import log_validation_figures

Progress = Callable[[str], None]


@dataclass
class ValidationResult:
    centre: str
    parent_version: str
    n: int
    events: int
    before: dict[str, Any]
    closed: ClosedTest
    after: dict[str, Any]
    study_design: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)
    version: str | None = None
    alias: str | None = None
    gate_reason: str | None = None
    run_id: str | None = None


def _alias_for(centre: str) -> str:
    return "centre-" + (re.sub(r"[^a-z0-9]+", "-", centre.lower()).strip("-") or "unnamed")[:50]


def _warnings(cohort: Cohort, settings: TrainSettings) -> list[str]:
    out = []
    small = min(cohort.events, cohort.n - cohort.events)
    if small < settings.evaluation_min_events:
        out.append(f"Small validation cohort: {cohort.n} patients, {cohort.events} events. Every figure below has a "
                   f"wide interval; at least {settings.evaluation_min_events} events and as many non-events are "
                   "needed for a precise calibration slope (Riley et al. 2021). Read the update as provisional.")
    return out


def assess_at_centre(cohort: Cohort, model: Any, meta: dict[str, Any], centre: str, settings: TrainSettings,
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The model's risks for the centre's patients and its figures there, with intervals."""
    frame = cohort.frame
    y = frame[c.OUTCOME].to_numpy(int)
    p = registry.predict_registered(model, meta, frame)
    row = centre_row(centre, y, p, settings.centre_min_events)
    before: dict[str, Any] = {"row": row, "brier": float(np.mean((p - y) ** 2))}
    if "too_small" not in row:
        boot = ev.metrics_with_ci(y, p, settings.n_bootstrap, settings.seed)
        before.update({"auroc": row["auroc"], "auroc_ci_low": row["auroc_ci_low"], "auroc_ci_high": row["auroc_ci_high"],
                       "auroc_bootstrap_ci": [boot["auroc_ci_low"], boot["auroc_ci_high"]],
                       "citl": row["calibration_intercept"], "citl_ci_low": row["intercept_ci_low"],
                       "citl_ci_high": row["intercept_ci_high"], "slope": row["calibration_slope"],
                       "slope_ci_low": row["slope_ci_low"], "slope_ci_high": row["slope_ci_high"],
                       "slope_note": ev.slope_undefined_reason(y, p)})
    return y, p, before


def choose_update(cohort: Cohort, y: np.ndarray, p: np.ndarray, meta: dict[str, Any], settings: TrainSettings
                  ) -> tuple[ClosedTest, np.ndarray, Any]:
    """Closed testing; returns the test, the chosen update's cross-validated risks and the refit model (if any)."""
    features = meta["features"]
    why_not = refit_allowed(int(y.sum()), int(len(y) - y.sum()), len(features), settings.refit_events_per_input)
    X = None
    refit_oof = None
    small = settings.model_copy(update={"trials": max(1, settings.trials // 3)})
    if why_not is None:
        filled, _ = derive_coarse(cohort.frame, features)
        X = pd.DataFrame(encode_array(filled, features), columns=c.model_columns(features))
        refit_oof = refit_out_of_fold(X, y, lambda Xa, ya: fit_model(Xa, ya, small).predict, seed=settings.seed)
    test = closed_test(y, p, refit_oof, len(meta["columns"]) + 1, settings.update_alpha, why_not or "")
    if test.chosen == REFIT:
        return test, refit_oof, fit_model(X, y, small)  # type: ignore[arg-type]
    return test, cross_validated(y, p, test.chosen, seed=settings.seed), None


def _after(y: np.ndarray, p_cv: np.ndarray, settings: TrainSettings) -> dict[str, Any]:
    core = ev.core_metrics(y, p_cv) if 0 < y.sum() < len(y) else {}
    if not core:
        return {}
    boot = ev.metrics_with_ci(y, p_cv, settings.n_bootstrap, settings.seed)
    return {"auroc": core["auroc"], "auroc_ci_low": boot["auroc_ci_low"], "auroc_ci_high": boot["auroc_ci_high"],
            "citl": core["calibration_intercept"], "slope": core["calibration_slope"], "brier": core["brier"],
            "slope_note": ev.slope_undefined_reason(y, p_cv),
            "design": "the update fitted without each patient (5-fold cross-validation); the refit's out-of-fold risks"}


def validate_centre(data: Path, *, version: str | None = None, alias: str | None = None, centre: str | None = None,
                    settings: TrainSettings | None = None, tracking: TrackingSettings | None = None,
                    register: bool = True, progress: Progress = lambda m: None) -> ValidationResult:
    """Raises CohortValidationError (every bad row) before anything is written, or LookupError for a model
    that is not registered."""
    settings = settings or TrainSettings()
    tracking = tracking or TrackingSettings()
    progress("validating the centre's file")
    cohort = load_cohort(Path(data))
    name = centre or (cohort.design.site if cohort.design and cohort.design.site else cohort.name)
    client = configure_tracking(tracking)
    mv = _resolve(client, tracking.registered_model, version, alias)
    model, meta = registry.load_registered(f"models:/{tracking.registered_model}/{mv.version}")
    progress(f"scoring {cohort.n} patients with version {mv.version}")
    y, p, before = assess_at_centre(cohort, model, meta, name, settings)
    progress("closed testing of the updating methods")
    test, p_cv, refit = choose_update(cohort, y, p, meta, settings)
    result = ValidationResult(name, str(mv.version), cohort.n, cohort.events, before, test, _after(y, p_cv, settings),
                              cohort.design.stated() if cohort.design else None, _warnings(cohort, settings))
    if register:
        stage: list[str] = []
        run_ids: list[str] = []
        with tracking_guard(tracking.tracking_uri, stage, run_ids):
            _register(client, tracking, settings, cohort, mv, model, meta, result, y, p, p_cv, refit, run_ids)
    return result


def _resolve(client: Any, name: str, version: str | None, alias: str | None) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        if version is not None:
            return client.get_model_version(name, str(version))
        return client.get_model_version_by_alias(name, alias or registry.CHAMPION)
    except MlflowException:
        what = f"version {version}" if version is not None else f"alias {alias or registry.CHAMPION!r}"
        raise LookupError(f"no registered {name!r} with {what}: see `pverisk models`") from None


def validated_entry(result: ValidationResult, cohort: Cohort) -> dict[str, Any]:
    return {"centre": result.centre, "dataset": cohort.name, "kind": cohort.kind, "n": result.n,
            "events": result.events, "study_design": result.study_design, "parent_version": result.parent_version,
            "before": {k: v for k, v in result.before.items() if k != "row"}, "after": result.after,
            "method": result.closed.chosen, "reason": result.closed.reason, "tests": result.closed.tests,
            "warnings": result.warnings}


def _register(client: Any, tracking: TrackingSettings, settings: TrainSettings, cohort: Cohort, mv: Any, model: Any,
              meta: dict[str, Any], result: ValidationResult, y: np.ndarray, p: np.ndarray, p_cv: np.ndarray,
              refit: Any, run_ids: list[str]) -> None:
    name = tracking.registered_model
    kind = "simulated" if cohort.simulated or mv.tags.get("data_kind") == "simulated" else cohort.kind
    tags = {"data_kind": kind, "simulated": str(kind == "simulated").lower(), "research_use_only": "true",
            "centre": result.centre, "parent_version": str(mv.version), "updating_method": result.closed.chosen,
            "dataset_name": cohort.name, "dataset_digest": cohort.digest, "feature_contract_version": c.CONTRACT_VERSION,
            **design_tags(cohort.design)}
    entry = validated_entry(result, cohort)
    with mlflow.start_run(run_name=f"validate-{result.centre}", tags=tags) as run:
        run_ids.append(run.info.run_id)
        mlflow.log_metrics({f"before_{k}": float(v) for k, v in result.before.items() if isinstance(v, float)})
        mlflow.log_metrics({f"after_{k}": float(v) for k, v in result.after.items() if isinstance(v, float)})
        mlflow.log_dict(entry, "validation/validation.json")
        log_validation_figures(y, p, p_cv, result.closed.chosen)
        card = _card(mv, meta, entry, kind)
        from training.model_card import card_markdown

        markdown = card_markdown(card)
        mlflow.log_dict(card, "model_card/model_card.json")
        mlflow.log_text(markdown, "model_card/model_card.md")
        info = _log_updated(cohort, meta, model, refit, result, p_cv)
        metrics = {"auroc": result.after.get("auroc", float("nan")),
                   "auroc_ci_low": result.after.get("auroc_ci_low", float("nan")),
                   "calibration_slope": result.after.get("slope", float("nan"))}
        why_not = registry.eligibility(metrics, settings, result.after.get("slope_note"))
        decision = registry.GateDecision(
            f"{_alias_for(result.centre)}-{registry.CANDIDATE}" if why_not else _alias_for(result.centre),
            f"not eligible: {why_not}" if why_not else (
                f"updated for {result.centre} ({result.closed.chosen}); cross-validated AUROC lower bound "
                f"{metrics['auroc_ci_low']:.3f}, calibration slope {metrics['calibration_slope']:.2f}; served for this "
                "centre by its alias, never as champion"), str(mv.version), None)
        with registry.registration_lock(client, name):
            version = registry.register(client, name, info.model_uri, info.model_id, run.info.run_id,
                                        {**tags, "run_id": run.info.run_id}, markdown, decision)
        mlflow.set_tags({"registered_version": version, "alias": decision.alias})
    result.version, result.alias, result.gate_reason, result.run_id = version, decision.alias, decision.reason, run.info.run_id


def _card(mv: Any, meta: dict[str, Any], entry: dict[str, Any], kind: str) -> dict[str, Any]:
    try:
        card = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/model_card/model_card.json")
    except Exception:  # a parent without a card: the validation alone
        card = {"model_details": {"name": mv.name}, "data": {"kind": kind}}
    card = dict(card)
    card["validated_at"] = [*card.get("validated_at", []), entry]
    card.setdefault("data", {})["kind"] = kind
    return card


def _log_updated(cohort: Cohort, meta: dict[str, Any], model: Any, refit: Any, result: ValidationResult,
                 p_cv: np.ndarray) -> Any:
    from mlflow.models import infer_signature

    features = meta["features"]
    update = result.closed.updates[result.closed.chosen]
    calibration = refit.calibration if refit is not None else dict(meta.get("calibration") or {})
    if update.spec():
        calibration = {**calibration, "recalibration": update.spec()}
    reference = build_profile(encode_array(cohort.frame, features), features, p_cv, source={
        "dataset_name": cohort.name, "data_kind": cohort.kind, "inputs": f"the centre's cohort ({cohort.n} patients)",
        "scores": "cross-validated risks of the updated model"})
    metadata = {**meta, "calibration": calibration, "reference_profile": reference,
                "risk_bands": derive_bands(float(cohort.frame[c.OUTCOME].mean())),
                "validated_at": result.centre, "parent_version": result.parent_version,
                "updating_method": result.closed.chosen,
                "metrics": {"auroc": result.after.get("auroc"), "calibration_slope": result.after.get("slope"),
                            "calibration_intercept": result.after.get("citl"), "brier": result.after.get("brier")}}
    classifier = refit.classifier if refit is not None else model
    example = encode(pd.DataFrame([c.example_record(features)]), features)
    return mlflow.xgboost.log_model(classifier, name="model", signature=infer_signature(
        example, classifier.predict_proba(example)[:, 1]), input_example=example, metadata=metadata,
        model_format="json", conda_env=conda_env())
