"""Each boundary the product promises, checked alone (issue 22: one-line bugs that survived because the
tests only looked at cases far from the boundary, or at two conditions failing at once).

- The champion bar: the AUROC's lower bound must be above 0.5 and the calibration slope inside 0.6-1.6,
  each condition on its own.
- Risk bands: a risk equal to a cut-off belongs to the band above it; low and high are not interchangeable.
- The outcome link: each stored row holds the probability of the model it names (champion and challenger
  are never swapped), for single predictions and batches alike.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from feature_store import contract as c
from model_runtime.bands import band_labels
from monitoring.monitor import BANDS, Monitor, bands_of
from monitoring.settings import MonitorSettings
from monitoring.windows import batch_prediction_ids, new_prediction_id
from training.registry import eligibility
from training.settings import TrainSettings

GOOD = {"auroc": 0.75, "auroc_ci_low": 0.62, "calibration_slope": 1.0}


# ---- the champion bar ----------------------------------------------------------------------------
def test_a_good_model_clears_the_bar():
    assert eligibility(GOOD, TrainSettings()) is None


@pytest.mark.parametrize("ci_low, eligible", [(0.5, False), (0.45, False), (0.41, False), (0.5001, True)])
def test_the_auroc_lower_bound_must_be_above_one_half(ci_low, eligible):
    """Only the AUROC condition fails here (the slope is 1.0): 0.5 itself is not enough."""
    why = eligibility({**GOOD, "auroc_ci_low": ci_low}, TrainSettings())
    assert (why is None) == eligible, why
    if not eligible:
        assert "lower 95% bound" in why and "not above 0.5" in why and "slope" not in why


@pytest.mark.parametrize("slope, eligible", [(0.6, True), (1.6, True), (0.59, False), (1.61, False),
                                             (2.0, False), (2.9, False)])
def test_the_calibration_slope_must_lie_inside_the_default_range(slope, eligible):
    """Only the slope condition fails here (the AUROC bound is fine): the default range is 0.6-1.6."""
    why = eligibility({**GOOD, "calibration_slope": slope}, TrainSettings())
    assert (why is None) == eligible, why
    if not eligible:
        assert why == f"calibration slope {slope:.2f} is outside 0.6-1.6"


def test_an_undefined_slope_is_not_eligible_and_says_why():
    why = eligibility({**GOOD, "calibration_slope": float("nan")}, TrainSettings(), "undefined: all one class")
    assert why.startswith("calibration slope undefined: all one class") and "0.6-1.6" in why


# ---- risk bands ----------------------------------------------------------------------------------
@pytest.mark.parametrize("p, band", [(0.0, "low"), (0.1499, "low"), (0.15, "intermediate"), (0.25, "intermediate"),
                                     (0.3499, "intermediate"), (0.35, "high"), (0.9, "high")])
def test_a_risk_on_a_cut_off_belongs_to_the_band_above(p, band):
    assert band_labels(np.array([p]), 0.15, 0.35).tolist() == [band]
    assert BANDS[bands_of(np.array([p]), 0.15, 0.35)[0]] == band  # the monitor counts the same bands


def test_served_bands_follow_the_models_cut_offs(small_risk):
    """The served model bands its own probabilities with its own cut-offs, low below and high from."""
    rows = c.example_record(small_risk.features)
    n = 200
    rng = np.random.default_rng(3)
    columns = {k: np.array([v] * n, dtype=object) for k, v in rows.items()}
    columns["age_years"] = rng.uniform(20, 90, n)
    columns["largest_metastasis_cm"] = rng.uniform(0.5, 12, n)
    columns["cea_ng_ml"] = rng.uniform(0.5, 900, n)
    derived, _ = small_risk.derive(columns)
    scored = small_risk.score_arrays(derived, n, explain=False)
    low, high = small_risk.band_low_below, small_risk.band_high_from
    assert low < high
    expected = np.where(scored.probability < low, "low", np.where(scored.probability >= high, "high", "intermediate"))
    assert scored.band.tolist() == expected.tolist()


# ---- the outcome link ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def challenger(small_risk):
    """A second version whose risks differ from the champion's for every patient."""
    from model_runtime.scoring import ModelIdentity, RiskModel

    class Shifted(RiskModel):
        def probabilities(self, X):  # a different model: the champion's risk halved
            return super().probabilities(X) / 2

    return Shifted(small_risk.booster, small_risk.metadata, ModelIdentity("m", "2", "challenger", "simulated", "m:v2"))


def test_each_stored_risk_is_the_named_models_own(tmp_path, small_risk, challenger):
    store = tmp_path / "predictions.db"
    monitor = Monitor(small_risk, MonitorSettings(store=store, flush_seconds=60, refresh_seconds=60),
                      challenger=challenger).start()
    record = c.example_record(small_risk.features)
    champion_p, singles = {}, []
    for i in range(5):
        columns = {k: [v] for k, v in {**record, "age_years": 40 + 5 * i}.items()}
        derived, _ = small_risk.derive(columns)
        p = float(small_risk.score_arrays(derived, 1, explain=False).probability[0])
        singles.append(new_prediction_id())
        champion_p[singles[-1]] = p
        monitor.observe(columns, 1, [p], singles[-1:])
    batch = batch_prediction_ids(np.array([0, 1]), 2)
    monitor.observe({k: np.array([v, v], dtype=object) for k, v in record.items()}, 2, np.array([0.2, 0.4]), batch)
    assert monitor.close()
    db = sqlite3.connect(store)
    try:
        rows = db.execute("SELECT prediction_id, model_version, alias, probability FROM predictions").fetchall()
        stored = db.execute("SELECT model_version, alias, probabilities FROM prediction_batches").fetchall()
    finally:
        db.close()
    assert len(rows) == 10
    for pid, version, alias, prob in rows:
        want = champion_p[pid] if version == "1" else champion_p[pid] / 2
        assert (version, alias) in {("1", "champion"), ("2", "challenger")}
        assert prob == pytest.approx(want, rel=1e-6), (version, alias)
    by_version = {v: (a, np.frombuffer(b, dtype="float64")) for v, a, b in stored}
    assert by_version["1"][0] == "champion" and by_version["1"][1].tolist() == [0.2, 0.4]
    assert by_version["2"][0] == "challenger" and not np.allclose(by_version["2"][1], [0.2, 0.4])
