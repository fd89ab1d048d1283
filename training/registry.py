"""MLflow model registry: registration, the champion/challenger gate and human promotion."""

from __future__ import annotations

import getpass
import json
import os
import random
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from feature_store import contract as c
from feature_store.coarse import derive_coarse
from feature_store.encoding import encode_array
from model_runtime.calibration import apply_calibration
from training.evaluate import core_metrics
from training.settings import TrainSettings

CHAMPION = "champion"
CHALLENGER = "challenger"
# A version that does not clear the absolute bar: registered for the record, never served by default.
CANDIDATE = "candidate"
TRAINING_KEYS_ARTIFACT = "gate/training_patients.json"
# A registered model of this name exists while a run gates and registers (see registration_lock).
LOCK_SUFFIX = ".registration-lock"


class RegistrationBusy(RuntimeError):
    pass


class RegistrationIncomplete(RuntimeError):
    """Registration failed and could not be undone (the tracking store stopped answering)."""


@dataclass(frozen=True)
class GateDecision:
    alias: str
    reason: str
    champion_version: str | None
    champion_metrics: dict[str, float] | None
    compared_patients: int = 0


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
    """A registered model's calibrated risks for a cohort table (its coarse inputs derived from
    fine columns where the table has those)."""
    features = metadata["features"]
    columns, _ = derive_coarse(frame, features)
    X = pd.DataFrame(encode_array(columns, features), columns=c.model_columns(features))[metadata["columns"]]
    return apply_calibration(model.predict_proba(X)[:, 1], metadata.get("calibration"))


def eligibility(metrics: dict[str, float], settings: TrainSettings, slope_note: str | None = None) -> str | None:
    """Why a version may not be champion whatever it is compared with (None: it may). `slope_note`: why the
    calibration slope is undefined, when it is (training/evaluate.py: slope_undefined_reason)."""
    lo, hi = settings.champion_slope_range
    why = []
    if not metrics["auroc_ci_low"] > settings.champion_min_auroc_ci_low:
        why.append(f"AUROC {metrics['auroc']:.3f} has a lower 95% bound of {metrics['auroc_ci_low']:.3f}, not "
                   f"above {settings.champion_min_auroc_ci_low:g}")
    slope = metrics["calibration_slope"]
    if not np.isfinite(slope):
        why.append(f"calibration slope {slope_note or 'undefined: the logistic recalibration did not converge'}; "
                   f"a champion needs one inside {lo:g}-{hi:g}")
    elif not lo <= slope <= hi:
        why.append(f"calibration slope {slope:.2f} is outside {lo:g}-{hi:g}")
    return "; ".join(why) or None


def training_keys(client: MlflowClient, run_id: str) -> set[str] | None:
    """The hashed patient keys a version was trained on (None when its run has no record)."""
    try:
        return set(mlflow.artifacts.load_dict(f"runs:/{run_id}/{TRAINING_KEYS_ARTIFACT}")["keys"])
    except Exception:  # an older run without the record, or the artifact unreadable
        return None


