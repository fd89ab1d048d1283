"""Live monitoring: rolling windows of inputs and scores (aggregate bins only), drift against the
model's reference profile, a shadow challenger, and outcome feedback; all exported on /metrics.

The request path only enqueues (a reference to the request's columns and the champion's risks);
one background thread per worker bins, scores the challenger, writes the prediction-outcome link
and publishes. So the champion's answer never waits for monitoring.

Multi-worker: BentoML runs prometheus_client in multiprocess mode. Each worker exports its own
window counts as `livesum` gauges (summed across live workers at scrape time); every worker reads
the summed counts back from the multiprocess files, computes PSI, quantiles and drift flags from
the global window and sets them as `livemostrecent` gauges (the same value whichever worker wrote last).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import bentoml
import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from feature_store.encoding import encode_array
from monitoring import profile as pr
from model_runtime.calibration import apply_calibration
from feature_store.settings import DataSettings
from monitoring.outcomes import OutcomeStore, performance

logger = logging.getLogger("pverisk.monitor")

BANDS = ("low", "intermediate", "high")
QUANTILES = pr.SCORE_QUANTILES


def _default_store() -> Path:
    return DataSettings().data_dir / "monitoring" / "predictions.db"


class MonitorSettings(BaseSettings):
    """PVERISK_MONITOR_*: drift windows, thresholds that alerting uses, shadow mode, outcome store."""

    model_config = SettingsConfigDict(env_prefix="PVERISK_MONITOR_")
    enabled: bool = True
    # Rolling window of inputs and scores: this many seconds, kept in `window_slots` time slots
    # (the oldest slot drops out whole).
    window_seconds: float = Field(86_400, gt=0)
    window_slots: int = Field(24, ge=1, le=1440)
    # How often derived values (PSI, quantiles, drift flags) are recomputed and published.
    refresh_seconds: float = Field(2.0, gt=0)
    # Drift flag: PSI above this, or the missing share moved by more than this, once the window
    # holds at least `drift_min_patients` (PSI of small samples is biased upwards: ~bins/n).
    psi_threshold: float = Field(0.2, gt=0)
    missing_share_threshold: float = Field(0.15, gt=0, le=1)
    drift_min_patients: int = Field(100, ge=1)
    # Shadow mode: also score every request with the imported challenger, after answering.
    shadow: bool = False
    # Pinned challenger tag; default: the newest imported model labelled `challenger`.
    challenger_tag: str | None = None
    # The prediction-outcome link (SQLite); a git-ignored data folder by default.
    store: Path = Field(default_factory=_default_store)
    store_retention_days: float = Field(730, gt=0)
    # Live performance over the most recent predictions with an outcome.
    performance_window: int = Field(500, ge=10)
    # Requests waiting for the monitor beyond this are not monitored (counted): the service keeps answering.
    max_pending: int = Field(10_000, ge=10)


MODEL = ["model_name", "model_version"]
MODEL_INFO = bentoml.metrics.Gauge(
    name="pverisk_model_info", documentation="The served model (role=serving) and the shadow challenger "
    "(role=shadow): 1 per live version, with its alias and BentoML tag",
    labelnames=[*MODEL, "alias", "role", "bento_tag", "data_kind"], multiprocess_mode="livemax")
WINDOW_PATIENTS = bentoml.metrics.Gauge(
    name="pverisk_window_patients", documentation="Patients scored in the rolling window",
    labelnames=MODEL, multiprocess_mode="livesum")
WINDOW_BIN = bentoml.metrics.Gauge(
    name="pverisk_window_feature_bin_patients", documentation="Patients per input bin (reference bins) in the "
    "rolling window", labelnames=[*MODEL, "feature", "bin"], multiprocess_mode="livesum")
WINDOW_SCORE = bentoml.metrics.Gauge(
    name="pverisk_window_score_bin_patients", documentation="Patients per score bin of width 0.01 (label: lower "
    "edge) in the rolling window", labelnames=[*MODEL, "bin"], multiprocess_mode="livesum")
WINDOW_BAND = bentoml.metrics.Gauge(
    name="pverisk_window_risk_band_patients", documentation="Patients per risk band in the rolling window",
    labelnames=[*MODEL, "risk_band"], multiprocess_mode="livesum")
PSI = bentoml.metrics.Gauge(
    name="pverisk_feature_psi", documentation="Population stability index of an input, rolling window vs the "
    "training reference (value bins and a missing bin)", labelnames=[*MODEL, "feature"],
    multiprocess_mode="livemostrecent")
MISSING_SHARE = bentoml.metrics.Gauge(
    name="pverisk_feature_missing_share", documentation="Share of patients without this input, rolling window",
    labelnames=[*MODEL, "feature"], multiprocess_mode="livemostrecent")
REF_MISSING_SHARE = bentoml.metrics.Gauge(
    name="pverisk_feature_reference_missing_share", documentation="Share without this input in the training "
    "reference", labelnames=[*MODEL, "feature"], multiprocess_mode="livemostrecent")
DRIFT = bentoml.metrics.Gauge(
    name="pverisk_feature_drift", documentation="1 when the input drifted beyond the configured thresholds "
    "(PSI or missing share, with enough patients in the window); 0 otherwise", labelnames=[*MODEL, "feature"],
    multiprocess_mode="livemostrecent")
DRIFT_THRESHOLD = bentoml.metrics.Gauge(
    name="pverisk_drift_threshold", documentation="Configured drift thresholds (psi, missing_share, min_patients)",
    labelnames=[*MODEL, "threshold"], multiprocess_mode="livemostrecent")
SCORE_PSI = bentoml.metrics.Gauge(
    name="pverisk_score_psi", documentation="PSI of the risk score, rolling window vs held-out training scores "
    "(reference deciles)", labelnames=MODEL, multiprocess_mode="livemostrecent")
SCORE_QUANTILE = bentoml.metrics.Gauge(
    name="pverisk_window_score_quantile", documentation="Quantiles of the risk score in the rolling window "
    "(to within 0.01)", labelnames=[*MODEL, "quantile"], multiprocess_mode="livemostrecent")
REJECTIONS = bentoml.metrics.Counter(
    name="pverisk_validation_rejections_total", documentation="Requests (or batch rows) rejected by "
    "validation, by endpoint and field", labelnames=[*MODEL, "endpoint", "field"])
SHADOW = bentoml.metrics.Counter(
    name="pverisk_shadow_predictions_total", documentation="Patients scored by the shadow challenger, by change "
    "of risk band against the champion (same, up, down)",
    labelnames=[*MODEL, "challenger_version", "band_change"])
SHADOW_FAILED = bentoml.metrics.Counter(
    name="pverisk_shadow_failed_total", documentation="Patients the challenger could not score (its own "
    "required inputs absent)", labelnames=[*MODEL, "challenger_version"])
# Absolute differences: a histogram's _sum must only grow (Prometheus reads a fall as a counter reset);
# the signed mean difference is a window gauge below.
SHADOW_DIFF = bentoml.metrics.Histogram(
    name="pverisk_shadow_abs_score_difference", documentation="|challenger - champion| risk, per patient",
    labelnames=[*MODEL, "challenger_version"], buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, float("inf")))
WINDOW_SHADOW = bentoml.metrics.Gauge(
    name="pverisk_window_shadow_patients", documentation="Patients scored by the shadow challenger in the "
    "rolling window", labelnames=MODEL, multiprocess_mode="livesum")
WINDOW_SHADOW_DIFF = bentoml.metrics.Gauge(
    name="pverisk_window_shadow_score_difference_sum", documentation="Sum of challenger minus champion risk in "
    "the rolling window (divide by pverisk_window_shadow_patients for the mean)", labelnames=MODEL,
    multiprocess_mode="livesum")
DROPPED = bentoml.metrics.Counter(
    name="pverisk_monitor_dropped_total", documentation="Patients not monitored because the monitor fell "
    "behind (the answers were served)", labelnames=MODEL)
OUTCOMES = bentoml.metrics.Counter(
    name="pverisk_outcomes_recorded_total", documentation="Observed outcomes recorded by prediction id",
    labelnames=["result"])
LIVE = bentoml.metrics.Gauge(
    name="pverisk_live_performance", documentation="Live performance over the most recent predictions with "
    "an observed outcome: auroc, calibration_in_the_large (observed minus expected rate), brier, n, events",
    labelnames=[*MODEL, "alias", "metric"], multiprocess_mode="livemostrecent")


def new_prediction_id() -> str:
    return uuid.uuid4().hex


class BatchIds(list):  # type: ignore[type-arg]
    """A batch call's prediction ids, `<batch_id>-<index>`: the outcome store keeps them as one row."""

    batch_id: str
    positions: np.ndarray  # the scored patients' indexes in the request
    size: int  # patients in the request, scored or not


