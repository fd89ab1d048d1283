"""Evaluation plots, logged as MLflow artifacts (matplotlib figures, Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def roc_figure(y: np.ndarray, curves: dict[str, np.ndarray]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, p in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (evaluation data)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def calibration_figure(y: np.ndarray, curves: dict[str, np.ndarray], bins: int = 10) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, p in curves.items():
        frac, mean = calibration_curve(y, p, n_bins=bins, strategy="quantile")
        ax.plot(mean, frac, marker="o", label=label)
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    top = float(max(max(p.max() for p in curves.values()), 0.5))
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="predicted risk", ylabel="observed proportion",
           title="Calibration (quantile bins)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def decision_curve_figure(curves: dict[str, pd.DataFrame]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    first = next(iter(curves.values()))
    for label, dc in curves.items():
        ax.plot(dc["threshold"], dc["model"], label=label)
    ax.plot(first["threshold"], first["treat_all"], ls="--", c="grey", label="treat all")
    ax.plot(first["threshold"], first["treat_none"], ls=":", c="black", label="treat none")
    ax.set(xlabel="threshold probability", ylabel="net benefit", title="Decision curve",
           ylim=(-0.05, max(0.05, float(first["treat_all"].max()) + 0.05)))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def shap_summary_figure(contribs: pd.DataFrame, values: pd.DataFrame, top: int = 15) -> plt.Figure:
    """SHAP summary from XGBoost's own `pred_contribs`: one dot per patient and feature,
    coloured by the feature's (rank-scaled) value."""
    values = values.loc[contribs.index]
    order = contribs.abs().mean().sort_values(ascending=False).index[:top][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(order) + 1.5))
    rng = np.random.default_rng(0)
    for i, col in enumerate(order):
        x = contribs[col].to_numpy()
        v = values[col].rank(pct=True).to_numpy() if col in values else np.full(len(x), 0.5)
        ax.scatter(x, i + rng.uniform(-0.25, 0.25, len(x)), c=np.nan_to_num(v, nan=0.5), cmap="coolwarm",
                   s=6, alpha=0.6)
    ax.axvline(0, c="grey", lw=0.8)
    ax.set_yticks(range(len(order)), order, fontsize=8)
    ax.set(xlabel="contribution to log-odds (SHAP, pred_contribs)", title="SHAP summary (blue low, red high value)")
    fig.tight_layout()
    return fig
