"""The outcome link's store: a batch call kept as one row per model, made into rows of
`predictions` only for the patients whose outcome arrives."""

from __future__ import annotations

import sqlite3

import numpy as np

from monitoring.windows import BatchIds, batch_prediction_ids
from monitoring.outcomes import OutcomeStore


def test_batch_outcomes_are_linked_per_model_and_patient(tmp_path):
    store = OutcomeStore(tmp_path / "predictions.db")
    ids = batch_prediction_ids(np.arange(4), 4)
    assert isinstance(ids, BatchIds) and ids[2] == f"{ids.batch_id}-2"
    gaps = batch_prediction_ids([0, 2, 5], 6)  # invalid patients 1, 3, 4 skipped: no shift
    assert [i.rsplit("-", 1)[1] for i in gaps] == ["0", "2", "5"] and gaps.size == 6
    store.add_batch(ids.batch_id, "m", "1", "champion", 100.0, np.array([0.1, 0.2, 0.3, 0.4]))
    # the challenger could not score patient 1 (NaN): that patient has no challenger row
    store.add_batch(ids.batch_id, "m", "2", "challenger", 100.0, np.array([0.5, np.nan, 0.7, 0.8]))
    unknown = store.record_outcomes([(ids[1], True), (ids[2], False), (f"{ids.batch_id}-9", True),
                                     ("nothing-here", True), (f"{ids.batch_id}-x", True)])
    assert unknown == [f"{ids.batch_id}-9", "nothing-here", f"{ids.batch_id}-x"]
    p1, y1 = store.labelled("1", 10)
    assert sorted(zip(p1.tolist(), y1.tolist())) == [(0.2, 1.0), (0.3, 0.0)]
    p2, y2 = store.labelled("2", 10)
    assert p2.tolist() == [0.7] and y2.tolist() == [0.0]
    # a corrected outcome updates the row made the first time, not a second one
    assert store.record_outcomes([(ids[2], True)]) == []
    p1, y1 = store.labelled("1", 10)
    assert sorted(zip(p1.tolist(), y1.tolist())) == [(0.2, 1.0), (0.3, 1.0)]
    with sqlite3.connect(tmp_path / "predictions.db") as db:
        assert db.execute("SELECT COUNT(*) FROM predictions").fetchone() == (3,)


def test_retention_forgets_old_batches(tmp_path):
    store = OutcomeStore(tmp_path / "predictions.db")
    store.add_batch("old", "m", "1", "champion", 1.0, np.array([0.1]))
    store.add_batch("new", "m", "1", "champion", 4e9, np.array([0.1]))
    store.forget_before(86_400)
    assert store.record_outcomes([("old-0", True), ("new-0", True)]) == ["old-0"]
