"""The Prometheus metrics the service exports (BentoML's registry, multiprocess-safe): the names the
dashboard and alert files in monitoring/prometheus/ use."""

from __future__ import annotations

from typing import Any

import bentoml
import numpy as np


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


def observe_all(histogram: Any, values: np.ndarray) -> None:
    """`observe` for many values at once: one increment per bucket, counted by numpy. prometheus_client
    has no bulk observe, and a call per patient cost ~3 us (30 ms of a worker's time for a batch of
    10,000). Uses the child's own bucket counters (`_upper_bounds`, `_buckets`, `_sum`), the ones
    `observe` increments (value <= bound: the first such bucket); plain `observe` if they ever change."""
    bounds, buckets, total = (getattr(histogram, a, None) for a in ("_upper_bounds", "_buckets", "_sum"))
    values = np.asarray(values, dtype=float)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for v in values.tolist():
            histogram.observe(v)
        return
    histogram._raise_if_not_observable()
    total.inc(float(values.sum()))
    first = np.searchsorted(np.asarray(bounds, dtype=float), values, side="left")  # first bound >= value
    for i, k in enumerate(np.bincount(first, minlength=len(bounds))[:len(bounds)].tolist()):
        if k:
            buckets[i].inc(k)
