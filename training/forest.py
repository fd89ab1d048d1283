"""The forest plot of per-centre performance: AUROC, calibration-in-the-large and calibration slope, each
centre with its 95% CI (sized by patients), the random-effects pooled estimate as a diamond, its 95%
prediction interval for a new centre as a bar, and the centres too small for a figure named in place."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PANELS = (  # (title, row key, CI keys, pooled key, reference line)
    ("AUROC", "auroc", ("auroc_ci_low", "auroc_ci_high"), "AUROC", 0.5),
    ("calibration-in-the-large", "calibration_intercept", ("intercept_ci_low", "intercept_ci_high"),
     "calibration intercept", 0.0),
    ("calibration slope", "calibration_slope", ("slope_ci_low", "slope_ci_high"), "calibration slope", 1.0),
)


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, (int, float)) and np.isfinite(x)


def forest_figure(table: dict[str, Any], title: str) -> plt.Figure:
    rows = table["centres"]
    n_rows = len(rows) + 2  # centres, a gap, the pooled row
    fig, axes = plt.subplots(1, 3, figsize=(13, 1.2 + 0.38 * n_rows), sharey=True)
    labels = [f"{r['centre']} ({r['n']}/{r['events']})" for r in rows] + ["", "pooled (random effects)"]
    biggest = max([r["n"] for r in rows] + [1])
    for ax, (name, key, (lo, hi), pooled_key, ref) in zip(axes, PANELS):
        for i, r in enumerate(rows):
            y = n_rows - 1 - i
            if "too_small" in r or not _finite(r.get(key)):
                ax.text(0.5, y, "too small" if "too_small" in r else "undefined", transform=ax.get_yaxis_transform(),
                        ha="center", va="center", fontsize=8, color="0.45")
                continue
            ax.plot([r[lo], r[hi]], [y, y], color="0.3", lw=1.2)
            ax.plot(r[key], y, "s", color="tab:blue", ms=3 + 7 * np.sqrt(r["n"] / biggest))
        p = table["pooled"].get(pooled_key) or {}
        if p.get("k"):
            est, clo, chi = p["estimate"], p["ci_low"], p["ci_high"]
            ax.fill([clo, est, chi, est], [0, 0.3, 0, -0.3], color="tab:red", zorder=3)
            if _finite(p.get("pi_low")):
                ax.plot([p["pi_low"], p["pi_high"]], [-0.55, -0.55], color="tab:red", lw=2.5, alpha=0.45,
                        solid_capstyle="butt")
            ax.axvline(est, color="tab:red", lw=0.6, ls=":")
            ax.set_xlabel(f"{name}\npooled {est:.2f} ({clo:.2f} to {chi:.2f})" + (
                f"; PI {p['pi_low']:.2f} to {p['pi_high']:.2f}" if _finite(p.get("pi_low")) else "; no PI (<3 centres)")
                + (f"\nI\u00b2 {p['i2']:.0%}, \u03c4\u00b2 {p['tau2']:.3f}" if _finite(p.get("i2")) else ""), fontsize=8)
        else:
            ax.set_xlabel(f"{name}\n(no centre with a figure)", fontsize=8)
        ax.axvline(ref, color="0.6", lw=0.8, ls="--")
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(list(range(n_rows - 1, -1, -1)))
    axes[0].set_yticklabels(labels, fontsize=8)
    axes[0].set_ylim(-1, n_rows)
    fig.suptitle(f"{title}: centre (patients/events), 95% CI; diamond: pooled 95% CI; bar: 95% prediction interval "
                 "for a new centre", fontsize=9)
    fig.tight_layout()
    return fig
