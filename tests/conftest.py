"""Shared fixtures. Everything the tests write lives in temporary folders."""

from __future__ import annotations

import os

# Offline by rule, before any library reads them.
for _var in ("BENTOML_DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
    os.environ[_var] = "true"
# The BentoML store of this test session: a temporary folder, set before bentoml is imported.
import tempfile  # noqa: E402

os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="pverisk-bentoml-")
for _var in ("MLFLOW_TRACKING_URI", "PVERISK_TRACKING_URI", "PVERISK_SERVE_MODEL_TAG", "PVERISK_SERVE_API_KEY"):
    os.environ.pop(_var, None)

import pytest  # noqa: E402

from feature_store.simulate import simulate_cohort  # noqa: E402


@pytest.fixture(scope="session")
def cohort_20k():
    return simulate_cohort(20_000, seed=20_000)


# --- training fixtures: one small model per session, in a temporary SQLite store ----------
from pathlib import Path  # noqa: E402

from training.settings import TrackingSettings, TrainSettings  # noqa: E402


def fast_settings(**kw) -> TrainSettings:
    """Small budgets: the tests check behaviour, the benchmark checks quality."""
    base = dict(trials=2, n_bootstrap=50, max_rounds=150, cv_folds=3, early_stopping_rounds=20)
    return TrainSettings(**{**base, **kw})


def local_tracking(root: Path, **kw) -> TrackingSettings:
    return TrackingSettings(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=root / "artifacts", **kw)


@pytest.fixture(scope="session")
def cohort_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "simulated-cohort.parquet"
    simulate_cohort(800, seed=11).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory, cohort_file):
    """A registered champion in a temporary local store: (result, tracking settings)."""
    from training.pipeline import run_training

    root = tmp_path_factory.mktemp("store")
    tracking = local_tracking(root)
    result = run_training(cohort_file, settings=fast_settings(), tracking=tracking)
    return result, tracking
