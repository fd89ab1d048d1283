"""Monitoring configuration (PVERISK_MONITOR_*): windows, drift thresholds, shadow mode, the outcome store."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from feature_store.settings import DataSettings


def _default_store() -> Path:
    return DataSettings().data_dir / "monitoring" / "predictions.db"


class MonitorSettings(BaseSettings):
    """PVERISK_MONITOR_*: drift windows, thresholds that alerting uses, shadow mode, outcome store."""

    model_config = SettingsConfigDict(env_prefix="PVERISK_MONITOR_")
    enabled: bool = True
    # Rolling window of inputs and scores: this many seconds, kept in `window_slots` time slots
    # (the oldest slot drops out whole).
    window_seconds: float = Field(86_400, gt=0)
    window_slots: int = Field(24, ge=1, le=1440)
    # How often derived values (PSI, quantiles, drift flags) are recomputed and published.
    refresh_seconds: float = Field(2.0, gt=0)
    # Monitoring work is done in groups: what was answered within this interval is binned, scored by
    # the shadow challenger and written to the outcome link together, in one SQLite transaction
    # (per patient, one at a time, that work cost ~40x more than in a group). A clean stop writes
    # what is pending; a crash loses at most the last interval's prediction links.
    flush_seconds: float = Field(1.0, gt=0, le=60)
    # Drift flag: PSI above this, or the missing share moved by more than this, once the window
    # holds at least `drift_min_patients` (PSI of small samples is biased upwards: ~bins/n).
    psi_threshold: float = Field(0.2, gt=0)
    missing_share_threshold: float = Field(0.15, gt=0, le=1)
    drift_min_patients: int = Field(100, ge=1)
    # Shadow mode: also score every request with the imported challenger, after answering.
    shadow: bool = False
    # Pinned challenger tag; default: the newest imported model labelled `challenger`.
    challenger_tag: str | None = None
    # The prediction-outcome link (SQLite); a git-ignored data folder by default.
    store: Path = Field(default_factory=_default_store)
    store_retention_days: float = Field(730, gt=0)
    # Live performance over the most recent predictions with an outcome.
    performance_window: int = Field(500, ge=10)
    # Requests waiting for the monitor beyond this are not monitored (counted): the service keeps answering.
    max_pending: int = Field(10_000, ge=10)
