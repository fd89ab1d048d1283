"""Serving configuration (PVERISK_SERVE_*): model tag, risk bands, limits, authentication."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model_runtime.options import ScoringOptions

BENTO_MODEL_NAME = "pve-progression-risk"


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PVERISK_SERVE_")
    # Pinned BentoML model tag (name:version). Unset: the newest imported champion.
    model_tag: str | None = None
    # Risk bands: unset, the served model's own (derived at training from its cohort's outcome rate;
    # 0.15 / 0.35 for models trained before that); set, the deployment's override.
    band_low_below: float | None = Field(ScoringOptions.band_low_below, gt=0, lt=1)
    band_high_from: float | None = Field(ScoringOptions.band_high_from, gt=0, lt=1)
    top_factors: int = Field(ScoringOptions.top_factors, ge=1, le=30)
    max_batch: int = Field(1000, ge=1)
    max_body_bytes: int = Field(2_000_000, ge=1024)
    # POST /v1/predict/columns (JSON columns, Arrow, Parquet): large batches are what it is for.
    max_columnar_rows: int = Field(100_000, ge=1)
    max_columnar_body_bytes: int = Field(64_000_000, ge=1024)
    # FHIR Bundles and CDS Hooks prefetch carry whole patient charts (0.3-5 MB from EHR exports).
    max_fhir_body_bytes: int = Field(20_000_000, ge=1024)
    # Off by default locally; set PVERISK_SERVE_API_KEY to require it (X-API-Key or Bearer).
    api_key: SecretStr | None = None
    # ... or from a file (a mounted container secret: PVERISK_SERVE_API_KEY_FILE), never from the
    # command line; surrounding whitespace (a trailing newline) is not part of the key.
    api_key_file: Path | None = None
    # Predictions run on dummy input after loading and before /readyz says ready.
    warmup_requests: int = Field(50, ge=0)
    # TEST ONLY, never set in deployment: while this file exists the loaded model is held back from
    # serving (alive, not ready), so tests observe the loading state deterministically instead of
    # racing a short window.
    test_hold_loading_file: Path | None = None

    @model_validator(mode="after")
    def _key_from_file(self) -> "ServingSettings":
        if self.api_key_file is not None:
            if self.api_key is not None:
                raise ValueError("set PVERISK_SERVE_API_KEY or PVERISK_SERVE_API_KEY_FILE, not both")
            try:
                key = self.api_key_file.read_text().strip()
            except OSError as exc:  # the path may be logged; the key never is
                raise ValueError(f"PVERISK_SERVE_API_KEY_FILE {self.api_key_file}: cannot read ({exc.strerror})") from None
            if not key:
                raise ValueError(f"PVERISK_SERVE_API_KEY_FILE {self.api_key_file} is empty")
            self.api_key = SecretStr(key)
        if self.api_key is not None and not self.api_key.get_secret_value().strip():
            raise ValueError("PVERISK_SERVE_API_KEY is empty: unset it to turn authentication off")
        return self

    @model_validator(mode="after")
    def _bands(self) -> "ServingSettings":
        if None not in (self.band_low_below, self.band_high_from) and self.band_low_below >= self.band_high_from:  # type: ignore[operator]
            raise ValueError("band_low_below must be below band_high_from")
        return self
