"""Honest evaluation: discrimination with bootstrap intervals, calibration, decision curves,
subgroups and (for simulated data) the oracle.

scikit-learn supplies AUROC, average precision and Brier; it has no calibration
intercept/slope, net benefit or bootstrap intervals, so those few lines are ours.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from model_runtime.calibration import logit

THRESHOLDS = np.round(np.arange(0.05, 0.5001, 0.01), 2)


def calibration_intercept_slope(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Calibration slope (logistic recalibration on logit p) and calibration-in-the-large
    (intercept with logit p as offset), by Newton-Raphson."""
    y = np.asarray(y, float)
    lp = logit(p)
    # slope: y ~ a + b * lp
    A = np.column_stack([np.ones_like(lp), lp])
    beta = np.array([0.0, 1.0])
    converged = False
    with np.errstate(over="ignore"):
        for _ in range(100):
            q = 1 / (1 + np.exp(-(A @ beta)))
            H = A.T @ (A * (q * (1 - q))[:, None]) + 1e-9 * np.eye(2)
            step = np.linalg.solve(H, A.T @ (y - q))
            beta += step
            if np.abs(step).max() < 1e-9:
                converged = True
                break
    # Perfectly separated predictions (a model on the patients it memorised) have no finite slope:
    # Newton runs off to huge values, which would be reported as numbers. Undefined is NaN.
    slope = float(beta[1]) if converged and np.all(np.isfinite(beta)) and abs(beta[1]) < 100 else float("nan")
    if np.ptp(lp) < 1e-6:  # one risk for everyone: no spread to regress on (the ridge term would invent a slope)
        slope = float("nan")
    # intercept: y ~ a + offset(lp)
    a = 0.0
    for _ in range(50):
        q = 1 / (1 + np.exp(-(a + lp)))
        step = np.sum(y - q) / max(np.sum(q * (1 - q)), 1e-12)
        a += step
        if abs(step) < 1e-10:
            break
    return float(a), slope


def slope_undefined_reason(y: np.ndarray, p: np.ndarray) -> str | None:
    """Why a calibration slope cannot be estimated (None when it can): said on the card and in the gate's
    reason instead of a bare "nan"."""
    y = np.asarray(y).astype(int)
    lp = logit(np.asarray(p, float))
    if len(y) == 0 or y.min() == y.max():
        return "undefined: the patients are all events or all non-events, so there is nothing to calibrate against"
    if np.ptp(lp) < 1e-6:
        return ("undefined: the model gives every patient the same risk, so there is no spread of risks to "
                "regress the outcomes on (it does not separate patients at all)")
    if lp[y == 1].min() > lp[y == 0].max() or lp[y == 1].max() < lp[y == 0].min():
        return ("undefined: the risks separate events from non-events perfectly (as for patients a model "
                "memorised), so the slope runs to infinity")
    _, slope = calibration_intercept_slope(y, p)
    if np.isfinite(slope):
        return None
    return ("undefined: the risks nearly separate events from non-events or barely vary, and the logistic "
            "recalibration does not converge")


def net_benefit(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> pd.DataFrame:
    """Decision curve (Vickers & Elkin 2006): model, treat-all and treat-none."""
    y = np.asarray(y, bool)
    n = len(y)
    prev = y.mean()
    rows = []
    for t in thresholds:
        pos = p >= t
        tp = np.sum(pos & y) / n
        fp = np.sum(pos & ~y) / n
        w = t / (1 - t)
        rows.append({"threshold": float(t), "model": tp - fp * w, "treat_all": prev - (1 - prev) * w,
                     "treat_none": 0.0})
    return pd.DataFrame(rows)


def _bootstrap_indices(n: int, n_boot: int, seed: int, y: np.ndarray, min_per_class: int = 1) -> list[np.ndarray]:
    """Bootstrap samples holding at least `min_per_class` patients of each outcome (a sample without both
    has no AUROC; a refit needs two of each, or one of its cross-validation folds trains on one class)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n_boot:
        idx = rng.integers(0, n, n)
        events = int(y[idx].sum())
        if min(events, n - events) >= min_per_class:
            out.append(idx)
    return out


def core_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    intercept, slope = calibration_intercept_slope(y, p)
    return {
        "auroc": float(roc_auc_score(y, p)),
        "average_precision": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "calibration_intercept": intercept,
        "calibration_slope": slope,
        "mean_predicted": float(np.mean(p)),
        "observed_rate": float(np.mean(y)),
    }


def metrics_with_ci(y: np.ndarray, p: np.ndarray, n_boot: int = 500, seed: int = 0) -> dict[str, float]:
    """Core metrics plus percentile bootstrap 95% intervals for AUROC and average precision."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, float)
    out = core_metrics(y, p)
    aucs, aps = [], []
    for idx in _bootstrap_indices(len(y), n_boot, seed, y):
        aucs.append(roc_auc_score(y[idx], p[idx]))
        aps.append(average_precision_score(y[idx], p[idx]))
    out["auroc_ci_low"], out["auroc_ci_high"] = (float(x) for x in np.percentile(aucs, [2.5, 97.5]))
    out["average_precision_ci_low"], out["average_precision_ci_high"] = (float(x) for x in np.percentile(aps, [2.5, 97.5]))
    return out


def auroc_difference(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, n_boot: int = 500, seed: int = 0
                     ) -> dict[str, float]:
    """Paired bootstrap of AUROC(a) - AUROC(b) on the same patients."""
    y = np.asarray(y).astype(int)
    diffs = [roc_auc_score(y[i], p_a[i]) - roc_auc_score(y[i], p_b[i])
             for i in _bootstrap_indices(len(y), n_boot, seed, y)]
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"difference": float(roc_auc_score(y, p_a) - roc_auc_score(y, p_b)), "ci_low": float(lo),
            "ci_high": float(hi)}


