"""Model behaviour: directional expectations, all else equal."""

import mlflow
import numpy as np
import pytest

from feature_store.simulate import simulate_cohort
from training.registry import load_registered, predict_registered


@pytest.fixture(scope="module")
def champion(trained):
    result, tracking = trained
    mlflow.set_tracking_uri(tracking.tracking_uri)
    return load_registered(f"models:/{result.registered_model}@champion")


@pytest.fixture(scope="module")
def patients():
    return simulate_cohort(200, seed=123)


def _risk_as(patients, champion, **changes):
    model, meta = champion
    return predict_registered(model, meta, patients.assign(**changes))


def test_more_metastases_never_lowers_risk(champion, patients):
    risks = np.column_stack([_risk_as(patients, champion, n_liver_metastases=float(n)) for n in range(1, 31)])
    assert (np.diff(risks, axis=1) >= -1e-12).all()


def test_larger_metastasis_never_lowers_risk(champion, patients):
    risks = np.column_stack([_risk_as(patients, champion, largest_metastasis_cm=d) for d in np.arange(0.5, 15, 0.5)])
    assert (np.diff(risks, axis=1) >= -1e-12).all()


def test_progressive_response_never_lowers_risk(champion, patients):
    order = ["complete", "partial", "stable", "progressive"]
    risks = np.column_stack([_risk_as(patients, champion, chemo_response=r) for r in order])
    assert (np.diff(risks, axis=1) >= -1e-12).all()


def test_patient_id_does_not_change_risk(champion, patients):
    a = _risk_as(patients, champion)
    b = _risk_as(patients, champion, patient_id=[f"X{i}" for i in range(len(patients))])
    assert np.array_equal(a, b)


def test_missing_optional_input_still_scores(champion, patients):
    p = _risk_as(patients, champion, cea_ng_ml=np.nan, ras_status=None)
    assert np.isfinite(p).all()
