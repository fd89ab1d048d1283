"""Model behaviour: directional expectations, all else equal."""

import mlflow
import numpy as np
import pandas as pd
import pytest

from feature_store import contract as c
from feature_store.encoding import encode
from ehr.fhir_map import map_resources
from feature_store.simulate import simulate_cohort
from tests.fixtures.fhir import patient_resources
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


def test_unknown_is_scored_exactly_as_missing(champion, patients):
    # The contract stores "unknown" as missing, never as a level: an encoder that turned it into a
    # level (say, all indicators 0) would score these patients as if the status were known.
    checked = 0
    for f in c.features():
        for unknown in f.unknown_categories:
            as_unknown = _risk_as(patients, champion, **{f.name: unknown})
            as_missing = _risk_as(patients, champion, **{f.name: None})
            np.testing.assert_array_equal(as_unknown, as_missing, err_msg=f.name)
            checked += 1
    assert checked >= 1


def test_the_patient_id_never_changes_the_record_or_risk(champion):
    # The FHIR mapping does read ids (Patient.id, subject references): renaming the patient in
    # every resource must leave the mapped record, and so the risk, unchanged.
    model, meta = champion
    records = []
    for pid in ("hi-1", "another-patient-0042"):
        resources = [r for rs in patient_resources(pid, True).values() for r in rs]
        mapped = map_resources(resources)
        assert mapped.patient_id == pid
        records.append(mapped.record)
    assert records[0] == records[1] and len(records[0]) > 10
    risks = predict_registered(model, meta, pd.DataFrame.from_records(records))
    assert risks[0] == risks[1]


def test_missing_optional_input_still_scores(champion, patients):
    model, meta = champion
    p = _risk_as(patients, champion, cea_ng_ml=np.nan, ras_status=None)
    assert ((p > 0) & (p < 1)).all()
    # missing reaches the model as missing (NaN: XGBoost's learned default branch), not imputed ...
    X = encode(patients.assign(cea_ng_ml=np.nan, ras_status=None), meta["features"])
    assert X[[col for col in X.columns if c.column_owner()[col] in ("cea_ng_ml", "ras_status")]].isna().all().all()
    # ... and it matters: not knowing CEA and RAS changes some patients' risk
    assert not np.array_equal(p, _risk_as(patients, champion))
