"""Serving configuration (PVERISK_SERVE_*): model tag, risk bands, limits, authentication."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BENTO_MODEL_NAME = "pve-progression-risk"


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PVERISK_SERVE_")
    # Pinned BentoML model tag (name:version). Unset: the newest imported champion.
    model_tag: str | None = None
    # Risk bands (assumption: around the ~25% base rate of Ironside 2017; not validated cut-offs).
    band_low_below: float = Field(0.15, gt=0, lt=1)
    band_high_from: float = Field(0.35, gt=0, lt=1)
    top_factors: int = Field(5, ge=1, le=30)
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
    # The URL clients use to reach this service (JWT audience, links in cards); default: the request's.
    public_url: str | None = None
    # CDS Hooks: JWT verification (off for local development), issuer -> JWKS URL allowlist.
    cds_jwt_required: bool = False
    cds_issuers: dict[str, str] = Field(default_factory=dict)
    cds_jti_window_s: int = Field(600, ge=1)
    cds_fhir_timeout_s: float = Field(2.0, gt=0)
    # Pages followed per FHIR search (Bundle.link "next"): bounds the calls one hook request makes to
    # the EHR; a search with more pages is refused (412) rather than scored on a truncated history.
    cds_fhir_max_pages: int = Field(20, ge=1, le=1000)
    # Below this share of contract inputs (or with a required input missing) a card says so instead of a number.
    cds_min_input_share: float = Field(0.5, ge=0, le=1)
    cds_max_observation_age_days: int = Field(120, ge=1)
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
        if self.band_low_below >= self.band_high_from:
            raise ValueError("band_low_below must be below band_high_from")
        return self
