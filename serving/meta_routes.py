"""The /v1 routes that are not BentoML APIs (GET routes, and the columnar route that reads raw bodies):
the model card, monitoring, calculator prefill and patients as columns. A FastAPI app mounted on the
service; `get_service()` is the running service instance."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, Response

from ehr.prefill import STORE as PREFILL
from model_runtime.scoring import ServedInputs
from monitoring.monitor import finite
from monitoring.windows import batch_prediction_ids
from serving import columnar, columnar_answer
from serving.metrics import PREDICTIONS, REJECTED
from serving.schemas import PrefillRequest

LOADING = {"error": "model is loading; retry when /readyz answers 200"}


def make_meta_app(get_service: Any, served: ServedInputs) -> FastAPI:
    app = FastAPI(title="pverisk model metadata", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/model")
    def get_model() -> Any:
        """Model card, metrics, feature contract version, training data kind and import time."""
        svc = get_service()
        if svc.risk is None:  # BentoML's 503 exception is not translated inside a mounted FastAPI app
            return JSONResponse(LOADING, status_code=503)
        return svc.model_info()

    @app.get("/monitoring")
    def get_monitoring() -> Any:
        """The rolling window against the training reference, as aggregates: per input its bins, counts,
        PSI, missing shares and drift flag; score quantiles and bins; risk bands (monitoring/monitor.py)."""
        svc = get_service()
        if svc.monitor is None:
            return JSONResponse(LOADING, status_code=503)
        svc.monitor.flush()
        return finite({**svc.monitor.summary(), "live_performance": svc.monitor.publish_performance(),
                       "performance_window": svc.monitor.performance_window()})

    @app.post("/prefill")
    def get_prefill(request: PrefillRequest) -> Any:
        """The inputs behind a calculator link from a CDS Hooks card, once, while it lasts (15 minutes). A POST
        so that the token stays out of access logs."""
        inputs = PREFILL.get(request.token)
        if inputs is None:
            return JSONResponse({"error": "unknown, expired or already used link (a link opens the calculator once); enter the values by hand"}, status_code=404)
        return {"inputs": inputs, "expires_in_seconds": int(PREFILL.ttl)}

    @app.post("/predict/columns", openapi_extra=columnar.openapi_operation(served.features), response_model=None)
    async def predict_columns(request: StarletteRequest) -> Response:
        """Patients as columns (JSON arrays, Arrow IPC stream or Parquet by Content-Type), answered as
        columns in the same form (or the one Accept names): serving/columnar.py."""
        svc = get_service()
        risk = svc.risk
        if risk is None:
            return JSONResponse(LOADING, status_code=503)
        body = await request.body()
        ans = await run_in_threadpool(columnar_answer.answer, body, request.headers.get("content-type"),
                                      request.headers.get("accept"), request.query_params, risk, served.accepted,
                                      served.used, svc.settings.max_columnar_rows, batch_prediction_ids)
        if ans.n_invalid:
            REJECTED.labels(risk.identity.version, "columns").inc(ans.n_invalid)
        if ans.scored is not None:
            for band, n in zip(*np.unique(ans.scored.band, return_counts=True)):
                PREDICTIONS.labels(risk.identity.name, risk.identity.version, "columns", str(band)).inc(int(n))
            if svc.monitor is not None and ans.checked is not None and ans.prediction_ids is not None:
                # bulk traffic is live traffic too: the same drift windows and outcome link as the batch route
                svc.monitor.observe(ans.checked.columns, len(ans.prediction_ids), ans.scored.answered,
                                    ans.prediction_ids, X=ans.scored.X)
        return Response(ans.body, status_code=ans.status, media_type=ans.media_type)

    return app
