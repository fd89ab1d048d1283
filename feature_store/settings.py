"""Settings shared by every layer: paths (one project root; generated stores under git-ignored
folders) and the MLflow tracking store, the hand-off between training and serving."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def project_root() -> Path:
    """PVERISK_ROOT, else the checkout this package lives in."""
    env = os.environ.get("PVERISK_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent


class DataSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PVERISK_")
    data_dir: Path = Field(default_factory=lambda: project_root() / "data")

    @property
    def default_cohort(self) -> Path:
        return self.data_dir / "simulated" / "cohort.parquet"


def _default_tracking_uri() -> str:
    # Honour the standard variable where it is set.
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow' / 'mlflow.db'}"


class TrackingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PVERISK_")
    tracking_uri: str = Field(default_factory=_default_tracking_uri)
    # Default: beside a local SQLite store (so a store moved elsewhere takes its artifacts along),
    # i.e. mlflow/artifacts for the default store; ignored by a tracking server (it proxies them).
    artifact_root: Path | None = None
    experiment: str = "pve-progression"
    registered_model: str = "pve-progression-risk"

    @model_validator(mode="after")
    def _artifacts_beside_the_store(self) -> "TrackingSettings":
        if self.artifact_root is None:
            local = self.tracking_uri.removeprefix("sqlite:///") if self.tracking_uri.startswith("sqlite:///") else None
            self.artifact_root = (Path(local).parent if local else project_root() / "mlflow") / "artifacts"
        return self


def default_bentoml_home() -> Path:
    """BENTOML_HOME if set, else a git-ignored store inside the project (never the user's home)."""
    return Path(os.environ.get("BENTOML_HOME") or project_root() / "bentoml_home")
