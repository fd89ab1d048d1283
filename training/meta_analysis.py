"""Random-effects meta-analysis of per-centre performance (internal-external cross-validation, federated
sites, validation at several centres): pooled estimate with its 95% confidence interval, heterogeneity
(tau^2, I^2, Cochran's Q) and the 95% prediction interval for a new centre.

Small pure functions, written here because scikit-learn has none and statsmodels' `combine_effects` has
DerSimonian-Laird but neither REML nor a prediction interval. Methods:
- DerSimonian & Laird, Control Clin Trials 1986 (moment estimator of tau^2);
- REML by the fixed-point iteration of Viechtbauer, J Educ Behav Stat 2005 (the default: less biased for
  few centres, Langan et al., Res Synth Methods 2019);
- prediction interval mu +- t(k-2) * sqrt(tau^2 + SE(mu)^2), Higgins, Thompson & Spiegelhalter 2009, as
  Riley, Higgins & Deeks (BMJ 2011) recommend; undefined below 3 centres;
- I^2 = (Q - (k - 1)) / Q, Higgins & Thompson, Stat Med 2002.
AUROC is pooled on the logit scale and back-transformed (Debray et al., BMJ 2017; Snell et al. 2018).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Pooled:
    k: int
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    tau2: float
    i2: float
    q: float
    pi_low: float | None
    pi_high: float | None
    method: str
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def dersimonian_laird_tau2(y: np.ndarray, v: np.ndarray) -> float:
    w = 1.0 / v
    mu = np.sum(w * y) / np.sum(w)
    q = float(np.sum(w * (y - mu) ** 2))
    c = float(np.sum(w) - np.sum(w ** 2) / np.sum(w))
    return max(0.0, (q - (len(y) - 1)) / c) if c > 0 else 0.0


def reml_tau2(y: np.ndarray, v: np.ndarray, tol: float = 1e-10, max_iter: int = 500) -> float:
    """REML estimate of tau^2 (Viechtbauer 2005, eq. 14 iterated from the DerSimonian-Laird start; truncated
    at zero)."""
    tau2 = dersimonian_laird_tau2(y, v)
    for _ in range(max_iter):
        w = 1.0 / (v + tau2)
        mu = np.sum(w * y) / np.sum(w)
        new = float(np.sum(w ** 2 * ((y - mu) ** 2 - v)) / np.sum(w ** 2) + 1.0 / np.sum(w))
        new = max(0.0, new)
        if abs(new - tau2) < tol:
            return new
        tau2 = new
    return tau2


def cochran_q(y: np.ndarray, v: np.ndarray) -> float:
    w = 1.0 / v
    mu = np.sum(w * y) / np.sum(w)
    return float(np.sum(w * (y - mu) ** 2))


def pool(estimates: Sequence[float], ses: Sequence[float], method: str = "REML", level: float = 0.95) -> Pooled:
    """Random-effects pooled estimate of per-centre `estimates` with standard errors `ses`."""
    y = np.asarray(estimates, float)
    se = np.asarray(ses, float)
    keep = np.isfinite(y) & np.isfinite(se) & (se > 0)
    y, v = y[keep], se[keep] ** 2
    k = len(y)
    z = stats.norm.ppf(0.5 + level / 2)
    if k == 0:
        nan = float("nan")
        return Pooled(0, nan, nan, nan, nan, nan, nan, nan, None, None, method, "no centre with an estimate")
    if k == 1:
        est, s = float(y[0]), float(math.sqrt(v[0]))
        return Pooled(1, est, s, est - z * s, est + z * s, float("nan"), float("nan"), 0.0, None, None, method,
                      "one centre: no heterogeneity and no prediction interval can be estimated")
    if method == "DL":
        tau2 = dersimonian_laird_tau2(y, v)
    elif method == "REML":
        tau2 = reml_tau2(y, v)
    else:
        raise ValueError(f"unknown method {method!r} (DL or REML)")
    w = 1.0 / (v + tau2)
    mu = float(np.sum(w * y) / np.sum(w))
    se_mu = float(math.sqrt(1.0 / np.sum(w)))
    q = cochran_q(y, v)
    i2 = max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
    pi_low = pi_high = None
    note = ""
    if k >= 3:
        half = float(stats.t.ppf(0.5 + level / 2, k - 2)) * math.sqrt(tau2 + se_mu ** 2)
        pi_low, pi_high = mu - half, mu + half
    else:
        note = "two centres: no prediction interval (t with k-2 degrees of freedom needs three)"
    return Pooled(k, mu, se_mu, mu - z * se_mu, mu + z * se_mu, tau2, i2, q, pi_low, pi_high, method, note)


def _logit(x: float) -> float:
    return math.log(x / (1 - x))


def _expit(x: float | None) -> float | None:
    return None if x is None else 1.0 / (1.0 + math.exp(-x))


def back_transformed(p: Pooled, transform: Callable[[float | None], float | None]) -> dict[str, Any]:
    """A pooled result on the reported scale (the SE, tau^2 and Q stay on the pooling scale, and say so)."""
    out = p.as_dict()
    for key in ("estimate", "ci_low", "ci_high", "pi_low", "pi_high"):
        out[key] = transform(out[key]) if out[key] is not None and out[key] == out[key] else out[key]
    out["scale"] = "pooled on the logit scale, back-transformed"
    return out


def pool_auroc(aurocs: Sequence[float], logit_ses: Sequence[float], method: str = "REML") -> dict[str, Any]:
    """AUROCs pooled on the logit scale (estimate and intervals back-transformed to AUROC)."""
    y = [_logit(min(max(a, 1e-6), 1 - 1e-6)) for a in aurocs]
    return back_transformed(pool(y, logit_ses, method), _expit)
