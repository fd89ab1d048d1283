"""Evaluating a fitted model inside its MLflow run: metrics with intervals, Harrell's optimism
correction for few events, the logistic and clinical-score baselines, the oracle (simulated data),
subgroups, decision curves and the plots. Everything is logged to the active run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.model_selection import StratifiedKFold

from feature_store import contract as c
from feature_store.scores import compute_scores, why_not_computed
from training import evaluate as ev
from training import plots
from training.prepare import Plan
from training.settings import TrainSettings
from training.train import FittedModel, fit_logistic, fit_model, fold_count, refit_fixed

Progress = Callable[[str], None]


@dataclass
class Assessment:
    p_eval: np.ndarray  # the model's risks for the evaluation patients
    p_logreg: np.ndarray  # the logistic baseline's, on the same patients
    metrics: dict[str, float]
    optimism: dict[str, float] | None
    baselines: dict[str, Any]
    oracle: dict[str, float] | None
    subgroups: pd.DataFrame
    skipped_subgroups: list[Any]
    decision_curves: dict[str, pd.DataFrame]
    slope_note: str | None = None  # why the calibration slope is undefined, when it is


def assess(plan: Plan, model: FittedModel, settings: TrainSettings, progress: Progress) -> Assessment:
    """Score the evaluation patients, compare with the baselines and log it all to the active run."""
    if plan.cross_validated:
        p_eval, p_logreg = _small_cohort_predictions(plan.X_train, plan.y_train, settings)
    else:
        p_eval = model.predict(plan.X_eval)
        p_logreg = fit_logistic(plan.X_train, plan.y_train, settings).predict_proba(plan.X_eval)[:, 1]
    y_eval = plan.y_eval
    metrics = ev.metrics_with_ci(y_eval, p_eval, settings.n_bootstrap, settings.seed)
    mlflow.log_metrics({f"eval_{k}": v for k, v in metrics.items()})
    optimism = _optimism(plan, model, settings, metrics, progress)
    baselines = _baselines(plan, p_eval, p_logreg, metrics, settings)
    oracle = None
    if c.TRUE_PROBABILITY in plan.eval_frame and plan.eval_frame[c.TRUE_PROBABILITY].notna().all():
        oracle = ev.core_metrics(y_eval, plan.eval_frame[c.TRUE_PROBABILITY].to_numpy(float))
        oracle["auroc_gap"] = metrics["auroc"] - oracle["auroc"]
        oracle["brier_gap"] = metrics["brier"] - oracle["brier"]
        mlflow.log_metrics({f"oracle_{k}": v for k, v in oracle.items()})
    subgroups, skipped_subgroups = ev.subgroup_table(plan.eval_frame, y_eval, p_eval)
    mlflow.log_table(subgroups, "subgroups.json")
    dc = {"model": ev.net_benefit(y_eval, p_eval), "logistic regression": ev.net_benefit(y_eval, p_logreg)}
    mlflow.log_table(dc["model"], "decision_curve.json")
    return Assessment(p_eval, p_logreg, metrics, optimism, baselines, oracle, subgroups, skipped_subgroups, dc,
                      ev.slope_undefined_reason(y_eval, p_eval))


def _small_cohort_predictions(X: pd.DataFrame, y: np.ndarray, settings: TrainSettings
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Small cohorts: every patient predicted by a model (tuned and calibrated; and the logistic
    baseline) that never saw them, on the same folds."""
    p_model, p_logreg = np.zeros(len(y)), np.zeros(len(y))
    inner = settings.model_copy(update={"trials": max(2, settings.trials // 2)})
    splitter = StratifiedKFold(fold_count(y, settings.cv_folds), shuffle=True, random_state=settings.seed + 7)
    for tr, te in splitter.split(X, y):
        p_model[te] = fit_model(X.iloc[tr], y[tr], inner).predict(X.iloc[te])
        p_logreg[te] = fit_logistic(X.iloc[tr], y[tr], settings).predict_proba(X.iloc[te])[:, 1]
    return p_model, p_logreg


def _optimism(plan: Plan, model: FittedModel, settings: TrainSettings, metrics: dict[str, float],
              progress: Progress) -> dict[str, float] | None:
    """Harrell's bootstrap optimism correction, below `optimism_below_events` events."""
    if plan.cohort.events >= settings.optimism_below_events:
        return None
    progress(f"bootstrap optimism correction ({settings.optimism_bootstrap} samples)")
    X_train, y_train = plan.X_train, plan.y_train

    def refit(rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        predict = refit_fixed(X_train.iloc[rows], y_train[rows], model, settings, settings.seed)
        return lambda idx: predict(X_train.iloc[idx])

    apparent = model.predict(X_train)
    optimism = ev.optimism_corrected(refit, len(y_train), y_train, apparent, settings.optimism_bootstrap, settings.seed)
    mlflow.log_metrics(optimism)
    why = ev.slope_undefined_reason(y_train, apparent)
    if why:  # said on the card and by the CLI instead of "nan"
        plan.notes.append(f"apparent calibration slope on the training cohort {why}")
    if optimism["optimism_corrected_auroc"] > metrics["auroc"] + 0.05:
        plan.notes.append(
            f"the bootstrap optimism-corrected AUROC ({optimism['optimism_corrected_auroc']:.3f}) is well "
            f"above the cross-validated one ({metrics['auroc']:.3f}): Harrell's correction under-corrects "
            "flexible learners, which memorise the duplicated patients of each bootstrap sample; the "
            "cross-validated figure is the one to quote")
    return optimism


def _baselines(plan: Plan, p_eval: np.ndarray, p_logreg: np.ndarray, metrics: dict[str, float],
               settings: TrainSettings) -> dict[str, Any]:
    """The logistic regression and the clinical scores (computed, and recorded by the registry) side by side."""
    y_eval, eval_frame = plan.y_eval, plan.eval_frame
    logreg = ev.metrics_with_ci(y_eval, p_logreg, settings.n_bootstrap, settings.seed)
    diff = ev.auroc_difference(y_eval, p_eval, p_logreg, settings.n_bootstrap, settings.seed)
    baselines: dict[str, Any] = {"logistic_regression": {
        "n": len(y_eval), "auroc": logreg["auroc"], "auroc_ci_low": logreg["auroc_ci_low"],
        "auroc_ci_high": logreg["auroc_ci_high"], "brier": logreg["brier"],
        "calibration_slope": logreg["calibration_slope"], "model_auroc_same_patients": metrics["auroc"],
        "model_minus_baseline_auroc": diff["difference"], "difference_ci_low": diff["ci_low"],
        "difference_ci_high": diff["ci_high"],
    }}
    scores = compute_scores(eval_frame)
    for s in scores.columns:
        baselines[s] = ev.score_ranker_auroc(y_eval, scores[s].to_numpy(), p_eval)
        why = why_not_computed(eval_frame, s)  # which item is missing, by name
        if baselines[s]["n"] == 0:
            baselines[s]["skipped"] = why or "too few patients with both outcomes among those it could be computed for"
        elif why:
            baselines[s]["note"] = why
    for col in plan.cohort.recorded_scores:
        if col in eval_frame:
            baselines[f"{col.removeprefix(c.RECORDED_SCORE_PREFIX)} (recorded)"] = ev.score_ranker_auroc(
                y_eval, eval_frame[col].to_numpy(float), p_eval)
    for bname, b in baselines.items():
        mlflow.log_metrics({f"baseline_{_metric_name(bname)}_{k}": float(v) for k, v in b.items()
                            if isinstance(v, (int, float)) and v is not None})
    mlflow.log_table(pd.DataFrame([{"model": k, **v} for k, v in baselines.items()]), "baselines.json")
    return baselines


def log_figures(plan: Plan, model: FittedModel, result: Assessment) -> None:
    """ROC, calibration, decision curve and SHAP summary plots into the run's plots/ folder."""
    curves = {"XGBoost (calibrated)": result.p_eval, "logistic regression": result.p_logreg}
    if result.oracle:
        curves["oracle (true probability)"] = plan.eval_frame[c.TRUE_PROBABILITY].to_numpy(float)
    _log_figure(plots.roc_figure(plan.y_eval, curves), "roc.png")
    _log_figure(plots.calibration_figure(plan.y_eval, curves), "calibration.png")
    _log_figure(plots.decision_curve_figure(result.decision_curves), "decision_curve.png")
    _log_figure(plots.shap_summary_figure(_contributions(model, plan.X_eval), plan.X_eval), "shap_summary.png")


def _contributions(model: FittedModel, X: pd.DataFrame, max_rows: int = 2000) -> pd.DataFrame:
    sample = X.iloc[:max_rows]
    contribs = model.classifier.get_booster().predict(xgb.DMatrix(sample, missing=np.nan), pred_contribs=True)
    return pd.DataFrame(contribs[:, :-1], columns=model.columns, index=sample.index)


def _log_figure(fig: plt.Figure, name: str) -> None:
    mlflow.log_figure(fig, f"plots/{name}")
    plt.close(fig)


def _metric_name(name: str) -> str:
    """MLflow metric names allow letters, digits and _-. /: a recorded score's label has spaces."""
    return "".join(ch if ch.isalnum() or ch in "_-./" else "_" for ch in name).strip("_")
