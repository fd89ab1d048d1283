"""One centre's performance with standard errors, ready for random-effects pooling (training/meta_analysis.py):
AUROC with DeLong's variance (on the logit scale for pooling), calibration-in-the-large and calibration slope
with their model-based standard errors, Brier and the observed and expected rates. And the whole table of
centres: each with a figure or listed as too small, never dropped silently, with the pooled estimates.

Used by internal-external cross-validation (training/iecv.py), federated sites (each computes its own row on
its held-out patients and sends only the row) and `pverisk validate`. scikit-learn has AUROC but no variance
of it, and no calibration intercept or slope; those few lines are ours (DeLong, DeLong & Clarke-Pearson,
Biometrics 1988, by Sun & Xu's midrank algorithm, IEEE SPL 2014).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
from scipy import stats
from sklearn.metrics import brier_score_loss, roc_auc_score

from model_runtime.calibration import logit
from training.meta_analysis import pool, pool_auroc

Z95 = float(stats.norm.ppf(0.975))
METHOD = ("REML tau^2; 95% CI with z; 95% prediction interval with t on k-2 degrees of freedom (Riley et al., "
          "BMJ 2011); AUROC on the logit scale")


def _midrank(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, method="average")


def delong_auroc(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """AUROC and its DeLong standard error."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, float)
    pos, neg = p[y], p[~y]
    m, n = len(pos), len(neg)
    tx, ty, tz = _midrank(pos), _midrank(neg), _midrank(np.r_[pos, neg])
    auc = float((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
    v10 = (tz[:m] - tx) / n  # structural components (Sun & Xu 2014)
    v01 = 1.0 - (tz[m:] - ty) / m
    var = np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n if m > 1 and n > 1 else float("nan")
    return auc, float(math.sqrt(var)) if var == var and var > 0 else float("nan")


def _newton_logistic(A: np.ndarray, y: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Maximum likelihood of y ~ A beta + offset and its inverse information; None without a finite fit."""
    beta = np.zeros(A.shape[1])
    for _ in range(100):
        with np.errstate(over="ignore"):
            q = 1 / (1 + np.exp(-(A @ beta + offset)))
        H = A.T @ (A * (q * (1 - q))[:, None])
        try:
            step = np.linalg.solve(H, A.T @ (y - q))
        except np.linalg.LinAlgError:
            return None
        beta = beta + step
        if not np.all(np.isfinite(beta)) or np.abs(beta).max() > 100:
            return None
        if np.abs(step).max() < 1e-10:
            q = 1 / (1 + np.exp(-(A @ beta + offset)))  # the information at the estimate itself
            try:
                return beta, np.linalg.inv(A.T @ (A * (q * (1 - q))[:, None]))
            except np.linalg.LinAlgError:
                return None
    return None


def calibration_with_se(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Calibration-in-the-large (intercept with logit p as offset) and calibration slope (y ~ a + b logit p),
    each with its standard error; NaN where undefined (no spread of risks, or separation)."""
    y = np.asarray(y, float)
    lp = logit(p)
    nan = float("nan")
    out = {"calibration_intercept": nan, "intercept_se": nan, "calibration_slope": nan, "slope_se": nan}
    citl = _newton_logistic(np.ones((len(y), 1)), y, lp)
    if citl is not None:
        out["calibration_intercept"], out["intercept_se"] = float(citl[0][0]), float(math.sqrt(citl[1][0, 0]))
    if np.ptp(lp) > 1e-6:
        fit = _newton_logistic(np.column_stack([np.ones_like(lp), lp]), y, np.zeros_like(lp))
        if fit is not None:
            out["calibration_slope"], out["slope_se"] = float(fit[0][1]), float(math.sqrt(fit[1][1, 1]))
    return out


def too_small(n: int, events: int, min_events: int) -> str | None:
    """Why a centre gets no figure (None: it gets one)."""
    if min(events, n - events) < min_events:
        return (f"{n} patients, {events} events: too few of one outcome for a figure (at least {min_events} events "
                f"and {min_events} non-events)")
    return None


def centre_row(centre: str, y: np.ndarray, p: np.ndarray, min_events: int = 3) -> dict[str, Any]:
    """One centre's figures with 95% intervals (or why it has none). Only aggregates: it can leave a site."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, float)
    row: dict[str, Any] = {"centre": str(centre), "n": int(len(y)), "events": int(y.sum())}
    why = too_small(len(y), int(y.sum()), min_events)
    if why:
        return {**row, "too_small": why}
    auc, se = delong_auroc(y, p)
    se_logit = se / (auc * (1 - auc)) if 0 < auc < 1 and se == se else float("nan")
    cal = calibration_with_se(y, p)
    row.update({
        "auroc": auc, "auroc_se": se, "auroc_logit": math.log(auc / (1 - auc)) if 0 < auc < 1 else float("nan"),
        "auroc_logit_se": se_logit,
        "auroc_ci_low": _expit(math.log(auc / (1 - auc)) - Z95 * se_logit) if se_logit == se_logit else float("nan"),
        "auroc_ci_high": _expit(math.log(auc / (1 - auc)) + Z95 * se_logit) if se_logit == se_logit else float("nan"),
        **cal,
        "intercept_ci_low": cal["calibration_intercept"] - Z95 * cal["intercept_se"],
        "intercept_ci_high": cal["calibration_intercept"] + Z95 * cal["intercept_se"],
        "slope_ci_low": cal["calibration_slope"] - Z95 * cal["slope_se"],
        "slope_ci_high": cal["calibration_slope"] + Z95 * cal["slope_se"],
        "brier": float(brier_score_loss(y, p)), "observed_rate": float(y.mean()), "mean_predicted": float(p.mean()),
    })
    if not np.isfinite(row["auroc"]):
        row["auroc"] = float(roc_auc_score(y, p))
    return row


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _finite(rows: list[dict[str, Any]], est: str, se: str) -> tuple[list[float], list[float]]:
    ok = [r for r in rows if r.get(est) is not None and np.isfinite(r.get(est, np.nan))
          and np.isfinite(r.get(se, np.nan)) and r.get(se, 0) > 0]
    return [r[est] for r in ok], [r[se] for r in ok]


def pooled_table(rows: Iterable[dict[str, Any]], design: str) -> dict[str, Any]:
    """Every centre (figures, or listed as too small with why) and the random-effects pooled AUROC,
    calibration-in-the-large and calibration slope, each with its prediction interval for a new centre."""
    rows = list(rows)
    with_figures = [r for r in rows if "too_small" not in r]
    auc_y, auc_se = _finite(with_figures, "auroc", "auroc_logit_se")
    pooled: dict[str, Any] = {
        "AUROC": pool_auroc(auc_y, auc_se) if auc_y else {"k": 0, "note": "no centre with an AUROC"},
        "calibration intercept": pool(*_finite(with_figures, "calibration_intercept", "intercept_se")).as_dict(),
        "calibration slope": pool(*_finite(with_figures, "calibration_slope", "slope_se")).as_dict(),
    }
    listed = [{"centre": r["centre"], "reason": r["too_small"]} for r in rows if "too_small" in r]
    for r in with_figures:
        if not np.isfinite(r.get("calibration_slope", np.nan)):
            listed.append({"centre": r["centre"], "reason": "calibration slope undefined (its risks barely vary or "
                                                            "separate the outcomes perfectly): not in the slope's pooling"})
    return {"design": design, "method": METHOD, "centres": rows, "pooled": pooled, "too_small": listed}