def age_band(age: pd.Series) -> pd.Series:
    return pd.cut(age, [0, 60, 70, 200], right=False, labels=["<60", "60-69", ">=70"]).astype("string")


SUBGROUP_SOURCES = {"sex": "sex", "age_band": "age_years", "primary_side": "primary_side", "ras_status": "ras_status"}


def subgroup_table(frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, min_n: int = 20
                   ) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Performance by sex, age band, sidedness and RAS status, with counts; only for the
    variables the cohort recorded. Returns the table and the variables skipped, with why."""
    groups: dict[str, pd.Series] = {}
    skipped: list[dict[str, str]] = []
    for var, col in SUBGROUP_SOURCES.items():
        if col not in frame or frame[col].isna().all():
            skipped.append({"subgroup": var, "reason": f"{col} not recorded in this cohort"})
            continue
        groups[var] = age_band(frame[col]) if var == "age_band" else frame[col].astype("string")
    y = np.asarray(y).astype(int)
    rows: list[dict[str, Any]] = []
    for var, values in groups.items():
        values = values.fillna("missing").to_numpy()
        for level in sorted(set(values)):
            m = values == level
            n, events = int(m.sum()), int(y[m].sum())
            both = 0 < events < n
            rows.append({
                "variable": var, "level": str(level), "n": n, "events": events,
                "auroc": float(roc_auc_score(y[m], p[m])) if both and n >= min_n else None,
                "brier": float(brier_score_loss(y[m], p[m])) if n else None,
                "mean_predicted": float(p[m].mean()) if n else None,
                "observed_rate": float(y[m].mean()) if n else None,
            })
    columns = ["variable", "level", "n", "events", "auroc", "brier", "mean_predicted", "observed_rate"]
    return pd.DataFrame(rows, columns=columns), skipped


def score_ranker_auroc(y: np.ndarray, score: np.ndarray, p_model: np.ndarray) -> dict[str, float | int | None]:
    """A clinical score used as a risk ranker, on the patients where it can be computed;
    the model's AUROC on the same patients beside it."""
    y = np.asarray(y).astype(int)
    m = ~np.isnan(score)
    if m.sum() < 10 or not 0 < y[m].sum() < m.sum():
        return {"n": int(m.sum()), "auroc": None, "model_auroc_same_patients": None}
    return {"n": int(m.sum()), "auroc": float(roc_auc_score(y[m], score[m])),
            "model_auroc_same_patients": float(roc_auc_score(y[m], p_model[m]))}


def optimism_corrected(
    fit: Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]],
    n: int,
    y: np.ndarray,
    apparent_p: np.ndarray,
    n_boot: int,
    seed: int,
) -> dict[str, float]:
    """Harrell's bootstrap optimism correction (Harrell, Lee & Mark, Stat Med 1996).

    `fit(rows)` refits the model on those rows and returns its predict function over row
    indices. Per bootstrap sample: optimism = performance on the sample it was fitted on minus
    performance on the original patients; corrected = apparent - mean optimism.
    """
    y = np.asarray(y).astype(int)
    everyone = np.arange(n)
    apparent = core_metrics(y, apparent_p)
    opt_auc, opt_slope = [], []
    # Two of each outcome in every sample: with one, the refit's stratified folds leave a fold that trains on
    # a single class (XGBoost: "Invalid classes inferred from unique values of `y`"). Such samples are
    # redrawn, as the whole pipeline could not be fitted on them either.
    for idx in _bootstrap_indices(n, n_boot, seed, y, min_per_class=2):
        predict = fit(idx)
        boot = core_metrics(y[idx], predict(idx))
        orig = core_metrics(y, predict(everyone))
        opt_auc.append(boot["auroc"] - orig["auroc"])
        opt_slope.append(boot["calibration_slope"] - orig["calibration_slope"])
    slopes = np.asarray(opt_slope, float)
    defined = slopes[np.isfinite(slopes)]
    # the slope's optimism only from samples where both slopes exist (see calibration_intercept_slope)
    slope_optimism = float(defined.mean()) if len(defined) >= max(2, len(slopes) // 2) else float("nan")
    return {
        "apparent_auroc": apparent["auroc"],
        "optimism_auroc": float(np.mean(opt_auc)),
        "optimism_corrected_auroc": apparent["auroc"] - float(np.mean(opt_auc)),
        "apparent_calibration_slope": apparent["calibration_slope"],
        "optimism_calibration_slope": slope_optimism,
        "optimism_corrected_calibration_slope": apparent["calibration_slope"] - slope_optimism,
        "optimism_bootstrap_samples": float(len(opt_auc)),
        "optimism_slope_samples_defined": float(len(defined)),
    }
