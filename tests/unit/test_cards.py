"""The card a surgeon reads (ehr/cards.py), from a prediction and the chart's problems: labels and clinical units,
drivers in words, a missing input never a driver but listed as not known with why, what would carry it and how
far the risk moves; the indicator follows the band."""

from __future__ import annotations

import pytest

from ehr.cards import build_cards
from ehr.fhir_read import UNIT, Mapped, Problem


def _prediction(band: str = "intermediate") -> dict:
    return {"probability": {"low": 0.08, "intermediate": 0.27, "high": 0.52}[band], "risk_band": band,
            "band_thresholds": {"low_below": 0.15, "high_from": 0.35},
            "clinical_scores": {"fong_crs": 2.0, "game_score": None, "game_group": None, "m_crs": 1.0,
                                "tumour_burden_score": 5.23},
            "top_factors": [
                {"feature": "cea_ng_ml", "value": None, "contribution_log_odds": -0.4, "direction": "lowers risk"},
                {"feature": "n_liver_metastases", "value": 14, "contribution_log_odds": 0.9, "direction": "raises risk"},
                {"feature": "bridging_chemo_planned", "value": False, "contribution_log_odds": 0.2,
                 "direction": "raises risk"},
                {"feature": "bilirubin_mg_dl", "value": 1.0, "contribution_log_odds": -0.1,
                 "direction": "lowers risk"}],
            "missing_inputs": ["cea_ng_ml", "braf_v600e"]}


def _card(band: str = "intermediate"):
    mapped = Mapped(record={}, problems=[Problem(UNIT, "Observation/x", "unit not understood or not convertible to "
                                                 "ng/mL", "cea_ng_ml")])
    record = {"n_liver_metastases": 14, "bridging_chemo_planned": False, "bilirubin_mg_dl": 1.0}
    return build_cards(_prediction(band), record, "", [], 0.8, 0.5, "Research use only.", "m v1", mapped,
                       ranges={"cea_ng_ml": (0.21, 0.36), "braf_v600e": (0.268, 0.272)}).cards[0]


def test_drivers_in_words_and_a_missing_input_is_never_a_driver():
    d = _card().detail
    drivers = d.split("**What drives this estimate**", 1)[1].split("**Not known**", 1)[0]
    assert "- Number of liver metastases 14 raises the risk" in drivers
    assert "- Bridging chemotherapy planned: no - raises the risk" in drivers
    assert "- Total bilirubin 1.0 mg/dL lowers the risk" in drivers
    assert "CEA" not in drivers  # missing: the model's default branch is not a factor
    assert "log-odds" not in d and "_ng_ml" not in d and "n_liver" not in d


def test_a_value_left_out_says_why_what_would_carry_it_and_how_much_the_risk_depends_on_it():
    d = _card().detail
    assert ("- CEA (left out: unit not understood): would come from mCODE Tumor Marker Test (LOINC 2039-6 or 83085-1); "
            "risk 21% to 36% across typical values") in d
    assert "Also not known, changing this estimate by under 2 points: BRAF V600E" in d
    assert "**Data problems:** 1 unit not understood" in d


@pytest.mark.parametrize("band,indicator", [("low", "info"), ("intermediate", "info"), ("high", "warning")])
def test_the_indicator_follows_the_band(band, indicator):
    card = _card(band)
    assert card.indicator == indicator and f"({band})" in card.summary


def test_links_are_relative_without_a_public_url():
    card = _card()
    assert card.source.url == "/model" and all(link.url.startswith("/") for link in card.links)


def test_the_jwt_audience_needs_the_configured_url():
    """The audience was the request's Host when no public URL was set: whatever the caller sent."""
    from pydantic import ValidationError

    from ehr.settings import EhrSettings

    with pytest.raises(ValidationError, match="PVERISK_SERVE_PUBLIC_URL"):
        EhrSettings(cds_jwt_required=True)
    assert EhrSettings(cds_jwt_required=True, public_url="https://pverisk.example").public_url


@pytest.mark.parametrize("required, headings", [
    ([], ["**Not known**"]),
    (["n_liver_metastases"], ["**Required and not known**", "**Also not known**"])])
def test_not_enough_data_calls_only_required_inputs_required(required, headings):
    """Trial: with every required input known, the optional ones were listed as "Required and not known"."""
    record = {"age_years": 70, "largest_metastasis_cm": 3.0}
    features = ["age_years", "n_liver_metastases", "largest_metastasis_cm", "braf_v600e", "inr", "cea_ng_ml"]
    d = build_cards(None, record, "", required, 0.4, 0.5, "Research use only.", "m v1", None, features).cards[0].detail
    assert [h for h in ("**Required and not known**", "**Also not known**", "**Not known**") if h in d] == headings
    if not required:
        assert "Required" not in d.split("needed).", 1)[1]
