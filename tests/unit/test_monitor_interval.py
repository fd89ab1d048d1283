"""The monitor works per interval (monitoring/monitor.py): requests only enqueue, the outcome link is
written for a whole interval at once, and a clean stop writes what is pending."""

from __future__ import annotations

import sqlite3
import time

import numpy as np

from feature_store import contract as c
from monitoring.monitor import Monitor
from monitoring.settings import MonitorSettings
from monitoring.windows import batch_prediction_ids, new_prediction_id


def _stored(path) -> tuple[set[str], set[str]]:
    db = sqlite3.connect(path)
    try:
        singles = {r[0] for r in db.execute("SELECT prediction_id FROM predictions")}
        batches = {r[0] for r in db.execute("SELECT batch_id FROM prediction_batches")}
    finally:
        db.close()
    return singles, batches


def test_nothing_is_written_per_request_and_a_clean_stop_writes_everything(tmp_path, small_risk):
    store = tmp_path / "predictions.db"
    monitor = Monitor(small_risk, MonitorSettings(store=store, flush_seconds=60, refresh_seconds=60)).start()
    record = c.example_record(small_risk.features)
    ids = []
    for i in range(40):
        ids.append(new_prediction_id())
        monitor.observe({k: [v] for k, v in {**record, "age_years": 40 + i}.items()}, 1, [0.1 + i / 100], ids[-1:])
    batch = batch_prediction_ids(np.array([0, 2]), 3)  # patient 1 of 3 invalid: not scored
    monitor.observe({k: np.array([v, v], dtype=object) for k, v in record.items()}, 2, np.array([0.2, 0.4]), batch)
    time.sleep(0.5)  # one request at a time, the old monitor had written these by now
    assert _stored(store) == (set(), set())
    assert monitor.close()
    singles, batches = _stored(store)
    assert singles == set(ids) and batches == {batch.batch_id}
    assert monitor.window_totals()[monitor._patients] == 42
    assert not monitor._thread.is_alive()


def test_flush_writes_the_pending_interval_at_once(tmp_path, small_risk):
    """An outcome (or GET /v1/monitoring) flushes: what was answered before it is in the link."""
    store = tmp_path / "predictions.db"
    monitor = Monitor(small_risk, MonitorSettings(store=store, flush_seconds=60, refresh_seconds=60)).start()
    record = c.example_record(small_risk.features)
    pid = new_prediction_id()
    monitor.observe({k: [v] for k, v in record.items()}, 1, [0.3], [pid])
    out = monitor.record_outcomes([(pid, True), ("unknown-id", False)])
    assert out["recorded"] == 1 and out["unknown_prediction_ids"] == ["unknown-id"]
    assert monitor.close()