def gate(
    client: MlflowClient,
    name: str,
    new_metrics: dict[str, float],
    eval_frame: pd.DataFrame,
    p_eval: np.ndarray,
    eval_keys: list[str],
    train_keys: set[str],
    settings: TrainSettings,
    slope_note: str | None = None,
) -> GateDecision:
    """Champion only if the version clears the absolute bar (AUROC lower bound, calibration slope)
    and beats the champion by the margin, without worse calibration, on patients neither was
    trained on; otherwise challenger (or candidate below the bar). The reason is kept as a tag."""
    why_not = eligibility(new_metrics, settings, slope_note)
    if why_not:
        return GateDecision(CANDIDATE, f"not eligible as champion: {why_not}", None, None)
    champ = current_champion(client, name)
    if champ is None:
        return GateDecision(CHAMPION, f"first version to clear the bar (AUROC lower bound "
                                      f"{new_metrics['auroc_ci_low']:.3f}, calibration slope "
                                      f"{new_metrics['calibration_slope']:.2f}); no champion to compare with",
                            None, None)
    champ_keys = training_keys(client, champ.run_id)
    if champ_keys is None:
        return GateDecision(CHALLENGER, f"champion v{champ.version} has no record of its training patients, so "
                                        "the two cannot be compared fairly: not promoted automatically; decide "
                                        "with `pverisk promote`", champ.version, None)
    fresh = np.array([k not in champ_keys and k not in train_keys for k in eval_keys], dtype=bool)
    y_all = eval_frame[c.OUTCOME].to_numpy(int)
    n, events = int(fresh.sum()), int(y_all[fresh].sum())
    if n < settings.gate_min_patients or events < settings.gate_min_events or events == n:
        return GateDecision(CHALLENGER, f"only {n} evaluation patients ({events} events) were seen by neither "
                                        f"this version nor champion v{champ.version} in training (at least "
                                        f"{settings.gate_min_patients} with {settings.gate_min_events} events "
                                        "needed): not promoted automatically; decide with `pverisk promote`",
                            champ.version, None, n)
    return _compare_with_champion(name, champ, eval_frame[fresh], y_all[fresh], np.asarray(p_eval)[fresh], n,
                                  events, settings)


def _compare_with_champion(name: str, champ: Any, sub: pd.DataFrame, y: np.ndarray, p_new: np.ndarray, n: int,
                           events: int, settings: TrainSettings) -> GateDecision:
    """Both versions on the patients neither was trained on: champion if the gain clears the margin
    without worse calibration, else challenger; the reason states the figures either way."""
    model, meta = load_registered(f"models:/{name}/{champ.version}")
    old = core_metrics(y, predict_registered(model, meta, sub))
    new = core_metrics(y, p_new)
    absent = [f for f in meta.get("features", []) if f not in sub or sub[f].isna().all()]
    gain = new["auroc"] - old["auroc"]
    # Calibration on these patients: the slope inside the bar's range (a slope compared with the
    # champion's to a few hundredths is sampling noise at these sizes: about 0.1 for 750 patients),
    # calibration-in-the-large and Brier not worse than the champion's beyond the tolerances.
    lo, hi = settings.champion_slope_range
    worse_slope = not lo <= new["calibration_slope"] <= hi
    worse_intercept = (abs(new["calibration_intercept"]) >
                       abs(old["calibration_intercept"]) + settings.calibration_tolerance)
    worse_brier = new["brier"] > old["brier"] + settings.brier_tolerance
    facts = (f"on {n} patients ({events} events) neither was trained on: AUROC {new['auroc']:.4f} vs champion "
             f"v{champ.version} {old['auroc']:.4f} (gain {gain:+.4f}, margin {settings.promotion_margin_auroc}); "
             f"calibration slope {new['calibration_slope']:.3f} vs {old['calibration_slope']:.3f}; Brier "
             f"{new['brier']:.4f} vs {old['brier']:.4f}"
             + (f"; the champion's inputs {', '.join(absent)} are not recorded for them" if absent else ""))
    if gain < settings.promotion_margin_auroc:
        return GateDecision(CHALLENGER, f"AUROC gain below margin {facts}", champ.version, old, n)
    if worse_slope or worse_intercept or worse_brier:
        return GateDecision(CHALLENGER, f"worse calibration {facts}", champ.version, old, n)
    return GateDecision(CHAMPION, f"beats champion {facts}", champ.version, old, n)


