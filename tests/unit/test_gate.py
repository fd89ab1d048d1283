"""The champion/challenger gate's decisions at their edges, without MLflow: the registry calls are replaced
by fakes and the metrics by fixed numbers, so each rule is checked on its own (docs/MUTATION.md)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from feature_store import contract as c
from training import registry
from training.registry import CANDIDATE, CHALLENGER, CHAMPION, eligibility, gate
from training.settings import TrainSettings

NEW = {"auroc": 0.80, "auroc_ci_low": 0.70, "calibration_slope": 1.0, "calibration_intercept": 0.0, "brier": 0.15}
OLD = {"auroc": 0.79, "calibration_slope": 0.95, "calibration_intercept": -0.1, "brier": 0.16}
KEYS = [f"k{i}" for i in range(100)]
CHAMP_KEYS, TRAIN_KEYS = set(KEYS[:20]), set(KEYS[20:30])  # so 70 patients (k30-k99) are fresh
CHAMPION_MODEL = object()


class Client:
    def __init__(self, champion: bool = True):
        self.champion = champion

    def get_model_version_by_alias(self, name, alias):
        assert name == "pverisk"
        if not self.champion or alias != CHAMPION:
            raise MlflowException("no such alias")
        return SimpleNamespace(version="3", run_id="run-3")


@pytest.fixture
def run(monkeypatch):
    """gate() with the champion's keys, model and metrics faked; returns (decision, calls)."""
    calls: dict = {}

    def fake_metrics(y, p):
        calls.setdefault("metrics_n", []).append(len(y))
        return dict(OLD if p[0] == 0.1 else {**calls["new"], **calls["fresh"]})

    def fake_predict(model, meta, sub):
        assert model is CHAMPION_MODEL and meta == calls["meta"]
        calls["champion_rows"] = list(sub.index)
        return np.full(len(sub), 0.1)

    monkeypatch.setattr(registry, "core_metrics", fake_metrics)
    monkeypatch.setattr(registry, "predict_registered", fake_predict)
    def fake_keys(client, run_id):
        assert isinstance(client, Client) and run_id == "run-3"
        return calls["champ_keys"]

    def fake_load(uri):
        calls["uri"] = uri
        return CHAMPION_MODEL, calls["meta"]

    monkeypatch.setattr(registry, "training_keys", fake_keys)
    monkeypatch.setattr(registry, "load_registered", fake_load)

    def _run(new=None, y=None, champion=True, frame=None, champ_keys=CHAMP_KEYS, features=(), fresh=None,
             slope_note=None, **settings):
        # new: the version's metrics on the whole evaluation set; fresh: on the patients neither was trained on
        calls.update(new={**NEW, **(new or {})}, fresh=fresh or {}, champ_keys=champ_keys,
                     meta={} if features is None else {"features": list(features)})
        y = np.r_[np.ones(10), np.zeros(20), np.ones(20), np.zeros(50)] if y is None else y
        frame = pd.DataFrame({c.OUTCOME: y.astype(int), "age_years": 60.0}) if frame is None else frame
        decision = gate(Client(champion), "pverisk", calls["new"], frame, np.full(len(frame), 0.9), KEYS,
                        TRAIN_KEYS, TrainSettings(**settings), slope_note)
        return decision, calls
    return _run


def test_eligibility_needs_the_auroc_bound_above_the_bar_and_the_slope_inside_the_range():
    s = TrainSettings()
    assert eligibility({**NEW, "auroc_ci_low": 0.5001}, s) is None
    assert eligibility({**NEW, "auroc_ci_low": 0.5}, s) == ("AUROC 0.800 has a lower 95% bound of 0.500, "
                                                           "not above 0.5")
    assert eligibility({**NEW, "calibration_slope": 0.6}, s) is None
    assert eligibility({**NEW, "calibration_slope": 1.6}, s) is None
    assert eligibility({**NEW, "calibration_slope": 1.61}, s) == "calibration slope 1.61 is outside 0.6-1.6"
    assert eligibility({**NEW, "auroc_ci_low": 0.4, "calibration_slope": np.nan}, s) == (
        "AUROC 0.800 has a lower 95% bound of 0.400, not above 0.5; calibration slope undefined: the logistic "
        "recalibration did not converge; a champion needs one inside 0.6-1.6")


def test_an_ineligible_version_is_a_candidate_and_no_champion_is_consulted(run):
    decision, calls = run(new={"auroc_ci_low": 0.45})
    assert decision == registry.GateDecision(
        CANDIDATE, "not eligible as champion: AUROC 0.800 has a lower 95% bound of 0.450, not above 0.5", None, None)
    assert "uri" not in calls


def test_the_first_version_to_clear_the_bar_is_champion(run):
    decision, _ = run(champion=False)
    assert decision == registry.GateDecision(CHAMPION, "first version to clear the bar (AUROC lower bound 0.700, "
                                             "calibration slope 1.00); no champion to compare with", None, None)


