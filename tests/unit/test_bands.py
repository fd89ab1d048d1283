"""Risk bands at their edges and in the words they are served with (the model card and every response carry
the rule; docs/MUTATION.md lists the mutants these tests kill)."""

from __future__ import annotations

import dataclasses

import pytest

from model_runtime.bands import RULE, derive_bands, resolve_bands

LEGACY_RULE = ("fixed 0.15 / 0.35 (an assumption around a 25% base rate): the model was trained before its bands "
               "were recorded")
DEPLOYMENT_RULE = "set by the deployment (PVERISK_SERVE_BAND_LOW_BELOW / _HIGH_FROM)"


@pytest.mark.parametrize("rate", [0.0, 1.0, 1.5, -0.1])
def test_an_outcome_rate_outside_zero_and_one_is_refused(rate):
    with pytest.raises(ValueError, match=r"must lie strictly between 0 and 1"):
        derive_bands(rate)


def test_the_metadata_entry_records_the_rate_to_four_places_and_the_rule():
    assert derive_bands(0.123456) == {"low_below": 0.07, "high_from": 0.17, "base_rate": 0.1235, "rule": RULE}


@pytest.mark.parametrize("rate, low, high", [(0.005, 0.01, 0.02), (0.01, 0.01, 0.02), (0.8, 0.48, 0.95), (0.999, 0.6, 0.95)])
def test_bands_stay_apart_and_inside_the_range_at_extreme_rates(rate, low, high):
    bands = derive_bands(rate)
    assert (bands["low_below"], bands["high_from"]) == (low, high)


def test_a_model_band_names_its_rule_and_training_rate():
    served = resolve_bands({"risk_bands": derive_bands(0.415)})
    assert served.rule == f"{RULE}; training outcome rate 0.415"
    assert served.described() == {"low_below": 0.25, "high_from": 0.58, "source": "model", "rule": served.rule}


def test_bands_recorded_without_rule_or_rate_say_so():
    served = resolve_bands({"risk_bands": {"low_below": 0.1, "high_from": 0.2}})
    assert served.rule == f"{RULE}; training outcome rate not recorded"


def test_legacy_and_deployment_bands_say_where_they_come_from():
    assert resolve_bands({}).rule == LEGACY_RULE
    # a model trained before bands travelled keeps the cut-offs it was served with
    assert resolve_bands({}).described() == {"low_below": 0.15, "high_from": 0.35, "source": "default",
                                             "rule": LEGACY_RULE}
    assert resolve_bands({}, 0.1, None).rule == DEPLOYMENT_RULE


def test_overriding_one_cut_off_keeps_the_models_other():
    model = {"risk_bands": derive_bands(0.415)}
    assert resolve_bands(model, None, 0.9).thresholds() == {"low_below": 0.25, "high_from": 0.9}
    assert resolve_bands(model, 0.1, None).thresholds() == {"low_below": 0.1, "high_from": 0.58}


def test_equal_cut_offs_are_refused():
    with pytest.raises(ValueError, match="must be below"):
        resolve_bands({}, 0.3, 0.3)


def test_served_bands_cannot_be_changed_in_place():
    # one Bands object is shared by every request a worker answers
    served = resolve_bands({"risk_bands": derive_bands(0.25)})
    with pytest.raises(dataclasses.FrozenInstanceError):
        served.low_below = 0.5  # type: ignore[misc]


def test_a_model_keeps_the_rule_it_was_trained_under():
    # a model logged under an earlier wording of the rule is served with that wording, not today's
    own = {"low_below": 0.1, "high_from": 0.3, "base_rate": 0.2, "rule": "an earlier rule"}
    assert resolve_bands({"risk_bands": own}).rule == "an earlier rule; training outcome rate 0.2"
