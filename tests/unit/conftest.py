"""Fixtures of the unit tests."""

from __future__ import annotations

import numpy as np
import pytest

from feature_store import contract as c
from feature_store.simulate import simulate_cohort


@pytest.fixture(scope="session")
def small_risk():
    """A small model reading a coarse input (derived from the fine count), with required inputs."""
    import xgboost as xgb

    from feature_store.encoding import encode_array
    from model_runtime.scoring import ModelIdentity, RiskModel

    features = ["age_years", "more_than_4_liver_metastases", "largest_metastasis_cm", "ras_status", "cea_ng_ml",
                "sex", "bilobar_disease"]
    cohort = simulate_cohort(1500, seed=5)
    cohort["more_than_4_liver_metastases"] = cohort["n_liver_metastases"] > 4
    X = encode_array(cohort, features)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                        xgb.DMatrix(X, label=cohort[c.OUTCOME].to_numpy(float), missing=np.nan,
                                    feature_names=c.model_columns(features)), num_boost_round=10)
    meta = {"features": features, "columns": c.model_columns(features), "required": ["age_years",
                                                                                    "more_than_4_liver_metastases"]}
    return RiskModel(booster, meta, ModelIdentity("m", "1", "champion", "simulated", "m:v1"))


