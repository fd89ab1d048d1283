"""How a raw model probability becomes a calibrated one.

The calibration map travels with the model as plain numbers in its MLflow metadata,
so that serving (which never imports training) applies exactly what training fitted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype="float64"), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def apply_calibration(raw: np.ndarray, spec: dict[str, Any] | None) -> np.ndarray:
    """Map raw probabilities through a calibration spec ({"method": "isotonic"|"sigmoid"|"none", ...}), then
    through its `recalibration` ({"intercept", "slope"} on the logit scale) when a model was updated for a
    new centre (`pverisk validate`)."""
    p = _calibrated(np.asarray(raw, dtype="float64"), spec)
    again = (spec or {}).get("recalibration")
    if again:
        z = again["intercept"] + again["slope"] * logit(p)
        return 1.0 / (1.0 + np.exp(-z))
    return p


def _calibrated(raw: np.ndarray, spec: dict[str, Any] | None) -> np.ndarray:
    if not spec or spec.get("method") == "none":
        return raw
    if spec["method"] == "isotonic":
        # IsotonicRegression.predict interpolates linearly between thresholds and clips outside.
        return np.interp(raw, np.asarray(spec["x"], float), np.asarray(spec["y"], float))
    if spec["method"] == "sigmoid":
        z = spec["a"] * logit(raw) + spec["b"]
        return 1.0 / (1.0 + np.exp(-z))
    raise ValueError(f"unknown calibration method {spec['method']!r}")
