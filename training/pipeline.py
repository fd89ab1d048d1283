"""The training run: validate, split, tune, fit, calibrate, evaluate, log, gate, register.

Validation happens before anything is written to MLflow (training/prepare.py); registration happens
last and is undone on failure, so a failed run leaves no half-registered model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import mlflow
import pandas as pd
from mlflow.models import infer_signature

from feature_store import contract as c
from feature_store.dictionary import contract_summary
from feature_store.encoding import encode, encode_array
from model_runtime.bands import derive_bands
from monitoring.profile import build_profile
from training import registry
from training.assessment import Assessment, assess, log_figures
from training.data import design_tags
from training.iecv import internal_external
from training.model_card import RESEARCH_NOTICE, build_card, card_markdown
from training.prepare import Plan, prepare
from training.settings import TrackingSettings, TrainSettings
from training.tracking import (
    conda_env,
    configure_tracking,
    dataset_source,
    git_commit,
    tracking_guard,
)
from training.train import FittedModel, Trial, fit_model

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass
class TrainingResult:
    run_id: str
    model_uri: str
    registered_model: str
    version: str
    alias: str
    gate_reason: str
    features: list[str]
    required: list[str]
    skipped: list[dict[str, str]]
    question_note: str | None
    metrics: dict[str, float]
    baselines: dict[str, Any]
    oracle: dict[str, float] | None
    card: dict[str, Any]
    seconds: float
    warnings: list[str] = field(default_factory=list)
    # Harrell's optimism correction: training-cohort figures, kept apart from the evaluation metrics
    optimism: dict[str, float] | None = None


def run_training(
    data: Path,
    *,
    settings: TrainSettings | None = None,
    tracking: TrackingSettings | None = None,
    eval_data: Path | None = None,
    features: list[str] | None = None,
    data_kind: str | None = None,
    progress: Progress = lambda msg: None,
) -> TrainingResult:
    settings = settings or TrainSettings()
    tracking = tracking or TrackingSettings()
    t_start = time.perf_counter()
    progress("validating data")
    plan = prepare(data, settings, eval_data, features, data_kind)  # raises with every bad row before MLflow
    stage: list[str] = []
    run_ids: list[str] = []
    report = progress

    def progress(msg: str) -> None:  # noqa: F811 - the caller's, remembering the stage for errors
        stage.append(msg)
        report(msg)

    with tracking_guard(tracking.tracking_uri, stage, run_ids):
        return _log_run(plan, settings, tracking, progress, t_start, run_ids)


def _log_run(plan: Plan, settings: TrainSettings, tracking: TrackingSettings, progress: Progress, t_start: float,
             run_ids: list[str]) -> TrainingResult:
    """Everything that talks to MLflow: the run, its logs, the gate and the registration."""
    client = configure_tracking(tracking)
    name = tracking.registered_model
    tags = _run_tags(plan)
    with mlflow.start_run(run_name=f"train-{plan.cohort.name}", tags=tags) as run:
        run_ids.append(run.info.run_id)
        _log_inputs(plan, settings)
        progress(f"tuning ({settings.trials} trials)")
        model = _tune(plan, settings, progress)
        progress("evaluating")
        result = assess(plan, model, settings, progress)
        iecv = internal_external(plan.cohort, plan.features, model, settings, progress)
        progress("plots and explanations")
        log_figures(plan, model, result)
        bands = derive_bands(float(plan.y_train.mean()))
        card = build_card(
            model_name=name, cohort=plan.cohort, features=plan.features, params=model.params,
            calibration=model.calibration, evaluation=result.metrics, baselines=result.baselines,
            subgroups=result.subgroups.to_dict("records"), oracle=result.oracle, evaluation_design=plan.design,
            n_train=len(plan.train_frame), events_train=int(plan.y_train.sum()), warnings=plan.notes,
            required=plan.choice.required, skipped_features=plan.choice.skipped,
            skipped_subgroups=result.skipped_subgroups, optimism=result.optimism, epv=plan.epv,
            n_columns=len(plan.columns), question_note=plan.note, risk_bands=bands, slope_note=result.slope_note,
            evaluation_cohort=plan.eval_cohort, internal_external=iecv,
        )
        markdown = card_markdown(card)
        mlflow.log_dict(card, "model_card/model_card.json")
        mlflow.log_text(markdown, "model_card/model_card.md")
        mlflow.log_dict(contract_summary(), "feature_contract.json")
        progress("logging the model")
        info = _log_model(plan, model, result, name, bands)
        progress("promotion gate and registration")
        version_tags = {**tags, "run_id": run.info.run_id, "auroc": f"{result.metrics['auroc']:.4f}",
                        "brier": f"{result.metrics['brier']:.4f}", "calibration": model.calibration["method"]}
        # under the registration lock: two runs finishing together cannot both become champion
        decision, version = registry.gate_and_register(
            client, name, result.metrics, plan.eval_frame, result.p_eval, plan.eval_keys, set(plan.train_keys),
            settings, info.model_uri, info.model_id, run.info.run_id, version_tags, markdown, result.slope_note)
        mlflow.set_tags({"registered_version": version, "alias": decision.alias})
    seconds = time.perf_counter() - t_start
    return TrainingResult(run.info.run_id, info.model_uri, name, version, decision.alias, decision.reason,
                          plan.features, plan.choice.required, plan.choice.skipped, plan.note,
                          result.metrics, result.baselines, result.oracle, card, seconds, plan.notes, result.optimism)


def _run_tags(plan: Plan) -> dict[str, str]:
    cohort = plan.cohort
    return {
        "data_kind": cohort.kind,
        "simulated": str(cohort.simulated).lower(),
        "dataset_name": cohort.name,
        "dataset_digest": cohort.digest,
        "git_commit": git_commit(),
        "feature_contract_version": c.CONTRACT_VERSION,
        "research_use_only": "true",
        "features": ",".join(plan.features)[:5000],
        **design_tags(cohort.design),
        **({"question_note": plan.note[:5000]} if plan.note else {}),
    }


def _log_inputs(plan: Plan, settings: TrainSettings) -> None:
    """Parameters, the chosen inputs, the hashed training keys and the datasets with their hashes."""
    mlflow.log_params({
        "seed": settings.seed, "trials": settings.trials, "time_budget_s": settings.time_budget_s,
        "cv_folds": settings.cv_folds, "evaluation_design": plan.design, "n_features": len(plan.features),
        "n_train": len(plan.train_frame), "n_eval": len(plan.eval_frame),
    })
    mlflow.log_dict({"features": plan.features, "required": plan.choice.required, "skipped": plan.choice.skipped},
                    "features.json")
    # hashed patient keys (no ids): the gate compares versions only on patients neither saw
    mlflow.log_dict({"dataset_digest": plan.cohort.digest, "keys": sorted(set(plan.train_keys))},
                    registry.TRAINING_KEYS_ARTIFACT)
    for ctx, coh, frame in (("training", plan.cohort, plan.train_frame),
                            ("evaluation", plan.eval_cohort or plan.cohort, plan.eval_frame)):
        ds = mlflow.data.from_pandas(frame.drop(columns=[c.PATIENT_ID]), source=dataset_source(coh.source),
                                     name=coh.name, targets=c.OUTCOME)
        mlflow.log_input(ds, context=ctx, tags={"data_kind": coh.kind, "content_hash": coh.digest})


def _tune(plan: Plan, settings: TrainSettings, progress: Progress) -> FittedModel:
    """The random search (each trial a nested run), the fit and its calibration."""
    def log_trial(t: Trial) -> None:
        with mlflow.start_run(run_name=f"trial-{t.number}", nested=True):
            mlflow.log_params(t.params)
            mlflow.log_metrics({"cv_auroc": t.cv_auroc, "cv_auroc_sd": t.cv_auroc_sd,
                                "best_rounds": t.best_rounds, "seconds": t.seconds})
        progress(f"trial {t.number}: CV AUROC {t.cv_auroc:.3f}")

    model = fit_model(plan.X_train, plan.y_train, settings, on_trial=log_trial)
    mlflow.log_params({f"xgb_{k}": v for k, v in model.params.items()})
    mlflow.log_param("calibration", model.calibration["method"])
    mlflow.log_metrics({f"calibration_cv_log_loss_{k}": v for k, v in model.calibration_cv_log_loss.items()})
    return model


def _log_model(plan: Plan, model: FittedModel, result: Assessment, name: str, bands: dict[str, Any]) -> Any:
    """The model with everything serving needs in its metadata (inputs, calibration, reference profile)."""
    cohort, features = plan.cohort, plan.features
    # The reference the service compares live inputs and scores with: bins of the whole cohort's
    # inputs, and the held-out (or cross-validated) risks; counts only, no patient's values.
    reference = build_profile(encode_array(cohort.frame, features), features, result.p_eval, source={
        "dataset_name": cohort.name, "data_kind": cohort.kind, "inputs": f"whole cohort ({cohort.n} patients)",
        "scores": f"evaluation predictions ({plan.design})"})
    mlflow.log_dict(reference, "monitoring/reference_profile.json")
    example = encode(pd.DataFrame([c.example_record(features)]), features)
    metrics = result.metrics
    metadata = {
        "calibration": model.calibration, "features": features, "columns": plan.columns,
        "required": plan.choice.required, "study_design": cohort.design.stated() if cohort.design else None,
        "question_note": plan.note, "reference_profile": reference,
        "feature_contract_version": c.CONTRACT_VERSION, "data_kind": cohort.kind,
        "dataset_name": cohort.name, "registered_model": name, "research_notice": RESEARCH_NOTICE,
        "risk_bands": bands,
        "metrics": {**{k: metrics[k] for k in ("auroc", "auroc_ci_low", "auroc_ci_high", "brier",
                                                "calibration_slope", "calibration_intercept")},
                    **{k: v for k, v in (result.optimism or {}).items() if k.startswith("optimism_corrected")}},
    }
    return mlflow.xgboost.log_model(
        model.classifier, name="model", signature=infer_signature(example, model.predict(example)),
        input_example=example, metadata=metadata, model_format="json",
        # Stated, not inferred: inference loads the model in a subprocess (~10 s here).
        conda_env=conda_env(),
    )
