"""Fit the gradient-boosted risk model, its calibration and the baselines.

Tuning is scikit-learn's `ParameterSampler` over XGBoost's own cross-validation
(`xgboost.cv`, stratified, repeated for small cohorts, with early stopping): the
search space is small and every trial is cheap, so Optuna would not earn its place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.calibration import IsotonicRegression
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import log_loss
from sklearn.model_selection import ParameterSampler, RepeatedStratifiedKFold, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from scipy.stats import loguniform, randint, uniform

from feature_store import contract as c
from model_runtime.calibration import apply_calibration, logit
from training.settings import TrainSettings

SEARCH_SPACE = {
    "max_depth": randint(2, 6),
    "learning_rate": loguniform(0.02, 0.2),
    "min_child_weight": loguniform(1, 20),
    "subsample": uniform(0.6, 0.4),
    "colsample_bytree": uniform(0.5, 0.5),
    "reg_lambda": loguniform(0.5, 20),
    "gamma": uniform(0, 2),
}
PROB_FLOOR = 0.005
ISOTONIC_MIN_GAIN = 0.005  # relative log-loss improvement isotonic needs over sigmoid
DEFAULTS = {"max_depth": 3, "learning_rate": 0.05, "min_child_weight": 3.0, "subsample": 0.8,
            "colsample_bytree": 0.8, "reg_lambda": 2.0, "gamma": 0.0}


@dataclass
class Trial:
    number: int
    params: dict[str, Any]
    cv_auroc: float
    cv_auroc_sd: float
    best_rounds: int
    seconds: float


@dataclass
class FittedModel:
    classifier: xgb.XGBClassifier
    calibration: dict[str, Any]
    columns: list[str]
    params: dict[str, Any]
    trials: list[Trial] = field(default_factory=list)
    calibration_cv_log_loss: dict[str, float] = field(default_factory=dict)

    def predict_raw(self, X: pd.DataFrame) -> np.ndarray:
        return self.classifier.predict_proba(X[self.columns])[:, 1]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return apply_calibration(self.predict_raw(X), self.calibration)


def _base_params(settings: TrainSettings, columns: list[str]) -> dict[str, Any]:
    return {
        "objective": "binary:logistic",
        "eval_metric": "auc",
        "tree_method": "hist",
        "nthread": settings.n_jobs,
        "seed": settings.seed,
        "monotone_constraints": "(" + ",".join(map(str, c.monotone_constraints_for(columns))) + ")",
    }


def fold_count(y: np.ndarray, wanted: int) -> int:
    """Stratified folds that a cohort can support: at most one per event and per non-event."""
    n_pos = int(np.sum(y))
    return max(2, min(wanted, n_pos, len(y) - n_pos))


def _folds(y: np.ndarray, settings: TrainSettings, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    k = fold_count(y, settings.cv_folds)
    repeats = 3 if len(y) < settings.small_cohort else 1
    splitter = RepeatedStratifiedKFold(n_splits=k, n_repeats=repeats, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def tune(
    X: pd.DataFrame,
    y: np.ndarray,
    settings: TrainSettings,
    on_trial: Callable[[Trial], None] | None = None,
) -> list[Trial]:
    """Random search with cross-validated early stopping, within a trial and time budget."""
    dtrain = xgb.DMatrix(X, label=y, missing=np.nan)
    folds = _folds(y, settings, settings.seed)
    candidates = [DEFAULTS] + list(ParameterSampler(SEARCH_SPACE, n_iter=max(settings.trials - 1, 0),
                                                    random_state=settings.seed))
    trials: list[Trial] = []
    start = time.perf_counter()
    for i, params in enumerate(candidates[: settings.trials]):
        if settings.time_budget_s is not None and trials and time.perf_counter() - start > settings.time_budget_s:
            break
        t0 = time.perf_counter()
        p = {k: (float(v) if not isinstance(v, (int, np.integer)) else int(v)) for k, v in params.items()}
        hist = xgb.cv({**_base_params(settings, list(X.columns)), **p}, dtrain, num_boost_round=settings.max_rounds,
                      folds=folds, early_stopping_rounds=settings.early_stopping_rounds, seed=settings.seed,
                      verbose_eval=False)
        trial = Trial(i, p, float(hist["test-auc-mean"].iloc[-1]), float(hist["test-auc-std"].iloc[-1]),
                      int(len(hist)), time.perf_counter() - t0)
        trials.append(trial)
        if on_trial:
            on_trial(trial)
    return trials


def _classifier(params: dict[str, Any], rounds: int, settings: TrainSettings, columns: list[str]) -> xgb.XGBClassifier:
    base = _base_params(settings, columns)
    return xgb.XGBClassifier(
        n_estimators=rounds, objective=base["objective"], tree_method="hist", n_jobs=settings.n_jobs,
        random_state=settings.seed, monotone_constraints=base["monotone_constraints"], missing=np.nan, **params,
    )


def _fit_calibrator(raw: np.ndarray, y: np.ndarray, method: str) -> dict[str, Any]:
    if method == "isotonic":
        # Bounded away from 0 and 1: a step at exactly 0% or 100% risk is never credible
        # and would wreck log loss and the calibration slope.
        iso = IsotonicRegression(out_of_bounds="clip", y_min=PROB_FLOOR, y_max=1 - PROB_FLOOR).fit(raw, y)
        return {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(logit(raw).reshape(-1, 1), y)
    return {"method": "sigmoid", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}


def choose_calibration(raw_oof: np.ndarray, y: np.ndarray, seed: int) -> tuple[dict[str, Any], dict[str, float]]:
    """Isotonic or sigmoid, whichever has the lower cross-validated log loss on out-of-fold
    raw predictions (log loss punishes over-confident steps that Brier forgives); then
    refit it on all of them."""
    k = fold_count(y, 5)
    scores: dict[str, float] = {}
    for method in ("sigmoid", "isotonic"):
        cal = np.zeros(len(y))
        for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(raw_oof, y):
            cal[te] = apply_calibration(raw_oof[te], _fit_calibrator(raw_oof[tr], y[tr], method))
        scores[method] = float(log_loss(y, cal))
    # Isotonic has a parameter per step and ties patients' risks; take it only when it is
    # clearly better than the two-parameter sigmoid, not on cross-validation noise.
    best = "isotonic" if scores["isotonic"] < scores["sigmoid"] * (1 - ISOTONIC_MIN_GAIN) else "sigmoid"
    return _fit_calibrator(raw_oof, y, best), scores


def out_of_fold_raw(X: pd.DataFrame, y: np.ndarray, params: dict[str, Any], rounds: int,
                    settings: TrainSettings) -> np.ndarray:
    """Raw probabilities from models that never saw the patient (averaged over repeats)."""
    total = np.zeros(len(y))
    count = np.zeros(len(y))
    for tr, te in _folds(y, settings, settings.seed + 1):
        clf = _classifier(params, rounds, settings, list(X.columns)).fit(X.iloc[tr], y[tr])
        total[te] += clf.predict_proba(X.iloc[te])[:, 1]
        count[te] += 1
    return total / np.maximum(count, 1)


def fit_model(X: pd.DataFrame, y: np.ndarray, settings: TrainSettings,
              on_trial: Callable[[Trial], None] | None = None) -> FittedModel:
    """Tune, fit on all of X, and calibrate on out-of-fold predictions."""
    trials = tune(X, y, settings, on_trial)
    best = max(trials, key=lambda t: (t.cv_auroc, -t.number))
    raw_oof = out_of_fold_raw(X, y, best.params, best.best_rounds, settings)
    calibration, cv_brier = choose_calibration(raw_oof, y, settings.seed)
    clf = _classifier(best.params, best.best_rounds, settings, list(X.columns)).fit(X, y)
    return FittedModel(clf, calibration, list(X.columns), {**best.params, "n_estimators": best.best_rounds},
                       trials, cv_brier)


def fit_logistic(X: pd.DataFrame, y: np.ndarray, settings: TrainSettings) -> Pipeline:
    """Regularised logistic regression baseline: median imputation with missing-indicators, scaling."""
    k = fold_count(y, 5)
    return make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegressionCV(Cs=10, cv=k, scoring="neg_log_loss", max_iter=2000, random_state=settings.seed,
                             l1_ratios=(0.0,), use_legacy_attributes=False),
    ).fit(X, y)


def refit_fixed(X: pd.DataFrame, y: np.ndarray, fitted: FittedModel, settings: TrainSettings,
                seed: int) -> Callable[[pd.DataFrame], np.ndarray]:
    """Refit with the tuned hyperparameters and the chosen calibration method (3-fold out-of-fold
    calibration) and return the calibrated predict function. For the bootstrap optimism
    correction: repeating the whole random search per bootstrap sample would multiply training
    time by the number of samples, so tuning is held fixed (the card says so)."""
    params = {k: v for k, v in fitted.params.items() if k != "n_estimators"}
    rounds = int(fitted.params["n_estimators"])
    raw = np.zeros(len(y))
    for tr, te in StratifiedKFold(fold_count(y, 3), shuffle=True, random_state=seed).split(X, y):
        raw[te] = _classifier(params, rounds, settings, list(X.columns)).fit(X.iloc[tr], y[tr]).predict_proba(
            X.iloc[te])[:, 1]
    calibration = _fit_calibrator(raw, y, fitted.calibration["method"])
    clf = _classifier(params, rounds, settings, list(X.columns)).fit(X, y)
    return lambda Z: apply_calibration(clf.predict_proba(Z)[:, 1], calibration)
