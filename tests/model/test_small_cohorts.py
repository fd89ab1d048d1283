"""Few patients: Harrell's optimism correction on a cohort with two non-events (the 23-patient registry
crashed with "Invalid classes inferred from unique values of `y`" when a bootstrap sample held one)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training import evaluate as ev
from training.train import fit_model, refit_fixed
from tests.conftest import fast_settings


def test_optimism_correction_survives_samples_that_hold_one_patient_of_an_outcome():
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"age_years": rng.normal(60, 9, 23), "largest_metastasis_cm": rng.gamma(4, 1, 23)})
    y = np.r_[np.ones(21, dtype=int), np.zeros(2, dtype=int)]
    settings = fast_settings(trials=1, max_rounds=20, optimism_bootstrap=40)
    model = fit_model(X, y, settings)

    def refit(rows: np.ndarray):
        predict = refit_fixed(X.iloc[rows], y[rows], model, settings, settings.seed)
        return lambda idx: predict(X.iloc[idx])

    out = ev.optimism_corrected(refit, len(y), y, model.predict(X), 40, seed=3)
    assert out["optimism_bootstrap_samples"] == 40 and np.isfinite(out["optimism_corrected_auroc"])
