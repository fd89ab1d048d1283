"""Simulator benchmark (run on demand: `make bench`). Prints numbers, asserts nothing; writes
build/bench/simulator.json (benchmarks/bench_common.py).

Times `simulate_cohort(100_000)` on one core (median of repeats) and prints the
effect sizes a logistic regression recovers at n = 20,000 next to the published ones.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the goal says

import numpy as np  # noqa: E402

from feature_store import simulation_parameters as sp  # noqa: E402
from feature_store.recover import design, logit_fit  # noqa: E402
from feature_store.simulate import simulate_cohort  # noqa: E402


def main(repeats: int = 5) -> None:
    from benchmarks.bench_common import table, write_result

    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        simulate_cohort(100_000, seed=i)
        times.append(time.perf_counter() - t0)
    speed = table("Simulating 100,000 patients on one core (OMP_NUM_THREADS=1)",
                  ["runs", "median s", "min s", "max s", "goal"],
                  [[repeats, round(statistics.median(times), 2), round(min(times), 2), round(max(times), 2),
                    "< 10 s"]])

    df = simulate_cohort(20_000, seed=20_000)
    beta, se = logit_fit(*design(df))
    terms = [
        ("right_sided", sp.OR_RIGHT_SIDED), ("more_than_4_mets", sp.OR_MORE_THAN_4_METS),
        ("progressive", sp.OR_RESPONSE["progressive"]), ("stable", sp.OR_RESPONSE["stable"]),
        ("more_than_6_cycles", sp.OR_MORE_THAN_6_CYCLES), ("ras_mutant", sp.OR_RAS_MUTANT),
        ("ras_mutant_no_bridging", sp.OR_RAS_MUTANT_NO_BRIDGING), ("bridging", sp.OR_BRIDGING),
        ("sflr_lower_10", sp.OR_PER_10_PCT_LOWER_SFLR), ("wait_weeks", sp.OR_PER_WEEK_LONGER_WAIT),
    ]
    rows = []
    for term, p in terms:
        b, s = beta[term], se[term]
        rows.append([term, round(p.value, 2), round(float(np.exp(b)), 2),
                     f"{np.exp(b - 1.96 * s):.2f}-{np.exp(b + 1.96 * s):.2f}", p.source])
    effects = table(f"Effect sizes a logistic regression recovers at n = 20,000 (base rate "
                    f"{df['progression'].mean():.3f}; published ~0.25, Ironside 2017)",
                    ["effect", "simulated OR", "recovered OR", "95% CI", "source"], rows)
    write_result("simulator", "Simulator speed and recovered effect sizes",
                 "benchmarks/bench_simulator.py: `simulate_cohort` timed on one core, and the odds ratios a "
                 "logistic regression recovers from a simulated cohort beside the published ones it was built from.",
                 [speed, effects])


if __name__ == "__main__":
    main()
