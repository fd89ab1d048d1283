"""A federated run in MLflow: one run (per-site sizes, events, study designs, rounds, strategy, the pooled
held-out figures and their forest plot), the global model with everything serving needs in its metadata
(so the same service serves it unchanged), a model card, and the registration through the same gate and
registration lock as `pverisk train`; a failure leaves no half-registered version."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.models import infer_signature

from feature_store import contract as c
from feature_store.dictionary import contract_summary
from feature_store.encoding import encode
from model_runtime.bands import derive_bands
from training import registry
from training.federated_run import FederatedConfig, Sites, pooled_gate_metrics
from training.forest import forest_figure
from training.model_card import RESEARCH_NOTICE, card_markdown
from training.settings import TrackingSettings, TrainSettings
from training.tracking import conda_env, configure_tracking, git_commit


def _kind(sites: Sites) -> str:
    kinds = {s.get("kind") for n, s in sites.summaries.items() if n not in sites.refused}
    return "simulated" if "simulated" in kinds or not kinds else "real"


def federated_card(name: str, record: dict[str, Any], features: list[str], kind: str, bands: dict[str, Any],
                   metrics: dict[str, float]) -> dict[str, Any]:
    took_part = [s for s in record["sites"] if s["status"] == "took part"]
    n, events = sum(s["n"] or 0 for s in took_part), sum(s["events"] or 0 for s in took_part)
    return {
        "model_details": {"name": name, "type": f"XGBoost gradient-boosted trees trained by federated learning "
                          f"(Flower, {record['strategy']}), Platt-recalibrated from the sites' summed gradients",
                          "feature_contract_version": c.CONTRACT_VERSION,
                          "tuning": "centralized training's default hyperparameters; rounds and strategy as run" + (
                              f"; {record['trees']['kept']} of {record['trees']['grown']} trees kept ("
                              f"{record['trees']['rule']})" if record.get("trees") else "")},
        "intended_use": {"purpose": "Estimate, at the PVE decision, the risk that colorectal liver metastases "
                                    "progress between portal vein embolization and planned resection.",
                         "notice": RESEARCH_NOTICE},
        "data": {"dataset": f"federated: {len(took_part)} sites", "kind": kind, "simulated": kind == "simulated",
                 "patients": n, "events": events, "digest": "none: the rows never left the sites",
                 "train_patients": sum((s.get("splits") or {}).get("boost", {}).get("n", 0) for s in took_part),
                 "train_events": sum((s.get("splits") or {}).get("boost", {}).get("events", 0) for s in took_part),
                 "note": ("SIMULATED sites: performance says nothing about real "
                                                           "patients." if kind == "simulated" else
                                                           "Real sites; rows never left them.")},
        "outcome": {"prediction_time": "the PVE decision (as each site states: see its study design)"},
        "predictors": [{"name": f, "recorded_by": record["inputs_recorded_by"].get(f, [])} for f in features],
        "evaluation": {"design": record["site_evaluation"]["design"], "metrics": metrics},
        "baselines": {}, "risk_bands": bands, "federated": record,
        "limitations": ["Hyperparameters are centralized training's defaults, not tuned across sites.",
                        "Sites that did not record an input give it as missing; the model learns default branches.",
                        *record["notes"]],
    }


def _metrics_for_card(evaluation: dict[str, Any]) -> dict[str, Any]:
    m = pooled_gate_metrics(evaluation)
    return {**m, "average_precision": None, "average_precision_ci_low": None, "average_precision_ci_high": None,
            "brier": None}


def log_and_register(cfg: FederatedConfig, sites: Sites, model_bytes: bytes, features: list[str], columns: list[str],
                     calibration: dict[str, Any], evaluation: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    tracking = TrackingSettings(**({"tracking_uri": cfg.tracking_uri} if cfg.tracking_uri else {}),
                                **({"artifact_root": cfg.artifact_root} if cfg.artifact_root else {}),
                                registered_model=cfg.registered_model)
    client = configure_tracking(tracking)
    name = tracking.registered_model
    kind = _kind(sites)
    took = [s for s in record["sites"] if s["status"] == "took part"]
    base_rate = sum(s["events"] for s in took) / max(sum(s["n"] for s in took), 1)
    bands = derive_bands(min(max(base_rate, 0.01), 0.99))
    tags = {"data_kind": kind, "simulated": str(kind == "simulated").lower(), "research_use_only": "true",
            "dataset_name": f"federated-{len(took)}-sites", "git_commit": git_commit(), "training": "federated",
            "feature_contract_version": c.CONTRACT_VERSION, "federated_strategy": cfg.strategy,
            "federated_sites": ",".join(s["site"] for s in record["sites"])[:5000], "features": ",".join(features)}
    metrics = pooled_gate_metrics(evaluation)
    with mlflow.start_run(run_name=f"federated-{cfg.strategy}-{len(took)}-sites", tags=tags) as run:
        mlflow.log_params({"strategy": cfg.strategy, "rounds": cfg.rounds, "local_rounds": cfg.local_rounds,
                           "learning_rate": cfg.learning_rate, "sites": len(record["sites"]), "sites_took_part": len(took),
                           "n_features": len(features), "trees_grown": record.get("trees", {}).get("grown"),
                           "trees_kept": record.get("trees", {}).get("kept")})
        for s in record["sites"]:
            key = "".join(ch if ch.isalnum() else "_" for ch in str(s["site"]))
            mlflow.log_metrics({f"site_{key}_patients": float(s["n"] or 0), f"site_{key}_events": float(s["events"] or 0)})
        mlflow.log_metrics({f"pooled_{k}": v for k, v in metrics.items() if np.isfinite(v)})
        for r in record["rounds_log"]:
            mlflow.log_metric("sites_in_round", r["replied"], step=r["round"])
        mlflow.log_dict(record, "federated/run.json")
        fig = forest_figure(evaluation, "Federated model, each site's held-out patients")
        mlflow.log_figure(fig, "plots/forest.png")
        plt.close(fig)
        card = federated_card(name, record, features, kind, bands, _metrics_for_card(evaluation))
        markdown = card_markdown_safe(card)
        mlflow.log_dict(card, "model_card/model_card.json")
        mlflow.log_text(markdown, "model_card/model_card.md")
        mlflow.log_dict(contract_summary(), "feature_contract.json")
        info = _log_model(model_bytes, features, columns, calibration, kind, name, bands, metrics)
        settings = TrainSettings()
        why_not = registry.eligibility(metrics, settings)
        champ = registry.current_champion(client, name)
        if why_not:
            decision = registry.GateDecision(registry.CANDIDATE, f"not eligible as champion: {why_not}", None, None)
        elif champ is None:
            decision = registry.GateDecision(registry.CHAMPION, f"first version to clear the bar (pooled held-out AUROC "
                                             f"lower bound {metrics['auroc_ci_low']:.3f}, calibration slope "
                                             f"{metrics['calibration_slope']:.2f}); no champion to compare with", None, None)
        else:
            decision = registry.GateDecision(registry.CHALLENGER, (
                f"a federated version cannot be compared with champion v{champ.version} on patients neither saw: the "
                "patients stay at the sites. Not promoted automatically: validate both at each site (`pverisk "
                "validate --model-version N` there) and decide with `pverisk promote`"), champ.version, None)
        with registry.registration_lock(client, name):
            version = registry.register(client, name, info.model_uri, info.model_id, run.info.run_id,
                                        {**tags, "run_id": run.info.run_id, "auroc": f"{metrics['auroc']:.4f}",
                                         "calibration": "sigmoid (federated)"}, markdown, decision)
        mlflow.set_tags({"registered_version": version, "alias": decision.alias})
    return {"run_id": run.info.run_id, "version": version, "alias": decision.alias, "gate_reason": decision.reason,
            "metrics": metrics, "tracking_uri": tracking.tracking_uri}


def card_markdown_safe(card: dict[str, Any]) -> str:
    """The card in Markdown (a federated card lacks the subgroup and baseline tables of a centralized one)."""
    card.setdefault("evaluation", {}).setdefault("subgroups", [])
    card.setdefault("intended_use", {}).setdefault("users", "researchers")
    card.setdefault("out_of_scope", ["Any clinical use of a model trained on simulated data."])
    card.setdefault("study_design", {"stated": {}})
    card["outcome"].setdefault("definition", "as each site states (see the sites' study designs)")
    card["outcome"].setdefault("horizon", "as each site states")
    card.setdefault("missing_data", "An input a site did not record is missing there; XGBoost follows its learned "
                                    "default branch.")
    card["model_details"].setdefault("feature_contract_version", c.CONTRACT_VERSION)
    card.setdefault("predictors", [])
    for p in card["predictors"]:
        f = c.BY_NAME[p["name"]]
        p.update({"type": f.kind.value, "unit": f.unit, "allowed": f.range_text, "required": False,
                  "derived_from": f.derivation.rule if f.derivation else None, "missing_share": None,
                  "codes": [f"{x.system} {x.code}" for x in f.codes]})
    return card_markdown(card)


def required_inputs(features: list[str]) -> list[str]:
    """The deployment's required inputs among the model's; where a site kept only a coarse form (so the model
    has both), the coarse form is required: a request satisfies it with either (feature_store/coarse.py)."""
    out = []
    for name in TrainSettings().required_features:
        forms = [f.name for f in c.coarse_forms(name) if f.name in features]
        if forms:
            out.append(forms[0])
        elif name in features:
            out.append(name)
    return out


def _log_model(model_bytes: bytes, features: list[str], columns: list[str], calibration: dict[str, Any], kind: str,
               name: str, bands: dict[str, Any], metrics: dict[str, float]) -> Any:
    clf = xgb.XGBClassifier()
    clf.load_model(bytearray(model_bytes))
    clf.get_booster().feature_names = columns
    example = encode(pd.DataFrame([c.example_record(features)]), features)
    metadata = {"calibration": calibration, "features": features, "columns": columns,
                "required": required_inputs(features),
                "study_design": None, "question_note": None, "feature_contract_version": c.CONTRACT_VERSION,
                "data_kind": kind, "dataset_name": "federated", "registered_model": name,
                "research_notice": RESEARCH_NOTICE, "risk_bands": bands, "training": "federated",
                "metrics": {k: (v if np.isfinite(v) else None) for k, v in metrics.items()}}
    return mlflow.xgboost.log_model(clf, name="model", signature=infer_signature(example, clf.predict_proba(example)[:, 1]),
                                    input_example=example, metadata=metadata, model_format="json", conda_env=conda_env())
