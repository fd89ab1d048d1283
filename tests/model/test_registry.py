"""Champion/challenger gate, human promotion, and the failure path (nothing half-registered)."""

import pytest
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from feature_store.simulate import simulate_cohort
from tests.conftest import fast_settings, local_tracking
from training import plots, registry
from training.pipeline import run_training


@pytest.fixture
def store(tmp_path, cohort_file):
    """A fresh store holding one champion (v1)."""
    tracking = local_tracking(tmp_path)
    first = run_training(cohort_file, settings=fast_settings(), tracking=tracking)
    assert first.version == "1" and first.alias == "champion"
    return tracking, MlflowClient(tracking.tracking_uri), first


def _aliases(client, name):
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def test_equal_model_becomes_challenger_with_reason(store, cohort_file):
    tracking, client, first = store
    second = run_training(cohort_file, settings=fast_settings(), tracking=tracking)
    assert second.alias == "challenger" and "AUROC gain below margin" in second.gate_reason
    assert _aliases(client, tracking.registered_model) == {"champion": "1", "challenger": "2"}
    assert client.get_model_version(tracking.registered_model, "2").tags["gate_reason"] == second.gate_reason


def test_better_model_becomes_champion(store, tmp_path):
    tracking, client, first = store
    bigger = tmp_path / "simulated-bigger.parquet"
    simulate_cohort(3000, seed=12).to_parquet(bigger)
    # A negative margin admits any model not worse by more than it: the gate's champion path.
    result = run_training(bigger, settings=fast_settings(promotion_margin_auroc=-1.0, calibration_tolerance=10,
                                                         brier_tolerance=1), tracking=tracking)
    assert result.alias == "champion" and result.gate_reason.startswith("beats champion")
    assert _aliases(client, tracking.registered_model)["champion"] == result.version


def test_worse_calibration_blocks_promotion(store, cohort_file):
    tracking, client, first = store
    frame = simulate_cohort(300, seed=3)
    better_auc_bad_calibration = dict(first.metrics, auroc=0.99, calibration_slope=3.0)
    decision = registry.gate(client, tracking.registered_model, better_auc_bad_calibration, frame,
                             fast_settings())
    assert decision.alias == "challenger" and decision.reason.startswith("worse calibration")


def test_human_promotion_is_recorded(store, cohort_file):
    tracking, client, first = store
    run_training(cohort_file, settings=fast_settings(), tracking=tracking)  # v2 challenger
    record = registry.promote(client, tracking.registered_model, "2", "champion", "tumour board review", by="dr-a")
    assert _aliases(client, tracking.registered_model)["champion"] == "2"
    tags = client.get_model_version(tracking.registered_model, "2").tags
    assert tags["promotion.champion.promoted_by"] == "dr-a"
    assert tags["promotion.champion.promotion_reason"] == "tumour board review"
    assert tags["promotion.champion.previous_version"] == "1" and record["previous_version"] == "1"


class Boom(RuntimeError):
    pass


def test_failure_midway_leaves_nothing_registered(store, cohort_file, monkeypatch):
    tracking, client, first = store

    def fail(*a, **k):
        raise Boom("plotting failed")

    monkeypatch.setattr(plots, "decision_curve_figure", fail)
    with pytest.raises(Boom):
        run_training(cohort_file, settings=fast_settings(), tracking=tracking)
    versions = client.search_model_versions(f"name='{tracking.registered_model}'")
    assert [str(v.version) for v in versions] == ["1"]
    assert _aliases(client, tracking.registered_model) == {"champion": "1"}
    runs = client.search_runs([client.get_experiment_by_name(tracking.experiment).experiment_id],
                              filter_string="attributes.status = 'FAILED'")
    assert runs, "the failed run is marked FAILED"


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_failure_during_registration_deletes_the_version(store, cohort_file, monkeypatch, exc):
    tracking, client, first = store
    original = MlflowClient.set_registered_model_alias

    def fail_on_new_alias(self, name, alias, version):
        if str(version) != "1":
            raise exc("interrupted while moving the alias")
        return original(self, name, alias, version)

    # Gate says champion, so the alias would move from v1 to v2: fail right there.
    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", fail_on_new_alias)
    with pytest.raises(exc):
        run_training(cohort_file, settings=fast_settings(promotion_margin_auroc=-1.0), tracking=tracking)
    monkeypatch.undo()
    versions = [str(v.version) for v in client.search_model_versions(f"name='{tracking.registered_model}'")]
    assert versions == ["1"]
    assert _aliases(client, tracking.registered_model) == {"champion": "1"}
    last = client.search_runs([client.get_experiment_by_name(tracking.experiment).experiment_id],
                              filter_string="attributes.run_name LIKE 'train-%'",
                              order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert last.info.status in (RunStatus.to_string(RunStatus.FAILED), RunStatus.to_string(RunStatus.KILLED))
