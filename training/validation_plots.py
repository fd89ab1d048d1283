"""The figures of a validation at a new centre: calibration plot (deciles with 95% Wilson intervals, before
and after the update) and the decision curve with bootstrap 95% bands, logged to the active MLflow run
under plots/ (the names `pverisk import-model` carries to the service's /model page)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402

from training.evaluate import THRESHOLDS, net_benefit  # noqa: E402


def _wilson(k: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def calibration_with_intervals(y: np.ndarray, curves: dict[str, np.ndarray]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for label, p in curves.items():
        groups = max(2, min(10, len(y) // 8))
        order = np.argsort(p)
        bins = np.array_split(order, groups)
        pred = np.array([p[b].mean() for b in bins])
        k = np.array([y[b].sum() for b in bins], float)
        n = np.array([len(b) for b in bins], float)
        lo, hi = _wilson(k, n)
        ax.errorbar(pred, k / n, yerr=[k / n - lo, hi - k / n], fmt="o-", capsize=2, label=label, alpha=0.8)
    ax.plot([0, 1], [0, 1], "--", color="0.6", lw=0.8)
    ax.set_xlabel("predicted risk (group mean)")
    ax.set_ylabel("observed rate (95% Wilson interval)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"Calibration at the centre ({len(y)} patients, {int(y.sum())} events)", fontsize=9)
    fig.tight_layout()
    return fig


def decision_curve_with_band(y: np.ndarray, p: np.ndarray, n_boot: int = 200, seed: int = 0) -> plt.Figure:
    rng = np.random.default_rng(seed)
    base = net_benefit(y, p)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        boots.append(net_benefit(y[idx], p[idx])["model"].to_numpy())
    lo, hi = np.percentile(np.array(boots), [2.5, 97.5], axis=0)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.fill_between(THRESHOLDS, lo, hi, alpha=0.2, label="model, bootstrap 95% band")
    ax.plot(base["threshold"], base["model"], label="model")
    ax.plot(base["threshold"], base["treat_all"], "--", label="treat all")
    ax.plot(base["threshold"], base["treat_none"], ":", color="0.3", label="treat none")
    ax.set_ylim(min(-0.05, float(np.nanmin(lo))), max(0.05, float(np.nanmax(hi))) * 1.1)
    ax.set_xlabel("threshold probability")
    ax.set_ylabel("net benefit")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def log_validation_figures(y: np.ndarray, p: np.ndarray, p_updated: np.ndarray, method: str) -> None:
    curves = {"as trained": p, f"updated ({method}, cross-validated)": p_updated}
    for fig, name in ((calibration_with_intervals(y, curves), "calibration"),
                      (decision_curve_with_band(y, p_updated), "decision_curve")):
        mlflow.log_figure(fig, f"plots/{name}.png")
        plt.close(fig)
