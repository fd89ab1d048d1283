"""The prediction-outcome link: prediction id -> model version and risk, and later the observed
outcome. SQLite (one file, shared by the service's workers); no patient identifier, no input
value: a random prediction id, a time, the model that answered and the risk it gave."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    prediction_id TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    alias TEXT NOT NULL,
    predicted_at REAL NOT NULL,
    probability REAL NOT NULL,
    outcome INTEGER,
    outcome_at REAL,
    PRIMARY KEY (prediction_id, model_version)
);
CREATE INDEX IF NOT EXISTS predictions_outcome_at ON predictions (outcome_at);
CREATE TABLE IF NOT EXISTS prediction_batches (
    batch_id TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    alias TEXT NOT NULL,
    predicted_at REAL NOT NULL,
    probabilities BLOB NOT NULL,
    PRIMARY KEY (batch_id, model_version)
);
CREATE INDEX IF NOT EXISTS prediction_batches_at ON prediction_batches (predicted_at);
"""
INSERT_PREDICTION = ("INSERT OR IGNORE INTO predictions (prediction_id, model_name, model_version, alias, predicted_at, "
                     "probability) VALUES (?, ?, ?, ?, ?, ?)")
INSERT_BATCH = ("INSERT OR IGNORE INTO prediction_batches (batch_id, model_name, model_version, alias, predicted_at, "
                "probabilities) VALUES (?, ?, ?, ?, ?, ?)")


class OutcomeStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one connection per thread, kept open: opening and closing per write cost a checkpoint
        # (tens of ms on a busy disk) every time
        self._local = threading.local()
        db = self._connect()
        db.execute("PRAGMA journal_mode=WAL")  # workers write while others read
        db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=True)
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _open(self) -> Iterator[sqlite3.Connection]:
        yield self._connect()

    def write(self, rows: Sequence[tuple[str, str, str, str, float, float]],
              batches: Sequence[tuple[str, str, str, str, float, np.ndarray]] = ()) -> None:
        """One monitoring interval in one transaction: single predictions as rows (prediction_id,
        model_name, model_version, alias, predicted_at, probability) and batch calls as one row each
        (batch_id, model_name, model_version, alias, predicted_at, risks by request index; NaN: not
        scored by this model; prediction ids `<batch_id>-<i>`). Row by row, 10,000 inserts cost ~25 ms
        of the worker's time per call, and most batch predictions never get an outcome: a row of
        `predictions` is made when one does."""
        db = self._connect()
        db.execute("BEGIN")
        try:
            if rows:
                db.executemany(INSERT_PREDICTION, rows)
            if batches:
                db.executemany(INSERT_BATCH, [(*b[:5], np.ascontiguousarray(b[5], dtype="<f8").tobytes())
                                              for b in batches])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def add_predictions(self, rows: Iterable[tuple[str, str, str, str, float, float]]) -> None:
        self.write(list(rows))

    def add_batch(self, batch_id: str, model_name: str, model_version: str, alias: str, predicted_at: float,
                  probabilities: np.ndarray) -> None:
        self.write([], [(batch_id, model_name, model_version, alias, predicted_at, probabilities)])

    def close(self) -> None:
        """Close this thread's connection (the last one to close folds the WAL into the database)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def record_outcomes(self, outcomes: Sequence[tuple[str, bool]]) -> list[str]:
        """Set the observed outcome of each prediction id; returns the ids that are unknown."""
        now = time.time()
        unknown = []
        with self._open() as db:
            db.execute("BEGIN")
            for pid, outcome in outcomes:
                cur = db.execute("UPDATE predictions SET outcome = ?, outcome_at = ? WHERE prediction_id = ?",
                                 (int(bool(outcome)), now, pid))
                if cur.rowcount == 0 and not self._from_batch(db, pid, int(bool(outcome)), now):
                    unknown.append(pid)
            db.execute("COMMIT")
        return unknown

    @staticmethod
    def _from_batch(db: sqlite3.Connection, pid: str, outcome: int, now: float) -> bool:
        """The outcome of one patient of a batch: its row of `predictions` made from the batch's risks
        (each model that scored it). False when no batch holds this id."""
        batch_id, _, index = pid.rpartition("-")
        if not batch_id or not index.isdigit():
            return False
        i, made = int(index), False
        for name, version, alias, at, blob in db.execute(
                "SELECT model_name, model_version, alias, predicted_at, probabilities FROM prediction_batches "
                "WHERE batch_id = ?", (batch_id,)).fetchall():
            probs = np.frombuffer(blob, dtype="<f8")
            if i < len(probs) and not np.isnan(probs[i]):
                db.execute("INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (pid, name, version, alias, at, float(probs[i]), outcome, now))
                made = True
        return made

    def labelled(self, model_version: str, window: int) -> tuple[np.ndarray, np.ndarray]:
        """Risks and outcomes of the `window` most recent predictions with an outcome (by prediction time)."""
        with self._open() as db:
            rows = db.execute("SELECT probability, outcome FROM predictions WHERE model_version = ? AND outcome IS "
                              "NOT NULL ORDER BY predicted_at DESC LIMIT ?", (model_version, window)).fetchall()
        arr = np.asarray(rows, dtype=float).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]

    def forget_before(self, seconds_ago: float) -> None:
        with self._open() as db:
            db.execute("DELETE FROM predictions WHERE predicted_at < ?", (time.time() - seconds_ago,))
            db.execute("DELETE FROM prediction_batches WHERE predicted_at < ?", (time.time() - seconds_ago,))


def auroc(p: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN without both classes."""
    y = np.asarray(y, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sorted_p = np.asarray(p)[order]
    # average ranks of ties
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def performance(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Live AUROC, calibration-in-the-large (observed minus expected event rate) and Brier."""
    if len(p) == 0:
        return {"n": 0, "events": 0, "auroc": float("nan"), "calibration_in_the_large": float("nan"),
                "brier": float("nan")}
    return {"n": int(len(p)), "events": int(np.sum(y)), "auroc": auroc(p, y),
            "calibration_in_the_large": float(np.mean(y) - np.mean(p)), "brier": float(np.mean((p - y) ** 2))}
