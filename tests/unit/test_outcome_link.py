"""The prediction-outcome link at its edges: single predictions, batch ids with dashes, the last index of a
batch, a failed write, retention of recent rows, the connection kept per thread, and live performance on
tiny windows (docs/MUTATION.md lists the mutants these tests kill)."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
import warnings

import numpy as np
import pytest

from monitoring.outcomes import OutcomeStore, auroc, performance


@pytest.fixture
def store(tmp_path):
    s = OutcomeStore(tmp_path / "nested" / "folder" / "predictions.db")  # folders made as needed
    yield s
    s.close()


def test_single_predictions_get_their_outcome_and_its_time(store):
    before = time.time()
    store.add_predictions([("a", "m", "1", "champion", before - 5, 0.2), ("b", "m", "1", "champion", before - 4, 0.6)])
    assert store.record_outcomes([("a", True), ("b", 0)]) == []
    p, y = store.labelled("1", 10)
    assert p.tolist() == [0.6, 0.2] and y.tolist() == [0.0, 1.0]  # newest first
    with sqlite3.connect(store.path) as db:
        times = [t for (t,) in db.execute("SELECT outcome_at FROM predictions")]
    assert len(times) == 2 and all(before <= t <= time.time() for t in times)


def test_a_batch_id_with_dashes_and_its_last_patient_link(store):
    store.add_batch("day-1", "m", "1", "champion", time.time(), np.array([0.25, 0.5], dtype=np.float32))
    assert store.record_outcomes([("day-1-1", True), ("day-1-2", True)]) == ["day-1-2"]
    p, y = store.labelled("1", 10)
    assert p.tolist() == [0.5] and y.tolist() == [1.0]  # float32 risks are stored as float64, not reinterpreted
    with sqlite3.connect(store.path) as db:
        (at,) = db.execute("SELECT outcome_at FROM predictions").fetchone()
    assert at is not None


def test_a_failed_write_keeps_nothing_and_leaves_the_store_usable(store):
    with pytest.raises(sqlite3.ProgrammingError):
        store.write([("a", "m", "1", "champion", 1.0, 0.2), ("bad", "m")])
    store.add_predictions([("c", "m", "1", "champion", time.time(), 0.3)])
    assert store.record_outcomes([("a", True), ("c", True)]) == ["a"]


def test_retention_keeps_what_is_recent(store):
    now = time.time()
    store.add_predictions([("recent", "m", "1", "champion", now - 10, 0.4)])
    store.add_batch("recent", "m", "1", "champion", now - 10, np.array([0.4]))
    store.forget_before(86_400)
    assert store.record_outcomes([("recent", True), ("recent-0", True)]) == []


def test_each_thread_keeps_one_connection_with_the_settings_it_needs(store):
    db = store._connect()
    assert store._connect() is db and db.isolation_level is None
    assert db.execute("PRAGMA busy_timeout").fetchone() == (10_000,)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        db.execute("SELECT 1")
    assert store._connect() is not db  # a later call opens a new one
    store.close()
    store.close()  # closing twice is harmless


def test_live_performance_on_an_empty_and_a_one_patient_window():
    empty = performance(np.array([]), np.array([]))
    assert list(empty) == ["n", "events", "auroc", "calibration_in_the_large", "brier"]
    assert empty["n"] == 0 and empty["events"] == 0
    assert all(math.isnan(empty[k]) for k in ("auroc", "calibration_in_the_large", "brier"))
    one = performance(np.array([0.3]), np.array([1]))
    assert list(one) == list(empty) and (one["n"], one["events"]) == (1, 1)
    assert math.isnan(one["auroc"]) and one["calibration_in_the_large"] == pytest.approx(0.7)
    assert one["brier"] == pytest.approx(0.49)


def test_auroc_with_one_event_or_one_non_event_and_without_warnings():
    assert auroc(np.array([0.1, 0.9, 0.2]), np.array([0, 1, 0])) == 1.0
    assert auroc(np.array([0.1, 0.9, 0.8]), np.array([0, 1, 1])) == 1.0
    p, y = np.array([0.2, 0.4, 0.4, 0.9]), np.array([0, 1, 0, 1])
    assert performance(p, y)["auroc"] == auroc(p, y) == 0.875
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a window with one class says NaN without computing 0/0
        assert math.isnan(auroc(np.array([0.1, 0.2]), np.array([0, 0])))
        assert math.isnan(auroc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_a_thread_that_never_wrote_can_close(store):
    errors = []

    def close():
        try:
            store.close()
        except Exception as e:  # noqa: BLE001 - the test reports whatever it was
            errors.append(e)
    worker = threading.Thread(target=close)
    worker.start()
    worker.join()
    assert errors == []
