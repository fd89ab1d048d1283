"""How a model's answers are stated (risk bands, top factors): light, so that settings can import
it without loading XGBoost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Options(Protocol):
    """How answers are stated: the deployment's (serving reads them from PVERISK_SERVE_*)."""

    band_low_below: float
    band_high_from: float
    top_factors: int


@dataclass(frozen=True)
class ScoringOptions:
    """The defaults. Risk bands: an assumption around the ~25% base rate of Ironside 2017, not
    validated cut-offs."""

    band_low_below: float = 0.15
    band_high_from: float = 0.35
    top_factors: int = 5
