"""Quality-bar benchmark (run on demand: `make bench`). Prints numbers; asserts nothing; writes
build/bench/training.json.

Trains on a simulated cohort of 2,000 patients and evaluates on a separate 20,000,
with the default tuning budget, in a throw-away local MLflow store. Simulator
parameters were fixed from the domain brief before any of these numbers existed.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

for _var in ("BENTOML_DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
    os.environ.setdefault(_var, "true")


def main(n_train: int = 2000, n_test: int = 20000) -> None:
    from feature_store.simulate import simulate_cohort
    from training.pipeline import run_training
    from training.settings import TrackingSettings, TrainSettings

    root = Path(tempfile.mkdtemp(prefix="pverisk-bench-"))
    train, test = root / "simulated-train.parquet", root / "simulated-test.parquet"
    simulate_cohort(n_train, seed=101).to_parquet(train)
    simulate_cohort(n_test, seed=202).to_parquet(test)
    tracking = TrackingSettings(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=root / "artifacts")
    t0 = time.perf_counter()
    r = run_training(train, settings=TrainSettings(), tracking=tracking, eval_data=test)
    wall = time.perf_counter() - t0
    m, o, b = r.metrics, r.oracle or {}, r.baselines
    from benchmarks.bench_common import table, write_result

    nan = float("nan")
    lr = b["logistic_regression"]
    quality = table(f"Held-out quality: trained on {n_train:,}, evaluated on {n_test:,} other simulated patients",
                    ["measure", "value", "goal"], [
        ["full pipeline wall time (s, incl. tuning, " f"{TrainSettings().trials} trials)", round(wall, 1), "< 180 s"],
        ["XGBoost AUROC (95% CI)", f"{m['auroc']:.3f} ({m['auroc_ci_low']:.3f}-{m['auroc_ci_high']:.3f})", ""],
        ["oracle AUROC (true probabilities)", round(o.get("auroc", nan), 3), ""],
        ["AUROC gap to the oracle", round(o.get("auroc_gap", nan), 3), "within 0.03"],
        ["calibration slope", round(m["calibration_slope"], 3), "0.85-1.15"],
        ["calibration intercept", round(m["calibration_intercept"], 3), ""],
        ["Brier (oracle)", f"{m['brier']:.4f} ({o.get('brier', nan):.4f})", ""],
        ["calibration method", r.card["calibration"]["method"], ""],
        ["logistic regression AUROC (95% CI)",
         f"{lr['auroc']:.3f} ({lr['auroc_ci_low']:.3f}-{lr['auroc_ci_high']:.3f})", ""],
        ["XGBoost minus logistic regression AUROC (95% CI)",
         f"{lr['model_minus_baseline_auroc']:+.4f} ({lr['difference_ci_low']:+.4f} to {lr['difference_ci_high']:+.4f})",
         ""],
    ])
    scores = table("Published clinical scores as rankers, on the patients they can score",
                   ["score", "patients", "score AUROC", "model AUROC on the same patients"],
                   [[s, b[s]["n"], _r(b[s].get("auroc")), _r(b[s].get("model_auroc_same_patients"))]
                    for s in ("tumour_burden_score", "fong_crs", "game_score", "m_crs")])
    write_result("training", "Training wall time and model quality",
                 "benchmarks/bench_training.py: the full training pipeline (tuning, calibration, evaluation, MLflow "
                 f"logging, gate) on {os.cpu_count()} cores with the default budget, in a throw-away local MLflow "
                 "store. Simulated data: the oracle is the simulator's true probability.",
                 [quality, scores])


def _r(v: object) -> object:
    return round(v, 3) if isinstance(v, float) else v


if __name__ == "__main__":
    main()
