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


def registered_versions(client: Any, name: str) -> list[str]:
    """Each registered version in words (aliases, gate decision), for messages that must say what exists."""
    try:
        versions = client.search_model_versions(f"name='{name}'")
        aliases: dict[str, list[str]] = {}
        for a, v in (client.get_registered_model(name).aliases or {}).items():
            aliases.setdefault(str(v), []).append(a)
    except Exception:  # no registered model of that name (or the store does not answer): nothing to list
        return []
    return [f"v{mv.version} ({', '.join(aliases.get(str(mv.version), [])) or 'no alias'}; gate: "
            f"{mv.tags.get('gate_decision', '?')})" for mv in sorted(versions, key=lambda m: int(m.version))]


def import_model(alias: str | None = "champion", tracking: TrackingSettings | None = None,
                 version: str | None = None) -> bentoml.Model:
    """Import `models:/NAME@alias` (or `models:/NAME/version`) as BENTO_MODEL_NAME:v<version>. Idempotent per
    version and alias. A version imported by number is labelled with its alias if it has one, else "version"."""
    # mlflow is imported here, not at module level: the service imports this module and
    # must start without paying for mlflow.
    import mlflow
    from mlflow.tracking import MlflowClient

    tracking = tracking or TrackingSettings()
    client = MlflowClient(tracking.tracking_uri)
    mv, alias = _resolve(client, tracking, alias, version)
    tag = f"{BENTO_MODEL_NAME}:v{mv.version}"
    existing = _already_imported(tag, mv.run_id, alias or "version")
    if existing is not None:
        return existing
    mlflow.set_tracking_uri(tracking.tracking_uri)
    labels, metadata = _describe(mlflow, tracking, mv, alias or "version")
    return bentoml.mlflow.import_model(tag, f"models:/{tracking.registered_model}/{mv.version}",
                                       labels=labels, metadata=metadata)


def _resolve(client: Any, tracking: TrackingSettings, alias: str | None, version: str | None) -> tuple[Any, str | None]:
    """The registered version to import and the alias it is labelled with; ModelNotFound lists what exists."""
    from mlflow.exceptions import MlflowException

    name = tracking.registered_model
    try:
        if version is not None:
            mv = client.get_model_version(name, str(version))
            held = [a for a, v in (client.get_registered_model(name).aliases or {}).items() if str(v) == str(mv.version)]
            return mv, (held[0] if held else "version")
        return client.get_model_version_by_alias(name, alias or "champion"), alias
    except MlflowException as exc:
        existing = registered_versions(client, name)
        what = f"version {version}" if version is not None else f"alias {alias!r}"
        if existing:
            raise ModelNotFound(f"no version of {name!r} has {what} in {tracking.tracking_uri}; registered: "
                                f"{', '.join(existing)}. Import one by number (`uv run pverisk import-model "
                                f"--version N`) or promote one (`uv run pverisk promote N --reason ...`).") from exc
        raise ModelNotFound(f"no version of {name!r} has {what} in {tracking.tracking_uri}. {HOW_TO}") from exc


def _already_imported(tag: str, run_id: str | None, alias: str) -> bentoml.Model | None:
    """The stored model when this version is already imported under this alias. Imported before under
    another alias (a challenger since promoted to champion): deleted here and imported again, because
    BentoML labels are fixed at import and the service finds its champion by that label."""
    try:
        existing = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        return None
    if existing.info.labels.get("run_id") != _label(run_id or ""):
        raise RuntimeError(f"{tag} exists in the BentoML store but comes from another run "
                           f"({existing.info.labels.get('run_id')}); delete it with `bentoml models delete {tag}`")
    if existing.info.labels.get("alias") == _label(alias):
        return existing
    bentoml.models.delete(tag)
    return None


def _describe(mlflow: Any, tracking: TrackingSettings, mv: Any, alias: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The labels (searchable summary) and metadata (card, plots, provenance) a version is imported with."""
    try:
        card: dict[str, Any] = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/model_card/model_card.json")
    except Exception:  # an older run without a card still imports
        card = {}
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
        "plots_json": json.dumps(_plots(mlflow, mv.run_id)),
    }
    return labels, metadata


PLOTS = ("calibration", "decision_curve", "forest")


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
    """The newest imported model labelled champion (when no tag is pinned). Without one, the message lists
    the models that are imported and how to serve one of them."""
    try:
        stored = list(bentoml.models.list(BENTO_MODEL_NAME))
    except bentoml.exceptions.NotFound:
        stored = []
    models = [m for m in stored if m.info.labels.get("alias") == "champion"]
    if not models:
        if stored:
            listed = ", ".join(f"{m.tag} ({m.info.labels.get('alias', '?')})" for m in
                               sorted(stored, key=lambda m: m.info.creation_time))
            raise ModelNotFound(f"no champion is imported into the BentoML store; imported: {listed}. Serve or score "
                                "one of them by tag (`--model-tag TAG`), or import the champion once there is one "
                                "(`uv run pverisk import-model --alias champion`).")
        raise ModelNotFound(f"no {BENTO_MODEL_NAME!r} model in the BentoML store. {HOW_TO}")
    return str(max(models, key=lambda m: m.info.creation_time).tag)
