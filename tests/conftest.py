"""Shared fixtures. Everything the tests write lives in temporary folders."""

from __future__ import annotations

import os

# Offline by rule, before any library reads them.
for _var in ("BENTOML_DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
    os.environ[_var] = "true"

import pytest  # noqa: E402

from feature_store.simulate import simulate_cohort  # noqa: E402


@pytest.fixture(scope="session")
def cohort_20k():
    return simulate_cohort(20_000, seed=20_000)
