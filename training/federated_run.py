"""The coordinator's side of a federated run, without Flower: which inputs the federated model uses (the
union of what the sites recorded; absent inputs are missing to XGBoost), its XGBoost parameters, the Platt
recalibration from the sites' summed gradients, the pooled held-out figures, and the one MLflow run that
records it all, registered and gated like any other version (training/registry.py).

The gate: the same bar on the random-effects pooled held-out figures (AUROC's lower 95% bound, calibration
slope). A champion is compared with a new version only on patients neither was trained on, which needs the
patients at the coordinator; a federated run has none there, so with a champion in place the new version is
a challenger and the reason says how to compare them (`pverisk validate` at each site).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from typing import Any

import numpy as np

from feature_store import contract as c
from training.centre_metrics import pooled_table
from training.federated_site import site_learning_rate  # noqa: F401  (the coordinator's and the site's rule)
from training.train import DEFAULTS

STRATEGIES = ("bagging", "cyclic")
# As measured in benchmarks/bench_federated.py (ten simulated centres, 40 rounds, sites in turn by name, trees
# kept by the sites' validation loss): cyclic with 5 trees a turn at 0.02 came within 0.0064 AUROC of
# centralized training; 1 tree at 0.1 -0.018, 5 trees at 0.05 -0.025. Bagging adds one tree per site a round.
DEFAULT_LEARNING_RATE = {"cyclic": 0.02, "bagging": 0.3}
DEFAULT_LOCAL_ROUNDS = {"cyclic": 5, "bagging": 1}


@dataclass
class FederatedConfig:
    rounds: int = 40
    # Cyclic by measurement (benchmarks/bench_federated.py, 10 simulated centres, 40 rounds): held-out AUROC
    # 0.622 against bagging's 0.614 (centralized 0.638), 31 s against 41 s, one site per round
    strategy: str = "cyclic"
    local_rounds: int = 0  # trees a site adds per turn (cyclic; 0: DEFAULT_LOCAL_ROUNDS); bagging: one per site a round
    learning_rate: float = 0.0  # per round, shared by the sites' patients (0: DEFAULT_LEARNING_RATE)
    # keep the number of trees (in whole rounds) with the lowest log-loss on the sites' calibration patients
    keep_best_size: bool = True
    min_sites: int = 2  # sites with valid files needed to train
    expected_sites: int = 0  # wait (up to wait_for_sites_s) for this many to connect; 0: min_sites
    wait_for_sites_s: float = 120.0
    round_timeout_s: float = 300.0
    seed: int = 0
    tracking_uri: str | None = None
    artifact_root: str | None = None  # the coordinator's, passed with the run (the ServerApp runs beside the SuperLink)
    registered_model: str = "pve-progression-risk"
    result_file: str | None = None
    min_events: int = 3

    @classmethod
    def from_run_config(cls, cfg: dict[str, Any]) -> "FederatedConfig":
        keys = {f.replace("_", "-"): f for f in cls.__dataclass_fields__}
        out = cls(**{keys[k]: v for k, v in cfg.items() if k in keys and v not in ("", None)})
        if out.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {out.strategy!r}")
        if not out.learning_rate:
            out.learning_rate = DEFAULT_LEARNING_RATE[out.strategy]
        if not out.local_rounds:
            out.local_rounds = DEFAULT_LOCAL_ROUNDS[out.strategy]
        return out


@dataclass
class Sites:
    """What the sites said and did, for the run's record (no patient data)."""

    summaries: dict[int, dict[str, Any]] = field(default_factory=dict)  # node id -> summary
    refused: dict[int, str] = field(default_factory=dict)
    dropped: dict[int, str] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def name(self, node: int) -> str:
        return str(self.summaries.get(node, {}).get("site", f"node {node}"))

    def accepted(self) -> list[int]:
        return [n for n, s in self.summaries.items() if s.get("status") == "ok" and n not in self.dropped]

    def notes(self) -> list[str]:
        out = [f"site {self.name(n)} refused: {why}" for n, why in self.refused.items()]
        return out + [f"site {self.name(n)} dropped out: {why}; the run went on with the other sites"
                      for n, why in self.dropped.items()]


def choose_features(summaries: list[dict[str, Any]]) -> tuple[list[str], dict[str, list[str]]]:
    """The union of what the valid sites recorded (an input with at least two distinct values somewhere), and
    which sites recorded each."""
    recorded_by: dict[str, list[str]] = {}
    distinct: dict[str, int] = {}
    for s in summaries:
        for name, st in s.get("features", {}).items():
            if st["recorded"]:
                recorded_by.setdefault(name, []).append(s["site"])
                distinct[name] = max(distinct.get(name, 0), st["distinct"])
    features = [f.name for f in c.features() if f.name in recorded_by and distinct.get(f.name, 0) >= 2]
    if not features:
        raise ValueError("the sites recorded no usable input")
    return features, {f: sorted(recorded_by[f]) for f in features}


