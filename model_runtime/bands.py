"""Risk bands travel with the model: cut-offs derived at training from the training cohort's outcome rate,
carried in the model's metadata, card and responses; a deployment may still override them.

The rule: "low" below 0.6 x the training cohort's outcome rate, "high" from 1.4 x it, rounded to 0.01 (and
kept inside 0.01-0.95). At the ~25% base rate of Ironside 2017 it gives the fixed 0.15 / 0.35 the project
used before, so bands mean the same thing relative to a cohort's average risk: a patient is "high" at 40%
above the average risk of the cohort the model learnt from, not at a number tuned for another population
(on a registry with a 41.5% rate every patient was "high" under the fixed cut-offs). These are descriptive
cut-offs, not validated decision thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

LOW_FACTOR = 0.6
HIGH_FACTOR = 1.4
# Models trained before bands travelled with them: the cut-offs they were served with.
LEGACY = (0.15, 0.35)
RULE = (f"low below {LOW_FACTOR:g} x and high from {HIGH_FACTOR:g} x the training cohort's outcome rate "
        "(0.15 / 0.35 at a 25% rate), rounded to 0.01")


@dataclass(frozen=True)
class Bands:
    low_below: float
    high_from: float
    source: str  # "model", "deployment" or "default"
    rule: str

    def thresholds(self) -> dict[str, float]:
        return {"low_below": self.low_below, "high_from": self.high_from}

    def described(self) -> dict[str, Any]:
        return {**self.thresholds(), "source": self.source, "rule": self.rule}


def band_labels(p: np.ndarray, low_below: float, high_from: float) -> np.ndarray:
    """"low" below `low_below`, "high" from `high_from` on, "intermediate" between (a risk equal to a
    cut-off belongs to the band above it)."""
    return np.where(p < low_below, "low", np.where(p >= high_from, "high", "intermediate"))


def derive_bands(outcome_rate: float) -> dict[str, Any]:
    """The metadata entry a model is logged with."""
    if not 0 < outcome_rate < 1:
        raise ValueError(f"outcome rate {outcome_rate!r} must lie strictly between 0 and 1")
    low = min(max(round(LOW_FACTOR * outcome_rate, 2), 0.01), 0.94)
    high = min(max(round(HIGH_FACTOR * outcome_rate, 2), low + 0.01), 0.95)
    return {"low_below": low, "high_from": high, "base_rate": round(float(outcome_rate), 4), "rule": RULE}


def resolve_bands(metadata: Mapping[str, Any], low_override: float | None = None,
                  high_override: float | None = None) -> Bands:
    """The cut-offs a model is served with: the deployment's where it set them explicitly, else the model's
    own, else (a model trained before this rule) the legacy 0.15 / 0.35."""
    own = metadata.get("risk_bands") or {}
    if own:
        low, high, source, rule = own["low_below"], own["high_from"], "model", (
            f"{own.get('rule', RULE)}; training outcome rate {own.get('base_rate', 'not recorded')}")
    else:
        low, high, source, rule = *LEGACY, "default", ("fixed 0.15 / 0.35 (an assumption around a 25% base rate): "
                                                       "the model was trained before its bands were recorded")
    if low_override is not None or high_override is not None:
        low = low if low_override is None else low_override
        high = high if high_override is None else high_override
        source, rule = "deployment", "set by the deployment (PVERISK_SERVE_BAND_LOW_BELOW / _HIGH_FROM)"
    if not low < high:
        raise ValueError(f"risk bands: low_below {low:g} must be below high_from {high:g} ({source})")
    return Bands(float(low), float(high), source, rule)