def test_a_champion_without_its_training_record_is_not_compared(run):
    decision, calls = run(champ_keys=None)
    assert decision == registry.GateDecision(
        CHALLENGER, "champion v3 has no record of its training patients, so the two cannot be compared fairly: "
        "not promoted automatically; decide with `pverisk promote`", "3", None)
    assert "uri" not in calls


@pytest.mark.parametrize("settings, alias", [({"gate_min_patients": 70, "gate_min_events": 20}, CHAMPION),
                                             ({"gate_min_patients": 71}, CHALLENGER),
                                             ({"gate_min_events": 21}, CHALLENGER)])
def test_too_few_fresh_patients_or_events_leave_the_decision_to_a_person(run, settings, alias):
    decision, _ = run(**settings)
    assert decision.alias == alias and decision.compared_patients == 70 and decision.champion_version == "3"
    if alias == CHALLENGER:
        assert decision.champion_metrics is None and decision.reason == (
            f"only 70 evaluation patients (20 events) were seen by neither this version nor champion v3 in "
            f"training (at least {settings.get('gate_min_patients', 50)} with {settings.get('gate_min_events', 10)} "
            "events needed): not promoted automatically; decide with `pverisk promote`")


def test_fresh_patients_who_all_had_the_event_cannot_be_compared(run):
    decision, _ = run(y=np.r_[np.zeros(30), np.ones(70)])
    assert decision.alias == CHALLENGER and decision.reason.startswith("only 70 evaluation patients (70 events)")


def test_a_better_version_beats_the_champion_on_patients_neither_was_trained_on(run):
    decision, calls = run()
    assert decision.alias == CHAMPION and decision.champion_version == "3" and decision.compared_patients == 70
    assert decision.champion_metrics == OLD and calls["uri"] == "models:/pverisk/3"
    assert calls["champion_rows"] == list(range(30, 100)) and calls["metrics_n"] == [70, 70]
    assert decision.reason == (
        "beats champion on 70 patients (20 events) neither was trained on: AUROC 0.8000 vs champion v3 0.7900 "
        "(gain +0.0100, margin 0.005); calibration slope 1.000 vs 0.950; Brier 0.1500 vs 0.1600")


def test_a_gain_exactly_at_the_margin_is_enough_and_below_it_is_not(run):
    margin = NEW["auroc"] - OLD["auroc"]
    assert run(promotion_margin_auroc=margin)[0].alias == CHAMPION
    below, _ = run(new={"auroc": 0.794})
    assert below.alias == CHALLENGER and below.reason.startswith("AUROC gain below margin on 70 patients")
    assert below.champion_metrics == OLD and below.compared_patients == 70 and below.champion_version == "3"


@pytest.mark.parametrize("new, worse", [
    ({"calibration_slope": 0.6}, False), ({"calibration_slope": 1.6}, False),
    ({"calibration_slope": 0.59}, True), ({"calibration_slope": 1.61}, True),
    ({"calibration_intercept": abs(OLD["calibration_intercept"]) + 0.05}, False),
    ({"calibration_intercept": -0.2}, True), ({"calibration_intercept": 0.2}, True),
    ({"brier": OLD["brier"] + 0.002}, False), ({"brier": OLD["brier"] + 0.0021}, True),
])
def test_calibration_no_worse_than_the_champions_within_the_tolerances(run, new, worse):
    decision, _ = run(fresh=new)
    assert decision.alias == (CHALLENGER if worse else CHAMPION)
    if worse:
        assert decision.reason.startswith("worse calibration on 70 patients") and decision.compared_patients == 70
        assert decision.champion_version == "3" and decision.champion_metrics == OLD


def test_the_reason_names_the_champions_inputs_not_recorded_for_the_fresh_patients(run):
    frame = pd.DataFrame({c.OUTCOME: np.r_[np.ones(10), np.zeros(20), np.ones(20), np.zeros(50)].astype(int),
                          "age_years": 60.0, "cea_ng_ml": np.r_[np.ones(30), np.full(70, np.nan)]})
    decision, _ = run(frame=frame, features=["age_years", "cea_ng_ml", "ras_status"])
    assert decision.reason.endswith("; the champion's inputs cea_ng_ml, ras_status are not recorded for them")
    assert run(features=["age_years"])[0].reason.endswith("Brier 0.1500 vs 0.1600")
    assert run(features=None)[0].reason.endswith("Brier 0.1500 vs 0.1600")  # a champion that lists no inputs


def test_the_gate_says_why_the_slope_is_undefined(run):
    decision, _ = run(new={"calibration_slope": np.nan}, slope_note="undefined: every patient has the same risk")
    assert decision.alias == CANDIDATE and decision.reason == (
        "not eligible as champion: calibration slope undefined: every patient has the same risk; a champion needs "
        "one inside 0.6-1.6")