def xgb_params(columns: list[str], base_rate: float, n_sites: int, cfg: FederatedConfig) -> dict[str, Any]:
    """The tuned defaults of centralized training (training/train.py), one base score for all (the pooled
    outcome rate); each site scales the learning rate by its share of patients (site_learning_rate)."""
    eta = cfg.learning_rate
    return {"objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist", "nthread": 1,
            "seed": cfg.seed, "max_depth": DEFAULTS["max_depth"], "min_child_weight": DEFAULTS["min_child_weight"],
            "subsample": DEFAULTS["subsample"], "colsample_bytree": DEFAULTS["colsample_bytree"],
            "reg_lambda": DEFAULTS["reg_lambda"], "eta": eta, "base_score": min(max(base_rate, 0.01), 0.99),
            "monotone_constraints": "(" + ",".join(map(str, c.monotone_constraints_for(columns))) + ")"}


def newton_platt(stats: list[dict[str, float]], a: float, b: float) -> tuple[float, float, float]:
    """One Newton step of the pooled Platt fit from the sites' sums; returns (a, b, step size)."""
    g = np.array([sum(s["g_a"] for s in stats), sum(s["g_b"] for s in stats)])
    H = np.array([[sum(s["h_aa"] for s in stats), sum(s["h_ab"] for s in stats)],
                  [sum(s["h_ab"] for s in stats), sum(s["h_bb"] for s in stats)]])
    step = np.linalg.solve(H + 1e-9 * np.eye(2), g)
    return a + float(step[0]), b + float(step[1]), float(np.abs(step).max())


def site_evaluation(rows: list[dict[str, Any]], sites: Sites) -> dict[str, Any]:
    names = {r["centre"] for r in rows}
    missing = [{"centre": sites.name(n), "n": sites.summaries[n].get("n", 0), "events": sites.summaries[n].get(
        "events", 0), "too_small": f"not evaluated: {why}"} for n, why in {**sites.refused, **sites.dropped}.items()
        if sites.name(n) not in names]
    rows = sorted(rows + missing, key=lambda r: str(r["centre"]))
    return pooled_table(rows, f"each site's held-out patients ({int(100 * 0.25)}% drawn by a hash of the "
                                        "patient), scored at the site by the final model; figures pooled by "
                                        "random-effects meta-analysis")


def summary_record(cfg: FederatedConfig, sites: Sites, features: list[str], recorded_by: dict[str, list[str]],
                   evaluation: dict[str, Any], calibration: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The run's own record (MLflow artifact, card section, what `pverisk federated train` prints)."""
    rows = []
    for node, s in sites.summaries.items():
        status = ("refused" if node in sites.refused else "dropped out" if node in sites.dropped else "took part")
        rows.append({"site": s.get("site"), "n": s.get("n"), "events": s.get("events"), "status": status,
                     "study_design": s.get("study_design"), "splits": s.get("splits"), "kind": s.get("kind")})
    try:
        flower = package_version("flwr")
    except Exception:  # flwr not installed where this is rendered
        flower = "?"
    return {"strategy": cfg.strategy, "rounds": cfg.rounds, "local_rounds": cfg.local_rounds,
            "learning_rate": cfg.learning_rate, "flower_version": flower, "sites": rows, "notes": sites.notes(),
            "rounds_log": sites.rounds, "features": features, "inputs_recorded_by": recorded_by,
            "calibration": calibration, "site_evaluation": evaluation, "seconds": round(seconds, 1),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def trees_to_keep(loss: dict[int, float]) -> int:
    """The fewest trees whose summed validation loss is the lowest (ties: the smaller model)."""
    best = min(loss.values())
    return min(k for k, v in loss.items() if v <= best)


def pooled_gate_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    """The figures the gate reads: the pooled held-out AUROC (its 95% CI) and calibration slope."""
    auroc = evaluation["pooled"]["AUROC"]
    slope = evaluation["pooled"]["calibration slope"]
    nan = float("nan")
    return {"auroc": auroc.get("estimate", nan) if auroc.get("k") else nan,
            "auroc_ci_low": auroc.get("ci_low", nan) if auroc.get("k") else nan,
            "auroc_ci_high": auroc.get("ci_high", nan) if auroc.get("k") else nan,
            "calibration_slope": slope.get("estimate", nan) if slope.get("k") else nan,
            "calibration_intercept": evaluation["pooled"]["calibration intercept"].get("estimate", nan)}


def as_json(x: Any) -> str:
    return json.dumps(x, default=lambda v: float(v) if isinstance(v, (np.floating, np.integer)) else str(v))
