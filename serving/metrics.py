"""The service's own Prometheus counters (BentoML's registry; the monitoring room has the drift,
shadow and outcome metrics)."""

from __future__ import annotations

import bentoml

PREDICTIONS = bentoml.metrics.Counter(
    name="pverisk_predictions_total",
    documentation="Patients scored, by model version, endpoint and risk band",
    labelnames=["model_name", "model_version", "endpoint", "risk_band"],
)
REJECTED = bentoml.metrics.Counter(
    name="pverisk_rejected_patients_total",
    documentation="Patients rejected by validation, by endpoint",
    labelnames=["model_version", "endpoint"],
)
FEEDBACK = bentoml.metrics.Counter(
    name="pverisk_cds_feedback_total",
    documentation="CDS Hooks card feedback, by outcome and override reason code (no patient data)",
    labelnames=["outcome", "override_reason"],
)