def batch_prediction_ids(index: Sequence[int] | np.ndarray, size: int) -> list[str]:
    """One random id per batch call, each scored patient's index in the request after it (an
    invalid patient skipped leaves a gap, never shifts the others)."""
    base = uuid.uuid4().hex
    positions = np.asarray(index, dtype=np.int64)
    ids = BatchIds(f"{base}-{i}" for i in positions.tolist())
    ids.batch_id, ids.positions, ids.size = base, positions, int(size)
    return ids


def probabilities(risk: Any, X: np.ndarray) -> np.ndarray:
    """Calibrated risks only (no explanations): what the shadow challenger needs."""
    raw = risk.booster.inplace_predict(X, missing=np.nan, validate_features=False)
    return apply_calibration(np.asarray(raw, dtype=float), risk.metadata.get("calibration"))


def bands_of(p: np.ndarray, low_below: float, high_from: float) -> np.ndarray:
    """0 low, 1 intermediate, 2 high."""
    return (p >= low_below).astype(np.int64) + (p >= high_from).astype(np.int64)


@dataclass
class _Job:
    columns: Mapping[str, Any]  # request columns (fine and coarse inputs as sent), the scored rows only
    n: int
    probs: Any
    ids: list[str]
    at: float
    X: np.ndarray | None = None  # the champion's model matrix of these rows, when the request path has it

    def take(self) -> "_Job":
        """The columns as arrays (in the background thread)."""
        cols = {k: _array(v) for k, v in self.columns.items()}
        return _Job(cols, self.n, np.asarray(self.probs, dtype=float), self.ids, self.at, X=self.X)


