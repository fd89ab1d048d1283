"""Paths derive from one project root; every generated store lives under git-ignored folders."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


def project_root() -> Path:
    """PVERISK_ROOT, else the checkout this package lives in."""
    env = os.environ.get("PVERISK_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent


class DataSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PVERISK_")
    data_dir: Path = project_root() / "data"

    @property
    def default_cohort(self) -> Path:
        return self.data_dir / "simulated" / "cohort.parquet"
