"""The BentoML service: POST /v1/predict, POST /v1/predict/batch, GET /v1/model.

Start with `uv run pverisk serve` (or `bentoml serve serving.service:PVERisk`). The model
is a pinned BentoML model tag (PVERISK_SERVE_MODEL_TAG, else the newest imported
champion); without one the service refuses to start and says how to get one.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
from datetime import datetime, timezone
from typing import Any

for _var in ("BENTOML_DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
    os.environ.setdefault(_var, "true")

from serving.lean_import import xgboost_without_sklearn  # noqa: E402

xgboost_without_sklearn()  # before anything imports xgboost: ~90 MB less in each serving process

import bentoml  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
from bentoml.exceptions import ServiceUnavailable  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402

from ehr.cds import make_app  # noqa: E402
from ehr.cds_models import discovery  # noqa: E402
from ehr.fhir_in import predict_bundle  # noqa: E402
from ehr.fhir_out import risk_assessment  # noqa: E402
from ehr.settings import EhrSettings  # noqa: E402
from feature_store import contract as c  # noqa: E402
from feature_store.coverage import coverage  # noqa: E402
from feature_store.record import input_roles, patient_model  # noqa: E402
from feature_store.scores import SCORE_NOTES  # noqa: E402
from feature_store.units import warm as warm_units  # noqa: E402
from model_runtime.scoring import CoarseConflict, MissingRequired, RiskModel, served_inputs  # noqa: E402
from monitoring import monitor as mon  # noqa: E402
from monitoring.rejections import RejectionMiddleware  # noqa: E402
from monitoring.settings import MonitorSettings  # noqa: E402
from monitoring.windows import batch_prediction_ids, new_prediction_id  # noqa: E402
from serving import columnar  # noqa: E402
from serving.import_model import newest_champion_tag  # noqa: E402
from serving.meta_routes import make_meta_app  # noqa: E402
from serving.metrics import FEEDBACK, PREDICTIONS, REJECTED  # noqa: E402
from serving.model_check import check_stored_model  # noqa: E402
from serving.online import PatientLookupMiddleware  # noqa: E402
from serving.openapi import present  # noqa: E402
from serving.schemas import (  # noqa: E402
    MAX_OUTCOMES,
    Outcome,
    OutcomesRequest,
    PredictionResponse,
    batch_request_model,
    fhir_bundle_model,
    record_columns,
)
from serving.settings import ServingSettings  # noqa: E402
from serving.stored import find_challenger, identity_of, load_risk  # noqa: E402
from serving.web import GuardMiddleware, json_errors, quiet_client_error_logs  # noqa: E402

logger = logging.getLogger("pverisk.service")


def _model_tag() -> str:
    """Resolve the pinned tag (or the newest imported champion) in the local store only:
    BentoML would otherwise try a remote model registry, and we are offline by rule."""
    tag = ServingSettings().model_tag or newest_champion_tag()
    check_stored_model(tag)  # absent or damaged: refuse to start, saying which file and what to do
    return tag


MODEL_TAG = _model_tag()  # a reference, not a load: `bentoml build` needs it on the class
# The served model's own inputs (one small metadata file, not the model): the request model,
# its validation, OpenAPI schema and examples, the FHIR mapping and CDS prefetch follow them.
SERVED = served_inputs(bentoml.models.get(MODEL_TAG).path_of("mlflow_model"))
PatientRecord = patient_model(SERVED.features, SERVED.required)

BatchRequest = batch_request_model(SERVED.features)
FhirBundle = fhir_bundle_model(SERVED.features)
meta_app = make_meta_app(bentoml.get_current_service, SERVED)
cds_app = make_app(bentoml.get_current_service)
json_errors(meta_app)
json_errors(cds_app)


@bentoml.service(
    name="pve_progression_risk",
    description="Risk of liver progression after portal vein embolization. RESEARCH USE ONLY.",
    traffic={"timeout": 30},
    http={"cors": {"enabled": True, "access_control_allow_origins": ["*"],
                   "access_control_allow_methods": ["GET", "POST", "OPTIONS"],
                   "access_control_allow_headers": ["*"]}},
)
@bentoml.asgi_app(meta_app, path="/v1")
@bentoml.asgi_app(cds_app, path="/cds-services")
class PVERisk:
    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.settings = ServingSettings()
        self.ehr_settings = EhrSettings()
        self.served = SERVED
        self.risk: RiskModel | None = None
        self.loaded_at: str | None = None
        self._error: BaseException | None = None
        self.monitor: mon.Monitor | None = None  # set before ready (monitoring/monitor.py)
        # Load in the background: /livez answers at once, /readyz only once the model is in.
        threading.Thread(target=self._load, name="load-model", daemon=True).start()

    def _load(self) -> None:
        try:
            stored = self.bento_model  # the class attribute resolves to the stored model
            identity = identity_of(stored)
            risk = RiskModel.from_mlflow_dir(stored.path_of("mlflow_model"), identity, self.settings)
            self._metadata = stored.info.metadata
            self._card = json.loads(stored.info.metadata.get("model_card_json") or "{}")
            risk.explainer.warm()  # explanation tables from synthetic rows: one patient is then a lookup
            example = c.example_record(SERVED.features)
            for _ in range(self.settings.warmup_requests):
                risk.score_record(example)
            hold = self.settings.test_hold_loading_file
            while hold is not None and hold.exists():  # test-only hold, see ServingSettings
                time.sleep(0.05)
            self.monitor = self._start_monitor(risk)
            # Everything loaded so far (BentoML, pandas, XGBoost, the model: about a million objects)
            # lives as long as the worker. Frozen out of the collector, a batch's thousands of new
            # dicts no longer make each full collection walk them all.
            gc.collect()
            gc.freeze()
            self.risk = risk
            self.loaded_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            # Ready; then the UCUM registry and common unit factors (~0.8 s of CPU), which only FHIR
            # charts need: a first FHIR request before this finishes builds what it needs itself.
            warm_units()
        except BaseException as exc:  # surfaced by /livez and every endpoint
            logger.exception("loading the model failed")
            self._error = exc

    def __is_ready__(self) -> bool:
        return self.risk is not None

    def __is_alive__(self) -> bool:
        return self._error is None

    def _model(self) -> RiskModel:
        if self.risk is None:
            raise ServiceUnavailable("model is loading; retry when /readyz answers 200")
        return self.risk

    def _start_monitor(self, risk: RiskModel) -> "mon.Monitor":
        """Drift windows, the shadow challenger (if on and imported) and the outcome link."""
        settings = MonitorSettings()
        challenger = None
        tag = find_challenger(settings.challenger_tag) if settings.shadow and settings.enabled else None
        if settings.shadow and settings.enabled and tag is None:
            logger.warning("shadow mode is on but no challenger is imported (pverisk import-model --alias challenger)")
        if tag is not None and tag != str(self.bento_model.tag):
            challenger = load_risk(tag, self.settings)
        if not risk.metadata.get("reference_profile"):
            logger.warning("the served model carries no reference profile (trained before monitoring): "
                           "no drift metrics")
        return mon.Monitor(risk, settings, challenger).start()

    @bentoml.on_shutdown
    def close_monitor(self) -> None:
        """A clean stop (SIGTERM, Ctrl-C) first writes the monitoring still pending: every prediction
        answered is then in the outcome link (monitoring/monitor.py groups that work per interval)."""
        if self.monitor is not None and not self.monitor.close():
            logger.warning("monitoring did not finish writing within its shutdown timeout")

    def record_feedback(self, outcome: str, reason: str | None) -> None:
        FEEDBACK.labels(outcome, reason or "none").inc()

    @bentoml.api(route="/v1/predict", input_spec=PatientRecord)
    async def predict(self, ctx: bentoml.Context, **patient: Any) -> PredictionResponse:
        """Risk for one patient at the PVE decision, with the clinical scores, the top factors and
        the inputs that were missing. `?format=fhir` adds a FHIR R4 RiskAssessment. Research use only."""
        # Answered on the event loop (about a millisecond of work): a sync API is handed to a worker
        # thread and back, which cost more than the answer once the loop and the thread contend for the GIL.
        risk = self._model()
        try:
            out = risk.score_record(patient)
        except MissingRequired as exc:
            REJECTED.labels(risk.identity.version, "predict").inc()
            ctx.response.status_code = 400
            # the request model's own error shape (loc, msg, type), as for a missing fine input
            return JSONResponse({"error": "missing required input", "detail": [  # type: ignore[return-value]
                {"loc": [name], "msg": p, "type": "missing"} for name, p in zip(exc.missing, exc.problems())]},
                status_code=400)
        except CoarseConflict as exc:
            REJECTED.labels(risk.identity.version, "predict").inc()
            ctx.response.status_code = 400
            return JSONResponse({"error": "contradictory inputs", "detail": [  # type: ignore[return-value]
                {"field": name, "problem": p} for name, p in zip(exc.conflicts, exc.problems())]}, status_code=400)
        out["prediction_id"] = pid = new_prediction_id()
        if ctx.request.query_params.get("format") == "fhir":
            out["fhir_risk_assessment"] = risk_assessment(out)
        self.monitor.observe({k: [v] for k, v in patient.items()}, 1, [out["probability"]], [pid])  # type: ignore[union-attr]
        PREDICTIONS.labels(risk.identity.name, risk.identity.version, "predict", out["risk_band"]).inc()
        # Serialised once here; the return annotation documents the shape in the OpenAPI spec.
        return Response(orjson.dumps(out), media_type="application/json")  # type: ignore[return-value]

    @bentoml.api(route="/v1/predict/batch", input_spec=BatchRequest)
    def predict_batch(self, patients: list[dict[str, Any]], partial: bool = False,
                      output: str = "full") -> dict[str, Any]:
        """Up to PVERISK_SERVE_MAX_BATCH patients, validated column-wise. Invalid rows are listed with
        their index; valid rows are scored only when `partial` is true. `output="probabilities"`:
        probability and band per patient only. Large batches: POST /v1/predict/columns."""
        risk = self._model()
        if len(patients) > self.settings.max_batch:
            return JSONResponse({"error": f"{len(patients)} patients in one call; at most "
                                          f"{self.settings.max_batch} allowed"}, status_code=413)  # type: ignore[return-value]
        n = len(patients)
        # The records as columns, checked by the columnar endpoint's code (same validator, rules and
        # words): read by msgspec when plainly valid (serving/schemas.py), else pivoted from dicts.
        columns = record_columns(patients, SERVED.accepted)
        checked = columnar.check_frame(columns, n, risk, SERVED.accepted, SERVED.used,
                                       {k: set(map(type, v)) for k, v in columns.items()})
        problems = checked.problems
        if checked.column_problems:  # a required field absent from every patient: each patient lacks it
            for i in range(n):
                problems.setdefault(i, []).extend(checked.column_problems)
        invalid = sorted(problems)
        if invalid:
            REJECTED.labels(risk.identity.version, "batch").inc(len(invalid))
        if invalid and not partial:
            return JSONResponse({  # type: ignore[return-value]
                "error": f"{len(invalid)} of {n} patients invalid; nothing scored "
                         "(send partial=true to score the valid ones)",
                "invalid": [{"index": i, "errors": problems[i]} for i in invalid]}, status_code=400)
        valid = checked.valid
        ids = batch_prediction_ids(valid, n)
        scored = risk.score_arrays(checked.columns, len(valid), explain=output == "full") if len(valid) else None
        rows: list[dict[str, Any]] = [] if scored is None else risk.records(
            scored, checked.columns, len(valid), lead={"index": valid.tolist(), "prediction_id": ids})
        if invalid:  # partial: the invalid patients in their places, with their errors
            results: list[dict[str, Any]] = [{}] * n
            for r in rows:
                results[r["index"]] = r
            for i in invalid:
                results[i] = {"index": i, "errors": problems[i]}
        else:
            results = rows
        if scored is not None:
            self.monitor.observe(checked.columns, len(valid), scored.answered, ids, X=scored.X)  # type: ignore[union-attr]
            for band, count in zip(*np.unique(scored.band, return_counts=True)):
                PREDICTIONS.labels(risk.identity.name, risk.identity.version, "batch", str(band)).inc(int(count))
        body = {"n_scored": len(rows), "n_invalid": len(invalid), "unused_inputs": checked.unused,
                **risk.meta_block(), "results": results}
        return Response(orjson.dumps(body), media_type="application/json")  # type: ignore[return-value]

    @bentoml.api(route="/v1/predict/fhir", input_spec=FhirBundle)
    def predict_fhir(self, ctx: bentoml.Context, **bundle: Any) -> dict[str, Any]:
        """A FHIR Bundle of one patient's chart (Patient, Conditions, Observations; other resources are
        skipped) in; the risk and a FHIR R4 RiskAssessment out (same mapping as the CDS Hooks service).
        `?decision_date=YYYY-MM-DD` scores the chart as it was on that day (age, staleness, death)."""
        risk = self._model()
        status, body = predict_bundle(bundle, risk, self.ehr_settings, ctx.request.query_params.get("decision_date"))
        if status == 200:
            body["prediction_id"] = pid = new_prediction_id()
            self.monitor.observe({k: [v] for k, v in body["inputs"].items()}, 1, [body["probability"]], [pid])  # type: ignore[union-attr]
            PREDICTIONS.labels(risk.identity.name, risk.identity.version, "fhir", body["risk_band"]).inc()
        ctx.response.status_code = status  # with a Context parameter BentoML takes the status from it
        return Response(orjson.dumps(body), status_code=status,  # type: ignore[return-value]
                        media_type="application/json")

    @bentoml.api(route="/v1/outcomes", input_spec=OutcomesRequest)
    def outcomes(self, outcomes: list[Outcome]) -> dict[str, Any]:
        """Observed outcomes by prediction id (no patient identifier): live AUROC, calibration-in-the-large
        and Brier over the most recent PVERISK_MONITOR_PERFORMANCE_WINDOW labelled predictions follow."""
        self._model()
        if len(outcomes) > MAX_OUTCOMES:  # BentoML's copy of the request model loses the list's maxItems
            return JSONResponse({"error": f"too many outcomes: at most {MAX_OUTCOMES:,} per request", "detail": [{  # type: ignore[return-value]
                "loc": ["outcomes"], "field": "outcomes", "type": "too_long",
                "msg": f"{len(outcomes):,} items; allowed 1 to {MAX_OUTCOMES:,}"}]}, status_code=400)
        try:
            return self.monitor.record_outcomes(  # type: ignore[union-attr]
                [(o.prediction_id, o.outcome) if isinstance(o, Outcome) else (o["prediction_id"], o["outcome"])
                 for o in outcomes])
        except RuntimeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)  # type: ignore[return-value]

    def model_info(self) -> dict[str, Any]:
        risk = self._model()
        meta = self._metadata
        return {
            "model": risk.identity.as_dict(),
            "data_kind": risk.identity.data_kind,
            "notice": risk.notice,
            "feature_contract_version": risk.metadata.get("feature_contract_version"),
            "features": risk.features,
            "required": risk.required,
            "inputs": {name: role for name, role in input_roles(SERVED.features).items()},
            "study_design": SERVED.study_design,
            "question_note": risk.question_note,
            "metrics": risk.metadata.get("metrics", {}),
            "calibration": risk.metadata.get("calibration", {}).get("method"),
            "imported_at": meta.get("imported_at"),
            "loaded_at": self.loaded_at,
            "gate_reason": meta.get("gate_reason"),
            "band_thresholds": risk.bands.described(),
            # which inputs a standard (mCODE / US Core) chart carries, and which need a local code
            "ehr_coverage": coverage(risk.features),
            "model_card": self._card,
            "clinical_score_notes": SCORE_NOTES,
            # calibration and decision-curve plots from training, as data: URIs (see import_model)
            "plots": json.loads(self._metadata.get("plots_json") or "{}"),
        }


_STORED = bentoml.models.get(MODEL_TAG)
_SETTINGS = ServingSettings()
_IDENTITY = {k: _STORED.info.labels.get(k, "?") for k in ("registered_model", "version", "alias", "data_kind")}
_IDENTITY["name"] = _IDENTITY.pop("registered_model")


def present_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """/docs.json as integrators meet it (serving/openapi.py)."""
    return present(spec, model=_IDENTITY, features=SERVED.features, max_batch=_SETTINGS.max_batch,
                   max_body=_SETTINGS.max_body_bytes, max_fhir_body=_SETTINGS.max_fhir_body_bytes,
                   discovery_example=discovery(SERVED.features).model_dump(exclude_none=True),
                   api_key=_SETTINGS.api_key is not None)


PVERisk.add_asgi_middleware(GuardMiddleware, present_openapi=present_openapi)
# Inside the guard (auth, body size): `{"patient_id": ...}` on /v1/predict is completed from the online
# feature store, then validated and scored as an explicit request (serving/online.py; Feast loads lazily).
PVERisk.add_asgi_middleware(PatientLookupMiddleware, model=_IDENTITY["name"], version=_IDENTITY["version"],
                            features=SERVED.features)
PVERisk.add_asgi_middleware(RejectionMiddleware, labels={"model_name": _IDENTITY["name"],
                                                               "model_version": _IDENTITY["version"]})
quiet_client_error_logs()