def _array(values: Any) -> np.ndarray:
    # a float column stays one: encoding it again as objects cost more than the rest of a batch's monitoring
    return values.reshape(-1) if isinstance(values, np.ndarray) else np.asarray(values, dtype=object).reshape(-1)


def _merge(jobs: list[_Job]) -> dict[str, np.ndarray]:
    """Concatenate the jobs' columns (absent in a job: missing)."""
    keys = {k for j in jobs for k in j.columns}
    out = {}
    for k in keys:
        parts = [_array(j.columns[k]) if k in j.columns else np.full(j.n, None, dtype=object) for j in jobs]
        out[k] = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return out


class Window:
    """Counts in time slots; the window is the sum of the slots younger than window_seconds."""

    def __init__(self, size: int, seconds: float, slots: int) -> None:
        self.slot_seconds = seconds / slots
        self.slots = slots
        self.counts = np.zeros((slots, size))
        self.ids = np.full(slots, -1, dtype=np.int64)

    def add(self, counts: np.ndarray, now: float) -> None:
        sid = int(now // self.slot_seconds)
        pos = sid % self.slots
        if self.ids[pos] != sid:
            self.counts[pos] = 0
            self.ids[pos] = sid
        self.counts[pos] += counts

    def total(self, now: float) -> np.ndarray:
        sid = int(now // self.slot_seconds)
        live = self.ids > sid - self.slots
        return self.counts[live].sum(axis=0)


class Monitor:
    """One per worker process. `observe` is the only call on the request path."""

    def __init__(self, risk: Any, settings: MonitorSettings | None = None, challenger: Any | None = None) -> None:
        self.settings = settings or MonitorSettings()
        self.risk = risk
        self.challenger = challenger
        if challenger is not None:
            # one thread for the shadow model: on a busy machine an OpenMP team waiting for its
            # descheduled threads cost ~100 ms per small call here, and it competes with the champion
            challenger.booster.set_param({"nthread": 1})
        ident = risk.identity
        self.labels = {"model_name": ident.name, "model_version": ident.version}
        self.profile = risk.metadata.get("reference_profile")
        self.binner = pr.Binner(self.profile) if self.profile else None
        self.thresholds = pr.DriftThresholds(self.settings.psi_threshold, self.settings.missing_share_threshold,
                                             self.settings.drift_min_patients)
        size = self.binner.total if self.binner else 0
        # layout of one window row: feature bins | 100 score bins | 3 bands | patients | shadow patients |
        # shadow score difference sum
        self._n_bins = size
        self._scores = slice(size, size + pr.SCORE_FINE_BINS)
        self._band = slice(self._scores.stop, self._scores.stop + len(BANDS))
        self._patients, self._shadow_n, self._shadow_sum = self._band.stop, self._band.stop + 1, self._band.stop + 2
        self.window = Window(self._band.stop + 3, self.settings.window_seconds, self.settings.window_slots)
        self.store = OutcomeStore(self.settings.store) if self.settings.enabled else None
        if self.store is not None:
            self.store.forget_before(self.settings.store_retention_days * 86_400)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._last_publish = 0.0
        self._thread: threading.Thread | None = None
        low, high = risk.settings.band_low_below, risk.settings.band_high_from
        self._bands = (low, high)

    # ---- request path -------------------------------------------------------------------
    def observe(self, columns: Mapping[str, Any], n: int, probs: Any, ids: list[str],
                X: np.ndarray | None = None) -> None:
        """Enqueue n scored patients: their request columns (taken as arrays in the background), the
        champion's risks, their prediction ids and, when the request path has it, their model matrix
        (binned as it is). Nothing else happens here."""
        if not self.settings.enabled or n == 0:
            return
        if self._pending >= self.settings.max_pending:
            DROPPED.labels(**self.labels).inc(n)
            return
        self._pending += 1  # approximate under threads; a bound, not an accounting
        self._queue.put(_Job(columns, n, probs, ids, time.time(), X))

    def rejected(self, endpoint: str, fields: list[str]) -> None:
        for field in fields:
            REJECTIONS.labels(**self.labels, endpoint=endpoint, field=field).inc()

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> "Monitor":
        ident = self.risk.identity
        MODEL_INFO.labels(**self.labels, alias=ident.alias, role="serving", bento_tag=ident.bento_tag,
                          data_kind=ident.data_kind).set(1)
        if self.challenger is not None:
            ch = self.challenger.identity
            MODEL_INFO.labels(model_name=ch.name, model_version=ch.version, alias=ch.alias, role="shadow",
                              bento_tag=ch.bento_tag, data_kind=ch.data_kind).set(1)
        for name, value in (("psi", self.thresholds.psi), ("missing_share", self.thresholds.missing_share_change),
                            ("min_patients", self.thresholds.min_patients)):
            DRIFT_THRESHOLD.labels(**self.labels, threshold=name).set(value)
        if not self.settings.enabled:
            return self
        self.publish_performance()
        self._thread = threading.Thread(target=self._run, name="pverisk-monitor", daemon=True)
        self._thread.start()
        return self

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything observed so far is binned, stored and published."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.settings.refresh_seconds)
            except queue.Empty:
                item = None
            items = [] if item is None else [item]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            jobs = [i for i in items if isinstance(i, _Job)]
            events = [i for i in items if isinstance(i, threading.Event)]
            try:
                if jobs:
                    self._pending = max(0, self._pending - len(jobs))
                    self._process(jobs)
                now = time.time()
                if events or now - self._last_publish >= self.settings.refresh_seconds:
                    self.publish(now)
            except Exception:  # monitoring must never take the service down
                logger.exception("monitoring step failed")
            for e in events:
                e.set()

    # ---- background work ----------------------------------------------------------------
    def _process(self, jobs: list[_Job]) -> None:
        jobs = [j.take() for j in jobs]
        columns = _merge(jobs)
        probs = np.concatenate([j.probs for j in jobs])
        ids = [i for j in jobs for i in j.ids]
        at = np.concatenate([np.full(j.n, j.at) for j in jobs])
        n = len(probs)
        row = np.zeros(self.window.counts.shape[1])
        if self.binner is not None:
            if all(j.X is not None for j in jobs):  # scored from these matrices: bin them as they are
                X = np.concatenate([j.X for j in jobs]) if len(jobs) > 1 else jobs[0].X
            else:
                derived, _ = self.risk.derive(columns)
                X = encode_array(derived, self.risk.features)
            row[:self._n_bins] = self.binner.counts(X)
        row[self._scores] = pr.score_counts(probs)
        bands = bands_of(probs, *self._bands)
        row[self._band] = np.bincount(bands, minlength=len(BANDS))
        row[self._patients] = n
        models = [(self.risk.identity, probs)]
        if self.challenger is not None:
            shadow, row[self._shadow_n], row[self._shadow_sum] = self._shadow(columns, probs, bands)
            models.append((self.challenger.identity, shadow))
        with self._lock:
            self.window.add(row, time.time())
        if self.store is not None:
            self._store(jobs, models, ids, at)

    def _store(self, jobs: list[_Job], models: list[tuple[Any, np.ndarray]], ids: list[str], at: np.ndarray) -> None:
        """The outcome link: a batch call as one row per model, single predictions row by row."""
        rows, start = [], 0
        for j in jobs:
            stop = start + j.n
            for ident, p in models:
                if isinstance(j.ids, BatchIds):
                    risks = np.full(j.ids.size, np.nan)  # by request index: NaN for a patient not scored
                    risks[j.ids.positions] = p[start:stop]
                    self.store.add_batch(j.ids.batch_id, ident.name, ident.version, ident.alias,  # type: ignore[union-attr]
                                         j.at, risks)
                else:
                    rows += [(pid, ident.name, ident.version, ident.alias, float(t), float(q))
                             for pid, t, q in zip(ids[start:stop], at[start:stop], p[start:stop].tolist())
                             if q == q]  # NaN: the challenger could not score this patient
            start = stop
        if rows:
            self.store.add_predictions(rows)  # type: ignore[union-attr]

    def _shadow(self, columns: Mapping[str, Any], champion: np.ndarray, bands: np.ndarray
                ) -> tuple[np.ndarray, int, float]:
        """The challenger's risks for the same patients (NaN where it cannot score one), counted as
        band changes and differences; the outcome link stores them under the same prediction ids."""
        ch = self.challenger
        labels = {**self.labels, "challenger_version": ch.identity.version}
        n = len(champion)
        ok = np.ones(n, dtype=bool)
        for rows in ch.missing_required(columns).values():
            ok[rows] = False
        derived, conflicts = ch.derive(columns)
        for rows in conflicts.values():
            ok[rows] = False
        if not ok.all():
            SHADOW_FAILED.labels(**labels).inc(int((~ok).sum()))
        full = np.full(n, np.nan)
        if not ok.any():
            return full, 0, 0.0
        idx = np.flatnonzero(ok)
        X = encode_array({k: np.asarray(v, dtype=object)[idx] for k, v in derived.items()}, ch.features)
        p = probabilities(ch, X)
        change = bands_of(p, *self._bands) - bands[idx]
        for name, k in (("same", int((change == 0).sum())), ("up", int((change > 0).sum())),
                        ("down", int((change < 0).sum()))):
            if k:
                SHADOW.labels(**labels, band_change=name).inc(k)
        diff = p - champion[idx]
        hist = SHADOW_DIFF.labels(**labels)
        for d in np.abs(diff).tolist():
            hist.observe(d)
        full[idx] = p
        return full, len(idx), float(diff.sum())

    def _global(self, local: np.ndarray) -> np.ndarray:
        """The window summed over the live workers (their published gauges); this worker's own
        counts when not in multiprocess mode."""
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not path or not os.path.isdir(path):
            return local
        from prometheus_client.multiprocess import MultiProcessCollector

        out = np.zeros_like(local)
        index = self._index()
        for metric in MultiProcessCollector(None, path).collect():
            if not metric.name.startswith("pverisk_window_"):
                continue
            for s in metric.samples:
                lab = s.labels
                if lab.get("model_version") != self.labels["model_version"]:
                    continue
                key = (s.name, lab.get("feature", ""), lab.get("bin", lab.get("risk_band", "")))
                j = index.get(key)
                if j is not None:
                    out[j] += s.value
        return out

    def _index(self) -> dict[tuple[str, str, str], int]:
        if not hasattr(self, "_index_cache"):
            idx: dict[tuple[str, str, str], int] = {}
            if self.binner is not None:
                for name in self.binner.features:
                    for k, label in enumerate(self.binner.labels(name)):
                        idx[("pverisk_window_feature_bin_patients", name, label)] = self.binner.offsets[name] + k
            for k in range(pr.SCORE_FINE_BINS):
                idx[("pverisk_window_score_bin_patients", "", _score_label(k))] = self._scores.start + k
            for k, band in enumerate(BANDS):
                idx[("pverisk_window_risk_band_patients", "", band)] = self._band.start + k
            idx[("pverisk_window_patients", "", "")] = self._patients
            idx[("pverisk_window_shadow_patients", "", "")] = self._shadow_n
            idx[("pverisk_window_shadow_score_difference_sum", "", "")] = self._shadow_sum
            self._index_cache = idx
        return self._index_cache

    def window_totals(self, now: float | None = None) -> np.ndarray:
        with self._lock:
            return self.window.total(time.time() if now is None else now)

    def publish(self, now: float) -> None:
        """This worker's window counts, then the derived values from the global window."""
        local = self.window_totals(now)
        lab = self.labels
        if self.binner is not None:
            for name in self.binner.features:
                sl = self.binner.slice(name)
                for label, v in zip(self.binner.labels(name), local[sl]):
                    WINDOW_BIN.labels(**lab, feature=name, bin=label).set(v)
        for k, v in enumerate(local[self._scores]):
            WINDOW_SCORE.labels(**lab, bin=_score_label(k)).set(v)
        for band, v in zip(BANDS, local[self._band]):
            WINDOW_BAND.labels(**lab, risk_band=band).set(v)
        WINDOW_PATIENTS.labels(**lab).set(local[self._patients])
        if self.challenger is not None:
            WINDOW_SHADOW.labels(**lab).set(local[self._shadow_n])
            WINDOW_SHADOW_DIFF.labels(**lab).set(local[self._shadow_sum])
        self._last_publish = now
        total = self._global(local)
        summary = self.summary(total)
        for name, d in summary["features"].items():
            PSI.labels(**lab, feature=name).set(d["psi"])
            MISSING_SHARE.labels(**lab, feature=name).set(d["missing_share"])
            REF_MISSING_SHARE.labels(**lab, feature=name).set(d["reference_missing_share"])
            DRIFT.labels(**lab, feature=name).set(d["drift"])
        if summary["score_psi"] is not None:
            SCORE_PSI.labels(**lab).set(summary["score_psi"])
        for q, v in summary["score_quantiles"].items():
            SCORE_QUANTILE.labels(**lab, quantile=q).set(v)

    def summary(self, total: np.ndarray | None = None) -> dict[str, Any]:
        """The window against the reference: what /metrics shows and the drift report renders."""
        total = self._global(self.window_totals()) if total is None else total
        fine = total[self._scores]
        if self.binner is not None:
            out = pr.compare(self.profile, total[:self._n_bins], fine, self.thresholds)
        else:
            qs = pr.quantiles(fine, QUANTILES)
            out = {"features": {}, "score_psi": None, "score_fine_counts": fine.tolist(),
                   "score_quantiles": {f"{q:g}": v for q, v in zip(QUANTILES, qs)}}
        return {"model": {**self.labels, "alias": self.risk.identity.alias, "data_kind": self.risk.identity.data_kind},
                "patients": float(total[self._patients]), "window_seconds": self.settings.window_seconds,
                "risk_bands": dict(zip(BANDS, total[self._band].tolist())),
                "shadow": {"patients": float(total[self._shadow_n]), "mean_score_difference": (
                    float(total[self._shadow_sum] / total[self._shadow_n]) if total[self._shadow_n] else None)},
                "reference_available": self.binner is not None, **out}

    # ---- outcomes -----------------------------------------------------------------------
    def record_outcomes(self, outcomes: list[tuple[str, bool]]) -> dict[str, Any]:
        if self.store is None:
            raise RuntimeError("monitoring is off (PVERISK_MONITOR_ENABLED=false): no prediction link is kept")
        self.flush()  # predictions answered a moment ago are in the store before their outcomes
        unknown = self.store.record_outcomes(outcomes)
        OUTCOMES.labels(result="recorded").inc(len(outcomes) - len(unknown))
        if unknown:
            OUTCOMES.labels(result="unknown_prediction_id").inc(len(unknown))
        perf = self.publish_performance()
        return finite({"recorded": len(outcomes) - len(unknown), "unknown_prediction_ids": unknown,
                       "performance": perf, "performance_window": self.performance_window()})

    def performance_window(self) -> str:
        """What the live figures are computed over (an outcome for an older prediction is kept but
        counts only while its prediction is among these)."""
        return (f"the latest {self.settings.performance_window} predictions with an outcome, by prediction time "
                "(PVERISK_MONITOR_PERFORMANCE_WINDOW)")

    def publish_performance(self) -> dict[str, Any]:
        if self.store is None:
            return {}
        out = {}
        models = [self.risk] + ([self.challenger] if self.challenger is not None else [])
        for m in models:
            p, y = self.store.labelled(m.identity.version, self.settings.performance_window)
            perf = performance(p, y)
            out[m.identity.version] = {"alias": m.identity.alias, **perf}
            for metric, v in perf.items():
                LIVE.labels(model_name=m.identity.name, model_version=m.identity.version, alias=m.identity.alias,
                            metric=metric).set(v)
        return out


def finite(obj: Any) -> Any:
    """NaN (an empty window, one class only) as null: JSON has no NaN."""
    if isinstance(obj, float):
        return None if obj != obj else obj
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def _score_label(k: int) -> str:
    return f"{k / pr.SCORE_FINE_BINS:.2f}"


def rejected_fields(status: int, body: bytes) -> list[str]:
    """Fields named in one of our 400 bodies (pydantic `loc`, our `field`, batch rows' errors)."""
    import orjson

    if status != 400:
        return []
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ["body"]
    if not isinstance(doc, dict):
        return ["body"]
    fields: list[str] = []
    for d in doc.get("detail") or []:
        if isinstance(d, dict):
            loc = d.get("loc")
            fields.append(str(d.get("field") or (loc[-1] if isinstance(loc, list) and loc else "body")))
    for row in doc.get("invalid") or []:
        for e in (row.get("errors") or []) if isinstance(row, dict) else []:
            fields.append(str(e.get("field", "body")))
    for e in doc.get("column_errors") or []:  # the columnar route's whole-column problems
        if isinstance(e, dict):
            fields.append(str(e.get("field", "body")))
    return fields or ["body"]


class RejectionMiddleware:
    """Counts validation rejections by field from the 400 answers of the prediction routes (pydantic
    rejects a request before our code runs, so the answer is where the field is named)."""

    ROUTES = {"/v1/predict": "predict", "/v1/predict/batch": "batch", "/v1/predict/columns": "columns"}

    def __init__(self, app: Any, labels: Mapping[str, str]) -> None:
        self.app = app
        self.labels = dict(labels)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        endpoint = self.ROUTES.get(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        status = 0
        chunks: list[bytes] = []

        async def watch(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 400:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    for field in rejected_fields(status, b"".join(chunks)):
                        REJECTIONS.labels(**self.labels, endpoint=endpoint, field=field).inc()
            await send(message)

        await self.app(scope, receive, watch)
