"""How a model's answers are stated (risk bands, top factors): light, so that settings can import
it without loading XGBoost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Options(Protocol):
    """How answers are stated: the deployment's (serving reads them from PVERISK_SERVE_*)."""

    band_low_below: float | None  # None: the model's own cut-offs (model_runtime/bands.py)
    band_high_from: float | None
    top_factors: int


@dataclass(frozen=True)
class ScoringOptions:
    """The defaults. Risk bands: the model's own (derived at training from its cohort's outcome rate),
    unless a deployment sets them."""

    band_low_below: float | None = None
    band_high_from: float | None = None
    top_factors: int = 5
