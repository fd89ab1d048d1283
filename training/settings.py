"""Typed training configuration: environment variables (PVERISK_*) for deployment,
defaults that work locally (SQLite store under mlflow/)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from feature_store.settings import TrackingSettings  # noqa: F401  (re-exported for callers)


class TrainSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PVERISK_TRAIN_")
    seed: int = 0
    trials: int = Field(12, ge=1, description="hyperparameter configurations to try")
    time_budget_s: float | None = Field(None, gt=0, description="stop tuning after this many seconds")
    test_size: float = Field(0.25, gt=0, lt=0.9)
    # Below this many patients, evaluation is by repeated cross-validation, not a held-out split.
    small_cohort: int = 400
    small_sample_warning: int = 200
    cv_folds: int = 5
    n_bootstrap: int = 500
    max_rounds: int = 600
    early_stopping_rounds: int = 40
    n_jobs: int = 2
    # Promotion gate: AUROC margin over the champion, and how much worse calibration may be.
    promotion_margin_auroc: float = 0.005
    calibration_tolerance: float = 0.05
    brier_tolerance: float = 0.002

    @field_validator("cv_folds")
    @classmethod
    def _folds(cls, v: int) -> int:
        if v < 2:
            raise ValueError("cv_folds must be at least 2")
        return v