@contextmanager
def registration_lock(client: MlflowClient, name: str, timeout_s: float = 600.0, stale_s: float = 1800.0
                      ) -> Iterator[None]:
    """One run at a time gates and registers versions of `name`, in any store.

    MLflow has no compare-and-set on aliases, but creating a registered model is atomic in every
    store (a unique name: SQLite/PostgreSQL constraint, the same through `mlflow server`), so a
    registered model NAME.registration-lock is the lock. Without it two runs finishing together
    both see no champion (or the same one), both decide champion, and the alias ends on one while
    the other's recorded decision says champion too. A lock older than `stale_s` (its holder died
    mid-registration) is broken; waiting longer than `timeout_s` fails saying who holds it."""
    lock = f"{name}{LOCK_SUFFIX}"
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.create_registered_model(lock, tags={"holder": holder, "since_unix": f"{time.time():.0f}"},
                                           description="Held while a training run gates and registers a "
                                                       f"version of {name}; delete it if no run is active.")
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        try:
            held = client.get_registered_model(lock)
        except MlflowException:
            continue  # released between our attempt and the look
        since = float(held.tags.get("since_unix") or held.creation_timestamp / 1000)
        if time.time() - since > stale_s:
            try:
                client.delete_registered_model(lock)
            except MlflowException:
                pass  # another waiter broke it first
            continue
        if time.monotonic() > deadline:
            raise RegistrationBusy(
                f"another training run ({held.tags.get('holder', '?')}) has been registering {name} for "
                f"{time.time() - since:.0f} s; if no training run is active, delete the registered model "
                f"{lock!r} (MLflow UI, or MlflowClient().delete_registered_model) and rerun")
        time.sleep(0.1 + random.random() * 0.2)
    try:
        yield
    finally:
        try:
            client.delete_registered_model(lock)
        except MlflowException:  # the store stopped answering: the lock goes stale and is broken later
            pass


def gate_and_register(
    client: MlflowClient,
    name: str,
    new_metrics: dict[str, float],
    eval_frame: pd.DataFrame,
    p_eval: np.ndarray,
    eval_keys: list[str],
    train_keys: set[str],
    settings: TrainSettings,
    model_uri: str,
    model_id: str | None,
    run_id: str,
    tags: dict[str, str],
    description: str,
    slope_note: str | None = None,
) -> tuple[GateDecision, str]:
    """The gate and the registration under the registration lock: the champion the gate compares
    with is still the champion when the alias moves, so two runs finishing together end with
    exactly one champion and each version's recorded decision true."""
    with registration_lock(client, name):
        decision = gate(client, name, new_metrics, eval_frame, p_eval, eval_keys, train_keys, settings, slope_note)
        version = register(client, name, model_uri, model_id, run_id, tags, description, decision)
    return decision, version


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
    except BaseException as exc:
        try:
            restore_aliases(client, name, before)
            if version is not None:
                client.delete_model_version(name, version.version)
        except Exception as undo:
            left = f"version {version.version} of {name} may be left registered" if version is not None else \
                "no version was created"
            raise RegistrationIncomplete(
                f"registration failed ({type(exc).__name__}: {str(exc)[:300]}) and could not be undone "
                f"({type(undo).__name__}: {str(undo)[:200]}): {left}, and the aliases should be {before}; check "
                "with `pverisk models` once the tracking store answers") from exc
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
    if alias == CHAMPION:
        # a champion is no longer waiting for a decision: its challenger/candidate alias would make
        # `pverisk models` (and a shadow service importing the challenger) show it twice
        for waiting in (CHALLENGER, CANDIDATE):
            try:
                if str(client.get_model_version_by_alias(name, waiting).version) == str(mv.version):
                    client.delete_registered_model_alias(name, waiting)
            except MlflowException:
                pass
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
        rows.append({"version": str(mv.version), "aliases": by_version.get(str(mv.version), []),
                     "data_kind": mv.tags.get("data_kind"), "auroc": mv.tags.get("auroc"),
                     "gate_reason": mv.tags.get("gate_reason"), "run_id": mv.run_id,
                     "gate_decision": mv.tags.get("gate_decision"), "brier": mv.tags.get("brier"),
                     "calibration": mv.tags.get("calibration")})
    return sorted(rows, key=lambda r: int(r["version"]))


def as_json(x: Any) -> str:
    return json.dumps(x, indent=2, default=str)
