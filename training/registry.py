"""MLflow model registry: registration, the champion/challenger gate and human promotion."""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from feature_store import contract as c
from feature_store.calibration import apply_calibration
from training.evaluate import core_metrics
from training.settings import TrainSettings

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class GateDecision:
    alias: str
    reason: str
    champion_version: str | None
    champion_metrics: dict[str, float] | None


def current_champion(client: MlflowClient, name: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def load_registered(uri: str) -> tuple[Any, dict[str, Any]]:
    """Native XGBoost model and its metadata (calibration, feature list) from a models:/ URI."""
    model = mlflow.xgboost.load_model(uri)
    info = mlflow.models.get_model_info(uri)
    return model, info.metadata or {}


def predict_registered(model: Any, metadata: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
    X = c.encode(frame, metadata["features"])[metadata["columns"]]
    return apply_calibration(model.predict_proba(X)[:, 1], metadata.get("calibration"))


def gate(
    client: MlflowClient,
    name: str,
    new_metrics: dict[str, float],
    eval_frame: pd.DataFrame,
    settings: TrainSettings,
) -> GateDecision:
    """Champion only if AUROC beats the champion's on the same data by the margin and
    calibration is not worse; otherwise challenger. The reason is kept as a version tag."""
    champ = current_champion(client, name)
    if champ is None:
        return GateDecision(CHAMPION, "first version: no champion to compare with", None, None)
    model, meta = load_registered(f"models:/{name}/{champ.version}")
    y = eval_frame[c.OUTCOME].to_numpy(int)
    old = core_metrics(y, predict_registered(model, meta, eval_frame))
    gain = new_metrics["auroc"] - old["auroc"]
    worse_slope = abs(new_metrics["calibration_slope"] - 1) > abs(old["calibration_slope"] - 1) + settings.calibration_tolerance
    worse_intercept = (abs(new_metrics["calibration_intercept"]) >
                       abs(old["calibration_intercept"]) + settings.calibration_tolerance)
    worse_brier = new_metrics["brier"] > old["brier"] + settings.brier_tolerance
    facts = (f"AUROC {new_metrics['auroc']:.4f} vs champion v{champ.version} {old['auroc']:.4f} "
             f"(gain {gain:+.4f}, margin {settings.promotion_margin_auroc}); calibration slope "
             f"{new_metrics['calibration_slope']:.3f} vs {old['calibration_slope']:.3f}; Brier "
             f"{new_metrics['brier']:.4f} vs {old['brier']:.4f}")
    if gain < settings.promotion_margin_auroc:
        return GateDecision(CHALLENGER, f"AUROC gain below margin: {facts}", champ.version, old)
    if worse_slope or worse_intercept or worse_brier:
        return GateDecision(CHALLENGER, f"worse calibration: {facts}", champ.version, old)
    return GateDecision(CHAMPION, f"beats champion: {facts}", champ.version, old)


def register(
    client: MlflowClient,
    name: str,
    model_uri: str,
    model_id: str | None,
    run_id: str,
    tags: dict[str, str],
    description: str,
    decision: GateDecision,
) -> str:
    """Register, describe, tag and alias a version as one unit: on any failure the new
    version is deleted and the aliases are put back as they were."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Risk of liver progression after PVE (research use only).")
    before = {a: v for a, v in (client.get_registered_model(name).aliases or {}).items()}
    version = None
    try:
        version = client.create_model_version(name, model_uri, run_id=run_id, description=description,
                                              tags=tags, model_id=model_id)
        client.set_model_version_tag(name, version.version, "gate_decision", decision.alias)
        client.set_model_version_tag(name, version.version, "gate_reason", decision.reason[:5000])
        client.set_registered_model_alias(name, decision.alias, version.version)
        return str(version.version)
    except BaseException:
        restore_aliases(client, name, before)
        if version is not None:
            client.delete_model_version(name, version.version)
        raise


def restore_aliases(client: MlflowClient, name: str, before: dict[str, str]) -> None:
    now = client.get_registered_model(name).aliases or {}
    for alias in set(now) | set(before):
        if alias in before and now.get(alias) != before[alias]:
            client.set_registered_model_alias(name, alias, before[alias])
        elif alias not in before:
            client.delete_registered_model_alias(name, alias)


def promote(client: MlflowClient, name: str, version: str, alias: str, reason: str, by: str | None = None) -> dict[str, str]:
    """A human decision: move `alias` to `version`, recorded with who/why/when tags."""
    mv = client.get_model_version(name, str(version))  # raises if absent
    who = by or getpass.getuser()
    previous = None
    try:
        previous = client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        pass
    client.set_registered_model_alias(name, alias, mv.version)
    record = {"alias": alias, "promoted_by": who, "promotion_reason": reason,
              "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "previous_version": str(previous) if previous else "none"}
    for k, v in record.items():
        client.set_model_version_tag(name, mv.version, f"promotion.{alias}.{k}" if k != "alias" else "promotion.alias", v)
    return record


def describe(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    """Versions with aliases and key tags (for `pverisk models`)."""
    aliases = client.get_registered_model(name).aliases or {}
    by_version: dict[str, list[str]] = {}
    for a, v in aliases.items():
        by_version.setdefault(str(v), []).append(a)
    rows = []
    for mv in client.search_model_versions(f"name='{name}'"):
        rows.append({"version": mv.version, "aliases": by_version.get(str(mv.version), []),
                     "data_kind": mv.tags.get("data_kind"), "auroc": mv.tags.get("auroc"),
                     "gate_reason": mv.tags.get("gate_reason"), "run_id": mv.run_id})
    return sorted(rows, key=lambda r: int(r["version"]))


def as_json(x: Any) -> str:
    return json.dumps(x, indent=2, default=str)
