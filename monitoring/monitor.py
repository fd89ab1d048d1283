"""Live monitoring: rolling windows of inputs and scores (aggregate bins only), drift against the
model's reference profile, a shadow challenger, and outcome feedback; all exported on /metrics.

The request path only enqueues (a reference to the request's columns and the champion's risks);
one background thread per worker wakes every PVERISK_MONITOR_FLUSH_SECONDS and, for everything
answered since, bins, scores the challenger, writes the prediction-outcome link (one transaction)
and publishes. So the champion's answer never waits for monitoring, and the work is done on whole
groups of patients (per patient, one request at a time, it cost more than the answer itself).
A clean stop (`close`, BentoML's shutdown hook) writes what is pending.

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
from typing import Any, Mapping

import numpy as np

from feature_store.encoding import encode_array
from monitoring import profile as pr
from monitoring.metrics import (
    DRIFT,
    DRIFT_THRESHOLD,
    DROPPED,
    LIVE,
    MISSING_SHARE,
    MODEL_INFO,
    OUTCOMES,
    PSI,
    REF_MISSING_SHARE,
    REJECTIONS,
    SCORE_PSI,
    SCORE_QUANTILE,
    SHADOW,
    SHADOW_DIFF,
    SHADOW_FAILED,
    WINDOW_BAND,
    WINDOW_BIN,
    WINDOW_PATIENTS,
    WINDOW_SCORE,
    WINDOW_SHADOW,
    WINDOW_SHADOW_DIFF,
    observe_all,
)
from monitoring.outcomes import OutcomeStore, performance
from monitoring.settings import MonitorSettings
from monitoring.windows import BatchIds, Job, Window, merge_jobs, merged_probabilities

logger = logging.getLogger("pverisk.monitor")

BANDS = ("low", "intermediate", "high")
QUANTILES = pr.SCORE_QUANTILES


def probabilities(risk: Any, X: np.ndarray) -> np.ndarray:
    """Calibrated risks only (no explanations): what the shadow challenger needs."""
    return risk.probabilities(X)


def bands_of(p: np.ndarray, low_below: float, high_from: float) -> np.ndarray:
    """0 low, 1 intermediate, 2 high."""
    return (p >= low_below).astype(np.int64) + (p >= high_from).astype(np.int64)


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
        self._wake = threading.Event()  # flush now (an outcome, /v1/monitoring, a stop) rather than at the interval
        self._stopping = False
        self._pending = 0
        self._lock = threading.Lock()
        self._last_publish = 0.0
        self._thread: threading.Thread | None = None
        low, high = risk.band_low_below, risk.band_high_from
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
        self._queue.put(Job(columns, n, probs, ids, time.time(), X))

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
        if self._thread is None or not self._thread.is_alive():
            return True
        done = threading.Event()
        self._queue.put(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> bool:
        """A clean stop: write everything observed so far (windows, shadow scores, the outcome link),
        then end the background thread. False if that did not finish within `timeout`."""
        if self._thread is None:
            return True
        self._stopping = True
        done = self.flush(timeout)
        self._thread.join(timeout)
        return done and not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            # one wake-up per interval, not one per request: a request's enqueue never wakes this thread
            self._wake.wait(self.settings.flush_seconds)
            self._wake.clear()
            items = []
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            jobs = [i for i in items if isinstance(i, Job)]
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
            if self._stopping and self._queue.empty():
                if self.store is not None:
                    self.store.close()
                return

    # ---- background work ----------------------------------------------------------------
    def _process(self, jobs: list[Job]) -> None:
        """One interval's requests together: binned, shadow-scored, counted and stored at once."""
        columns = merge_jobs(jobs)
        probs = merged_probabilities(jobs)
        ids = [i for j in jobs for i in j.ids]
        at = np.repeat([j.at for j in jobs], [j.n for j in jobs])
        row = np.zeros(self.window.counts.shape[1])
        X = self._matrix(jobs, columns) if self.binner is not None or self.challenger is not None else None
        if self.binner is not None:
            row[:self._n_bins] = self.binner.counts(X)
        row[self._scores] = pr.score_counts(probs)
        bands = bands_of(probs, *self._bands)
        row[self._band] = np.bincount(bands, minlength=len(BANDS))
        row[self._patients] = len(probs)
        models = [(self.risk.identity, probs)]
        if self.challenger is not None:
            shadow, row[self._shadow_n], row[self._shadow_sum] = self._shadow(columns, X, probs, bands)
            models.append((self.challenger.identity, shadow))
        with self._lock:
            self.window.add(row, time.time())
        if self.store is not None:
            self._store(jobs, models, ids, at)

    def _matrix(self, jobs: list[Job], columns: Mapping[str, Any]) -> np.ndarray:
        """The champion's model matrix of the jobs' patients: the ones the request path scored from, else
        encoded here (single-patient requests)."""
        if all(j.X is not None for j in jobs):
            return np.concatenate([j.X for j in jobs]) if len(jobs) > 1 else jobs[0].X  # type: ignore[return-value]
        derived, _ = self.risk.derive(columns)
        return encode_array(derived, self.risk.features)

    def _store(self, jobs: list[Job], models: list[tuple[Any, np.ndarray]], ids: list[str], at: np.ndarray) -> None:
        """The outcome link, one transaction: a batch call as one row per model, single predictions
        row by row."""
        rows, batches, start = [], [], 0
        for j in jobs:
            stop = start + j.n
            for ident, p in models:
                if isinstance(j.ids, BatchIds):
                    risks = np.full(j.ids.size, np.nan)  # by request index: NaN for a patient not scored
                    risks[j.ids.positions] = p[start:stop]
                    batches.append((j.ids.batch_id, ident.name, ident.version, ident.alias, j.at, risks))
                else:
                    rows += [(pid, ident.name, ident.version, ident.alias, float(t), float(q))
                             for pid, t, q in zip(ids[start:stop], at[start:stop], p[start:stop].tolist())
                             if q == q]  # NaN: the challenger could not score this patient
            start = stop
        self.store.write(rows, batches)  # type: ignore[union-attr]

    def _shadow(self, columns: Mapping[str, Any], X: np.ndarray | None, champion: np.ndarray, bands: np.ndarray
                ) -> tuple[np.ndarray, int, float]:
        """The challenger's risks for the same patients (NaN where it cannot score one), counted as
        band changes and differences; the outcome link stores them under the same prediction ids."""
        ch = self.challenger
        labels = {**self.labels, "challenger_version": ch.identity.version}
        n = len(champion)
        ok = np.ones(n, dtype=bool)
        for rows in ch.missing_required(columns).values():
            ok[rows] = False
        if X is not None and list(ch.features) == list(self.risk.features):
            # the same inputs derived and encoded the same way: the champion's matrix is the challenger's
            # (a contradictory coarse input was refused before scoring, whichever model reads it)
            Xc = X
        else:
            derived, conflicts = ch.derive(columns)
            for rows in conflicts.values():
                ok[rows] = False
            Xc = encode_array(derived, ch.features)
        if not ok.all():
            SHADOW_FAILED.labels(**labels).inc(int((~ok).sum()))
        full = np.full(n, np.nan)
        if not ok.any():
            return full, 0, 0.0
        idx = np.flatnonzero(ok)
        X = Xc if len(idx) == n else Xc[idx]
        p = probabilities(ch, X)
        change = bands_of(p, *self._bands) - bands[idx]
        for name, k in (("same", int((change == 0).sum())), ("up", int((change > 0).sum())),
                        ("down", int((change < 0).sum()))):
            if k:
                SHADOW.labels(**labels, band_change=name).inc(k)
        diff = p - champion[idx]
        observe_all(SHADOW_DIFF.labels(**labels), np.abs(diff))
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


