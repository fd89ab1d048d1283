"""Models in the local BentoML store: their identity, loading one to score, finding the challenger.

One place for what the service, the drift report and the benchmarks all do with a stored model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import bentoml

from feature_store import contract as c
from serving.settings import BENTO_MODEL_NAME

if TYPE_CHECKING:  # the service imports XGBoost lean first (serving/lean_import.py): no import here
    from model_runtime.options import Options
    from model_runtime.scoring import ModelIdentity, RiskModel


def identity_of(stored: bentoml.Model) -> "ModelIdentity":
    """Name, version, alias and data kind from the labels `pverisk import-model` wrote."""
    from model_runtime.scoring import ModelIdentity

    labels = stored.info.labels
    return ModelIdentity(
        name=labels.get("registered_model", "pve-progression-risk"), version=labels.get("version", "?"),
        alias=labels.get("alias", "?"), data_kind=labels.get("data_kind", "unknown"), bento_tag=str(stored.tag),
        run_id=labels.get("run_id", ""),
        feature_contract_version=labels.get("feature_contract_version", c.CONTRACT_VERSION))


def load_risk(tag: str, settings: "Options | None" = None) -> "RiskModel":
    """A stored model (name:version) ready to score."""
    from model_runtime.scoring import RiskModel
    from serving.import_model import ModelNotFound

    try:
        stored = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise ModelNotFound(f"model {tag!r} is not in the BentoML store (pverisk import-model)") from None
    return RiskModel.from_mlflow_dir(stored.path_of("mlflow_model"), identity_of(stored), settings)


def find_challenger(pinned: str | None = None) -> str | None:
    """The challenger's BentoML tag: pinned, else the newest imported model labelled challenger."""
    if pinned:
        return pinned
    try:
        models = [m for m in bentoml.models.list(BENTO_MODEL_NAME) if m.info.labels.get("alias") == "challenger"]
    except bentoml.exceptions.NotFound:
        return None
    return str(max(models, key=lambda m: m.info.creation_time).tag) if models else None
