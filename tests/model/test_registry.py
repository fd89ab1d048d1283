"""Champion/challenger gate, human promotion, and the failure path (nothing half-registered),
against the SQLite store and against a real `mlflow server` on 127.0.0.1 (how teams deploy)."""

import uuid

import numpy as np
import pytest
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from feature_store import contract as c
from feature_store.simulate import conform, simulate_cohort
from tests.conftest import fast_settings, local_tracking
from tests.servers import mlflow_server
from training import plots, registry
from training.data import patient_keys
from training.pipeline import run_training
from training.settings import TrackingSettings


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture(params=["sqlite", "server"])
def fresh_tracking(request, tmp_path):
    """An empty registry: a SQLite store, or a fresh model name on the shared tracking server."""
    if request.param == "sqlite":
        return local_tracking(tmp_path)
    url = request.getfixturevalue("tracking_server")
    suffix = uuid.uuid4().hex[:8]
    return TrackingSettings(tracking_uri=url, experiment=f"gate-{suffix}", registered_model=f"pve-{suffix}")


def cheap_settings(**kw):
    """The gate's behaviour, not model quality, is under test here: one trial, few rounds."""
    return fast_settings(**{"trials": 1, "n_bootstrap": 30, "max_rounds": 80, "optimism_bootstrap": 5, **kw})


@pytest.fixture
def store(fresh_tracking, cohort_file):
    """A fresh registry holding one champion (v1)."""
    tracking = fresh_tracking
    first = run_training(cohort_file, settings=cheap_settings(), tracking=tracking)
    assert first.version == "1" and first.alias == "champion"
    return tracking, MlflowClient(tracking.tracking_uri), first


def _aliases(client, name):
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def test_equal_model_becomes_challenger_with_reason(store, cohort_file):
    """Same file, same seed: the same held-out patients, seen by neither version in training."""
    tracking, client, first = store
    second = run_training(cohort_file, settings=cheap_settings(), tracking=tracking)
    assert second.alias == "challenger" and "AUROC gain below margin on 200 patients" in second.gate_reason
    assert _aliases(client, tracking.registered_model) == {"champion": "1", "challenger": "2"}
    assert client.get_model_version(tracking.registered_model, "2").tags["gate_reason"] == second.gate_reason


def test_no_patients_neither_saw_means_no_automatic_promotion(store, tmp_path):
    """A small cohort is evaluated by cross-validation on its own training patients: nothing to
    compare the champion on, so nothing is promoted automatically, whatever the metrics."""
    tracking, client, first = store
    small = tmp_path / "simulated-small.parquet"
    simulate_cohort(300, seed=21).to_parquet(small)
    result = run_training(small, settings=cheap_settings(), tracking=tracking)
    assert result.alias in ("challenger", "candidate")
    if result.alias == "challenger":
        assert "only 0 evaluation patients" in result.gate_reason and "pverisk promote" in result.gate_reason
    assert _aliases(client, tracking.registered_model)["champion"] == "1"


def test_genuinely_better_model_becomes_champion_with_default_margins(fresh_tracking, tmp_path):
    """v1 sees two weak inputs; v2 the whole record on other patients. Compared on patients neither
    was trained on, with the default margin and calibration tolerances."""
    tracking = fresh_tracking
    client = MlflowClient(tracking.tracking_uri)
    data = tmp_path / "simulated-a.parquet"
    simulate_cohort(2000, seed=31).to_parquet(data)
    weak = run_training(data, settings=cheap_settings(), tracking=tracking,
                        features=["age_years", "chemo_response"])
    assert weak.alias == "champion", weak.gate_reason
    other = tmp_path / "simulated-b.parquet"
    simulate_cohort(2000, seed=32).to_parquet(other)
    strong = run_training(other, settings=cheap_settings(), tracking=tracking)
    assert strong.alias == "champion", strong.gate_reason
    assert strong.gate_reason.startswith("beats champion on 500 patients")
    assert _aliases(client, tracking.registered_model)["champion"] == strong.version


def test_random_outcome_is_never_champion(fresh_tracking, tmp_path):
    """Outcomes shuffled away from the patients: a model no better than chance is registered as
    a candidate with the reason, even when there is no champion yet."""
    tracking = fresh_tracking
    frame = simulate_cohort(800, seed=41)
    frame[c.OUTCOME] = np.random.default_rng(0).permutation(frame[c.OUTCOME].to_numpy())
    frame = frame.drop(columns=[c.TRUE_PROBABILITY])
    data = tmp_path / "random-outcome.parquet"
    frame.to_parquet(data)
    result = run_training(data, settings=cheap_settings(), tracking=tracking, data_kind="simulated")
    assert result.alias == "candidate" and result.gate_reason.startswith("not eligible as champion")
    client = MlflowClient(tracking.tracking_uri)
    assert _aliases(client, tracking.registered_model) == {"candidate": "1"}
    assert client.get_model_version(tracking.registered_model, "1").tags["gate_decision"] == "candidate"


def test_worse_calibration_blocks_promotion(store):
    """Better ranking (the simulator's own probabilities) but over-confident (logit x 3)."""
    tracking, client, first = store
    frame = conform(simulate_cohort(600, seed=3))
    p = frame[c.TRUE_PROBABILITY].to_numpy()
    over_confident = 1 / (1 + np.exp(-3 * np.log(p / (1 - p))))
    eligible = dict(first.metrics, auroc_ci_low=0.6, calibration_slope=1.0)
    decision = registry.gate(client, tracking.registered_model, eligible, frame, over_confident,
                             patient_keys(frame), set(), fast_settings())
    assert decision.alias == "challenger" and decision.reason.startswith("worse calibration on 600 patients"), \
        decision.reason


def test_human_promotion_is_recorded(store, cohort_file):
    tracking, client, first = store
    run_training(cohort_file, settings=cheap_settings(), tracking=tracking)  # v2 challenger
    record = registry.promote(client, tracking.registered_model, "2", "champion", "tumour board review", by="dr-a")
    assert _aliases(client, tracking.registered_model)["champion"] == "2"
    # the waiting alias it held is gone (the trial saw `challenger,champion` on one version)
    assert [a for a, v in _aliases(client, tracking.registered_model).items() if v == "2"] == ["champion"]
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
        run_training(cohort_file, settings=cheap_settings(), tracking=tracking)
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
        run_training(cohort_file, settings=cheap_settings(promotion_margin_auroc=-1.0), tracking=tracking)
    monkeypatch.undo()
    versions = [str(v.version) for v in client.search_model_versions(f"name='{tracking.registered_model}'")]
    assert versions == ["1"]
    assert _aliases(client, tracking.registered_model) == {"champion": "1"}
    last = client.search_runs([client.get_experiment_by_name(tracking.experiment).experiment_id],
                              filter_string="attributes.run_name LIKE 'train-%'",
                              order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert last.info.status in (RunStatus.to_string(RunStatus.FAILED), RunStatus.to_string(RunStatus.KILLED))
