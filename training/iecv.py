"""Internal-external cross-validation (Royston, Parmar & Sylvester, Stat Med 2004; Steyerberg & Harrell,
J Clin Epidemiol 2016): when a cohort has a `centre` column, each centre in turn is predicted by the model
refitted on all the other centres, and the per-centre figures are pooled by random-effects meta-analysis
(training/centre_metrics.py) with a prediction interval for a new centre. Logged to the active MLflow run
(table, pooled metrics, forest plot) and put on the model card.

The refits hold the tuned hyperparameters and the calibration method fixed (training/train.py:
refit_fixed): re-tuning per left-out centre would multiply training time by the number of centres."""

from __future__ import annotations

from typing import Any, Callable

import matplotlib.pyplot as plt
import mlflow
import numpy as np

from feature_store import contract as c
from feature_store.encoding import encode
from training.centre_metrics import pooled_table
from training.centre_metrics import centre_row
from training.forest import forest_figure
from training.settings import TrainSettings
from training.train import FittedModel, refit_fixed

FOREST_ARTIFACT = "plots/forest.png"


def left_out_predictions(frame: Any, features: list[str], model: FittedModel, settings: TrainSettings,
                         progress: Callable[[str], None] = lambda m: None) -> list[dict[str, Any]]:
    """One row per centre: its patients predicted by the model refitted on the others (or why not)."""
    X = encode(frame, features)
    y = frame[c.OUTCOME].to_numpy(int)
    centre = frame[c.CENTRE].astype("string").fillna("not stated").to_numpy()
    rows = []
    for name in sorted(set(centre)):
        test = centre == name
        rest = y[~test]
        if min(rest.sum(), len(rest) - rest.sum()) < 2:
            rows.append({"centre": name, "n": int(test.sum()), "events": int(y[test].sum()),
                         "too_small": "the other centres hold fewer than two patients of one outcome: no model to "
                                      "carry to this centre"})
            continue
        progress(f"internal-external validation: leaving out {name}")
        predict = refit_fixed(X[~test], rest, model, settings, settings.seed)
        rows.append(centre_row(name, y[test], predict(X[test]), settings.centre_min_events))
    return rows


def internal_external(cohort: Any, features: list[str], model: FittedModel, settings: TrainSettings,
                      progress: Callable[[str], None] = lambda m: None) -> dict[str, Any] | None:
    """The table, pooled estimates and forest plot, logged to the active run; None without several centres."""
    frame = cohort.frame
    if c.CENTRE not in frame or frame[c.CENTRE].nunique(dropna=True) < 2:
        return None
    rows = left_out_predictions(frame, features, model, settings, progress)
    designs = cohort.centres or {}
    for r in rows:
        stated = (designs.get(r["centre"]) or {}).get("study_design")
        r["study_design"] = stated or "not stated"
    table = pooled_table(rows, f"internal-external cross-validation over {len(rows)} centres: each centre "
                               "predicted by the model refitted on the others (tuned hyperparameters and calibration "
                               "method held fixed)")
    table["forest_plot"] = FOREST_ARTIFACT
    fig = forest_figure(table, "Internal-external cross-validation")
    mlflow.log_figure(fig, FOREST_ARTIFACT)
    plt.close(fig)
    mlflow.log_dict(table, "internal_external/centres.json")
    for name, p in table["pooled"].items():
        key = name.replace(" ", "_").lower()
        mlflow.log_metrics({f"iecv_{key}_{k}": float(v) for k, v in p.items()
                            if k in ("k", "estimate", "ci_low", "ci_high", "pi_low", "pi_high", "tau2", "i2")
                            and isinstance(v, (int, float)) and np.isfinite(v)})
    return table
