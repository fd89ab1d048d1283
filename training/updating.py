"""Updating a model for a new centre as clinical prediction research does it (Steyerberg, Clinical
Prediction Models, ch. 20; Vergouwe et al., Stat Med 2017): keep the original, recalibrate in the large
(new intercept, logit p as offset), recalibrate logistically (new intercept and slope on logit p), or
refit. The method is chosen by Vergouwe's closed testing procedure: the most extensive estimable update is
tested against the original by a likelihood-ratio test; if it is significantly better, recalibration in the
large is tested against it, then logistic recalibration; the first simpler method not significantly worse
is chosen (alpha 0.05), which keeps the familywise error at alpha.

The refit (XGBoost re-estimated on the new centre's patients, the tuned hyperparameters of the original
kept) has no parameter count for a likelihood-ratio test. It enters only when the centre has at least
`refit_events_per_input` events per model input (10, the events-per-variable rule of thumb; Peduzzi 1996),
with its cross-validated (out-of-fold) log-likelihood, so its flexibility is paid for honestly, and with the
degrees of freedom a logistic refit of the same inputs would have (one per model-matrix column, plus the
intercept). Below that, the procedure runs among the three recalibrations, as the card and the reason say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy import stats
from sklearn.model_selection import StratifiedKFold

from model_runtime.calibration import logit
from training.centre_metrics import _newton_logistic

ORIGINAL, IN_THE_LARGE, LOGISTIC, REFIT = ("original (no update)", "recalibration in the large",
                                          "logistic recalibration", "refit")


@dataclass
class Update:
    method: str
    intercept: float = 0.0
    slope: float = 1.0
    df: int = 0

    def apply(self, p: np.ndarray) -> np.ndarray:
        z = self.intercept + self.slope * logit(p)
        return 1.0 / (1.0 + np.exp(-z))

    def spec(self) -> dict[str, float] | None:
        """The recalibration composed onto the model's own calibration (model_runtime/calibration.py)."""
        if self.method in (ORIGINAL, REFIT):
            return None
        return {"intercept": self.intercept, "slope": self.slope}


@dataclass
class ClosedTest:
    chosen: str
    reason: str
    tests: list[dict[str, Any]] = field(default_factory=list)
    loglik: dict[str, float] = field(default_factory=dict)
    updates: dict[str, Update] = field(default_factory=dict)


def loglik(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(np.asarray(p, float), 1e-12, 1 - 1e-12)
    y = np.asarray(y, float)
    return float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit_update(y: np.ndarray, p: np.ndarray, method: str) -> Update:
    """Recalibration in the large or logistic recalibration by maximum likelihood (the original: nothing)."""
    lp = logit(p)
    y = np.asarray(y, float)
    if method == IN_THE_LARGE:
        fit = _newton_logistic(np.ones((len(y), 1)), y, lp)
        return Update(method, float(fit[0][0]) if fit else 0.0, 1.0, 1)
    if method == LOGISTIC:
        fit = _newton_logistic(np.column_stack([np.ones_like(lp), lp]), y, np.zeros_like(lp))
        return Update(method, *(map(float, fit[0]) if fit else (0.0, 1.0)), 2)
    return Update(ORIGINAL)


def cross_validated(y: np.ndarray, p: np.ndarray, method: str, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Each patient's updated risk from an update fitted without them (for an honest slope and the gate)."""
    y = np.asarray(y).astype(int)
    if method == ORIGINAL:
        return np.asarray(p, float)
    k = max(2, min(folds, int(y.sum()), len(y) - int(y.sum())))
    out = np.zeros(len(y))
    for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(p, y):
        out[te] = fit_update(y[tr], p[tr], method).apply(p[te])
    return out


def closed_test(y: np.ndarray, p: np.ndarray, refit_oof: np.ndarray | None = None, refit_df: int = 0,
                alpha: float = 0.05, refit_why_not: str = "") -> ClosedTest:
    """Vergouwe et al. (2017): the simplest method not significantly worse than the most extensive one."""
    y = np.asarray(y).astype(int)
    updates = {m: fit_update(y, p, m) for m in (ORIGINAL, IN_THE_LARGE, LOGISTIC)}
    ll = {m: loglik(y, u.apply(p)) for m, u in updates.items()}
    top, top_df = LOGISTIC, 2
    if refit_oof is not None:
        ll[REFIT] = loglik(y, refit_oof)
        top, top_df = REFIT, refit_df
        updates[REFIT] = Update(REFIT, df=refit_df)
    tests = []
    for method in (ORIGINAL, IN_THE_LARGE, LOGISTIC):
        if method == top:
            break
        df = top_df - updates[method].df
        lr = max(0.0, 2 * (ll[top] - ll[method]))
        pval = float(stats.chi2.sf(lr, df))
        tests.append({"simpler": method, "against": top, "lr": lr, "df": df, "p": pval})
        if pval >= alpha:
            return ClosedTest(method, _reason(method, top, tests, refit_why_not, alpha), tests, ll, updates)
    return ClosedTest(top, _reason(top, top, tests, refit_why_not, alpha), tests, ll, updates)


def _reason(chosen: str, top: str, tests: list[dict[str, Any]], refit_why_not: str, alpha: float) -> str:
    steps = "; ".join(f"{t['simpler']} vs {t['against']}: LR {t['lr']:.2f} on {t['df']} df, p = {t['p']:.3f}"
                      for t in tests)
    if chosen == top:
        why = f"every simpler method is significantly worse than {top} (alpha {alpha:g}): {steps}"
    else:
        why = f"{chosen} is not significantly worse than {top} (alpha {alpha:g}): {steps}"
    return why + (f". {refit_why_not}" if refit_why_not else "")


def refit_allowed(events: int, non_events: int, n_inputs: int, per_input: int) -> str | None:
    """Why the refit is not a candidate here (None: it is)."""
    need = per_input * n_inputs
    if min(events, non_events) < need:
        return (f"Refit not considered: {min(events, non_events)} patients of the rarer outcome for {n_inputs} model "
                f"inputs ({per_input} per input, {need}, needed to re-estimate the model)")
    return None


def refit_out_of_fold(X: Any, y: np.ndarray, fit: Callable[[Any, np.ndarray], Callable[[Any], np.ndarray]],
                      folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold risks of the refit pipeline (fit(X, y) returns a predict function)."""
    y = np.asarray(y).astype(int)
    k = max(2, min(folds, int(y.sum()), len(y) - int(y.sum())))
    out = np.zeros(len(y))
    for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        out[te] = fit(X.iloc[tr], y[tr])(X.iloc[te])
    return out
