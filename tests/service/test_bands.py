"""Risk bands travel with the model: the served model's own cut-offs (derived at training from its cohort's
outcome rate) in every response and in GET /v1/model; a deployment's explicit setting still overrides."""

from __future__ import annotations

import httpx
import pytest

from feature_store import contract as c
from model_runtime.options import ScoringOptions
from serving.stored import load_risk

pytestmark = pytest.mark.slow


def test_responses_carry_the_models_own_bands(server, imported):
    model, result = imported
    bands = result.card["risk_bands"]
    own = {"low_below": bands["low_below"], "high_from": bands["high_from"]}
    assert own != {"low_below": 0.15, "high_from": 0.35}  # this cohort's rate is not exactly 25%
    body = httpx.post(f"{server.url}/v1/predict", json=c.example_record(), timeout=30).json()
    assert body["band_thresholds"] == own
    info = httpx.get(f"{server.url}/v1/model", timeout=30).json()["band_thresholds"]
    assert {k: info[k] for k in own} == own and info["source"] == "model" and "outcome rate" in info["rule"]


def test_a_deployment_setting_overrides_the_models_bands(imported):
    model, _ = imported
    risk = load_risk(str(model.tag), ScoringOptions(band_low_below=0.05, band_high_from=0.5))
    assert risk.bands.source == "deployment" and risk.meta_block()["band_thresholds"] == {"low_below": 0.05,
                                                                                         "high_from": 0.5}
