"""Registry -> BentoML model store: resolve an alias to a concrete MLflow version and import it."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import datetime, timezone
from typing import Any

import bentoml

from feature_store.settings import TrackingSettings
from serving.settings import BENTO_MODEL_NAME


class ModelNotFound(RuntimeError):
    pass


HOW_TO = ("Train and register one with `uv run pverisk train`, then import it with "
          "`uv run pverisk import-model --alias champion` (or run `make demo`).")


def _label(v: str) -> str:
    # BentoML labels allow a restricted character set
    return re.sub(r"[^A-Za-z0-9_.-]", "-", str(v))[:63]


def import_model(alias: str = "champion", tracking: TrackingSettings | None = None) -> bentoml.Model:
    """Import `models:/NAME@alias` as BENTO_MODEL_NAME:v<version>. Idempotent per version."""
    # mlflow is imported here, not at module level: the service imports this module and
    # must start without paying for mlflow.
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    tracking = tracking or TrackingSettings()
    client = MlflowClient(tracking.tracking_uri)
    try:
        mv = client.get_model_version_by_alias(tracking.registered_model, alias)
    except MlflowException as exc:
        raise ModelNotFound(f"no version of {tracking.registered_model!r} has alias {alias!r} in "
                            f"{tracking.tracking_uri}. {HOW_TO}") from exc
    tag = f"{BENTO_MODEL_NAME}:v{mv.version}"
    try:
        existing = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        existing = None
    if existing is not None:
        if existing.info.labels.get("run_id") == mv.run_id:
            return existing
        raise RuntimeError(f"{tag} exists in the BentoML store but comes from another run "
                           f"({existing.info.labels.get('run_id')}); delete it with `bentoml models delete {tag}`")
    mlflow.set_tracking_uri(tracking.tracking_uri)
    try:
        card: dict[str, Any] = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/model_card/model_card.json")
    except Exception:  # an older run without a card still imports
        card = {}
    plots = _plots(mlflow, mv.run_id)
    labels = {
        "registered_model": _label(tracking.registered_model),
        "version": _label(str(mv.version)),
        "alias": _label(alias),
        "data_kind": _label(mv.tags.get("data_kind", "unknown")),
        "run_id": _label(mv.run_id or ""),
        "feature_contract_version": _label(mv.tags.get("feature_contract_version", "")),
    }
    info = mlflow.models.get_model_info(f"models:/{tracking.registered_model}/{mv.version}")
    features = list((info.metadata or {}).get("features") or [])
    # the full list is in the model's own metadata (MLmodel); labels carry a searchable summary
    labels["n_features"] = str(len(features))
    labels["features_digest"] = hashlib.sha256(",".join(features).encode()).hexdigest()[:12]
    labels["study_question"] = "differs" if (info.metadata or {}).get("question_note") else "intended"
    metadata = {
        "features": ",".join(features),
        # BentoML metadata refuses None values: the card travels as JSON text
        "model_card_json": json.dumps(card, default=str),
        "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tracking_uri": tracking.tracking_uri,
        "gate_reason": mv.tags.get("gate_reason", ""),
        # the card's plots travel with the model: the service shows them without MLflow
        "plots_json": json.dumps(plots),
    }
    return bentoml.mlflow.import_model(tag, f"models:/{tracking.registered_model}/{mv.version}",
                                       labels=labels, metadata=metadata)


PLOTS = ("calibration", "decision_curve")


def _plots(mlflow: Any, run_id: str | None) -> dict[str, str]:
    """The run's calibration and decision-curve plots as data: URIs (absent ones are skipped)."""
    import tempfile
    from pathlib import Path

    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in PLOTS:
            try:
                path = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/plots/{name}.png", dst_path=tmp)
            except Exception:  # an older run without plots still imports
                continue
            out[name] = "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()
    return out


def newest_champion_tag() -> str:
    """The newest imported model labelled champion (when no tag is pinned)."""
    try:
        models = [m for m in bentoml.models.list(BENTO_MODEL_NAME) if m.info.labels.get("alias") == "champion"]
    except bentoml.exceptions.NotFound:
        models = []
    if not models:
        raise ModelNotFound(f"no {BENTO_MODEL_NAME!r} model in the BentoML store. {HOW_TO}")
    return str(max(models, key=lambda m: m.info.creation_time).tag)
