"""Quality-bar benchmark (run on demand: `make bench`). Prints numbers; asserts nothing.

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
    print(f"train {n_train} / test {n_test} simulated patients; {os.cpu_count()} cores")
    print(f"full pipeline wall time (incl. tuning, {TrainSettings().trials} trials): {wall:.1f} s (goal < 180 s)")
    print(f"XGBoost AUROC {m['auroc']:.3f} ({m['auroc_ci_low']:.3f}-{m['auroc_ci_high']:.3f}); "
          f"oracle {o.get('auroc', float('nan')):.3f}; gap {o.get('auroc_gap', float('nan')):+.3f} (goal within 0.03)")
    print(f"calibration slope {m['calibration_slope']:.3f} (goal 0.85-1.15), intercept "
          f"{m['calibration_intercept']:+.3f}; Brier {m['brier']:.4f} (oracle {o.get('brier', float('nan')):.4f}); "
          f"calibration method {r.card['calibration']['method']}")
    lr = b["logistic_regression"]
    print(f"logistic regression AUROC {lr['auroc']:.3f} ({lr['auroc_ci_low']:.3f}-{lr['auroc_ci_high']:.3f}); "
          f"XGBoost minus LR {lr['model_minus_baseline_auroc']:+.4f} "
          f"(95% CI {lr['difference_ci_low']:+.4f} to {lr['difference_ci_high']:+.4f})")
    for s in ("tumour_burden_score", "fong_crs", "game_score", "m_crs"):
        x = b[s]
        print(f"{s:<20} AUROC {x['auroc']:.3f} on {x['n']} patients (model on same patients "
              f"{x['model_auroc_same_patients']:.3f})")


if __name__ == "__main__":
    main()
