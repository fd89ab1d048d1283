"""Refit the simulator's own specification with a plain logistic regression.

Used by the data tests and the benchmark to show the generator recovers the
effect sizes it was given (and the published ones where a CI exists).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_store import contract as c


def design(df: pd.DataFrame) -> pd.DataFrame:
    """The simulator's own specification, on complete cases (missingness is at random)."""
    d = df.dropna(subset=["cea_ng_ml", "chemo_response"])
    d = d[(d["ras_status"] != "unknown") & (d["braf_v600e"] != "unknown")]
    ras = (d["ras_status"] == "mutant").astype(float)
    bridging = d["bridging_chemo_planned"].astype(float)
    X = pd.DataFrame({
        "right_sided": (d["primary_side"] == "right_colon").astype(float),
        "more_than_4_mets": (d["n_liver_metastases"] > 4).astype(float),
        "extra_mets": np.clip(d["n_liver_metastases"] - 4, 0, None),
        "complete": (d["chemo_response"] == "complete").astype(float),
        "stable": (d["chemo_response"] == "stable").astype(float),
        "progressive": (d["chemo_response"] == "progressive").astype(float),
        "more_than_6_cycles": (d["chemo_cycles_pre_pve"] > 6).astype(float),
        "ras_mutant": ras,
        "ras_mutant_no_bridging": ras * (1 - bridging),
        "braf_mutant": (d["braf_v600e"] == "mutant").astype(float),
        "bridging": bridging,
        "sflr_lower_10": (33 - d["sflr_percent"]) / 10,
        "wait_weeks": d["planned_interval_weeks"] - 4,
        "extrahepatic": d["extrahepatic_disease"].astype(float),
        "bilobar": d["bilobar_disease"].astype(float),
        "largest_cm": d["largest_metastasis_cm"] - 4,
        "log10_cea": np.log10(d["cea_ng_ml"]) - 1,
    }, index=d.index)
    return X.assign(intercept=1.0), d[c.OUTCOME].astype(float)


def logit_fit(X: pd.DataFrame, y: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Unpenalised logistic regression by Newton-Raphson, with Wald standard errors."""
    A, t = X.to_numpy(float), y.to_numpy(float)
    beta = np.zeros(A.shape[1])
    for _ in range(30):
        p = 1 / (1 + np.exp(-A @ beta))
        H = A.T @ (A * (p * (1 - p))[:, None])
        step = np.linalg.solve(H, A.T @ (t - p))
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    se = np.sqrt(np.diag(np.linalg.inv(H)))
    return pd.Series(beta, X.columns), pd.Series(se, X.columns)
