"""EHR integration configuration (PVERISK_SERVE_CDS_*, PVERISK_SERVE_PUBLIC_URL): CDS Hooks security,
FHIR-server calls and when a chart holds enough to give a number. The variables keep the serving
prefix: they configure the one service that mounts these routes."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class EhrSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PVERISK_SERVE_")
    # The URL clients use to reach this service (JWT audience, links in cards). Unset: card links are relative
    # (never built from a request's Host header) and the JWT cannot be required.
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
    # (How old a value may be is the contract's, per source: feature_store/sources.py.)
    cds_min_input_share: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _audience_needs_a_url(self) -> "EhrSettings":
        # The JWT audience is this service's URL: taken from a request's Host header it would be whatever the
        # caller says.
        if self.cds_jwt_required and not self.public_url:
            raise ValueError("PVERISK_SERVE_CDS_JWT_REQUIRED=true needs PVERISK_SERVE_PUBLIC_URL (the JWT audience "
                             "is this service's public URL)")
        return self
