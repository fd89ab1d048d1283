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
    # An evaluation cohort with fewer events (or non-events) than this gets its own warning (Riley 2021:
    # about 100 events for a precise calibration slope; 20 is where intervals stop meaning much).
    evaluation_min_events: int = 100
    cv_folds: int = 5
    n_bootstrap: int = 500
    max_rounds: int = 600
    early_stopping_rounds: int = 40
    n_jobs: int = 2
    # Promotion gate: AUROC margin over the champion, and how much worse calibration may be.
    promotion_margin_auroc: float = 0.005
    calibration_tolerance: float = 0.05
    brier_tolerance: float = 0.002
    # The bar any champion must clear, whatever it is compared with: the AUROC's lower 95% bound
    # above this, and the calibration slope inside this range (a sanity bar against a model worse
    # than chance or wildly over/under-confident, not a quality target).
    champion_min_auroc_ci_low: float = 0.5
    champion_slope_range: tuple[float, float] = (0.6, 1.6)
    # Champion and challenger are compared on patients neither was trained on: at least this many,
    # with this many events, or nothing is promoted automatically.
    gate_min_patients: int = Field(50, ge=10)
    gate_min_events: int = Field(10, ge=1)
    # Features: a cohort's own. Features missing in more than this share of patients are dropped
    # (and reported); of a model's features these are required in requests (a coarse form counts
    # for its fine feature). A policy, configurable per deployment.
    max_missing_share: float = Field(0.5, gt=0, le=1)
    required_features: tuple[str, ...] = ("age_years", "n_liver_metastases", "largest_metastasis_cm")
    # Small cohorts: below this many events, Harrell's bootstrap optimism correction is reported
    # beside the cross-validated figures.
    optimism_below_events: int = 100
    optimism_bootstrap: int = Field(100, ge=2)
    # A centre (internal-external validation, federated site, validation cohort) gets AUROC and calibration
    # figures with at least this many events and non-events; below, it is listed as too small.
    centre_min_events: int = Field(3, ge=1)
    # Updating at a new centre (`pverisk validate`): closed testing at this level (Vergouwe 2017); the refit is
    # a candidate only with this many events (and non-events) per model input.
    update_alpha: float = Field(0.05, gt=0, lt=1)
    refit_events_per_input: int = Field(10, ge=1)
    # Events per candidate predictor parameter below this: a warning in the card (Peduzzi 1996).
    epv_warning: float = 10.0

    @field_validator("champion_slope_range")
    @classmethod
    def _slope_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < 1 < v[1]:
            raise ValueError("champion_slope_range must hold 1 (low < 1 < high)")
        return v

    @field_validator("cv_folds")
    @classmethod
    def _folds(cls, v: int) -> int:
        if v < 2:
            raise ValueError("cv_folds must be at least 2")
        return v
