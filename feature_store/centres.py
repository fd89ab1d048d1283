"""Simulated centres (`pverisk simulate --centres N`): each centre its own size (20-600), case mix (age,
tumour burden, chemotherapy habits), outcome rate (a centre effect on the log-odds) and recorded inputs
(some lack RAS or sidedness, keep the tumour count only as the ">1" flag, or do not record CEA), with a
`centre` column and a study design per centre. The true risk (oracle) of every patient is kept. Every
parameter is in simulation_parameters.py with its source or "assumption".

A pooled file holds every centre (inputs a centre did not record are missing there); a site file holds one
centre as that hospital would have it (the inputs it did not record are absent, and its metadata says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from feature_store import contract as c
from feature_store import simulation_parameters as sp
from feature_store.simulate import CaseMix, conform, simulate_cohort
from feature_store.study import SIMULATED_DESIGN, StudyDesign, write_with_design

COUNT_FLAG = "multiple_liver_metastases"  # what a centre keeping only the flag records instead of the count


@dataclass(frozen=True)
class Centre:
    name: str
    n: int
    seed: int
    mix: CaseMix
    not_recorded: tuple[str, ...] = ()
    count_as_flag: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def design(self) -> StudyDesign:
        return SIMULATED_DESIGN.model_copy(update={"site": f"simulated {self.name}", "population_description":
                                                   f"simulated PVE candidates of {self.name} (literature-grounded "
                                                   "generator, own case mix)"})

    def not_collected(self) -> list[str]:
        out = list(self.not_recorded)
        return out + (["n_liver_metastases"] if self.count_as_flag else [])


def draw_centres(k: int, seed: int = 0, sizes: list[int] | None = None) -> list[Centre]:
    """k centres' sizes, case mixes and recorded inputs (deterministic for a seed)."""
    if k < 1:
        raise ValueError("at least one centre")
    rng = np.random.default_rng([seed, 19])
    lo, hi = sp.CENTRE_SIZE_RANGE
    out = []
    for i in range(k):
        n = sizes[i] if sizes else int(round(np.exp(rng.uniform(np.log(lo), np.log(hi)))))
        mix = CaseMix(
            age_shift=float(rng.normal(0, sp.CENTRE_AGE_SHIFT_SD.value)),
            burden_scale=float(np.exp(rng.normal(0, sp.CENTRE_BURDEN_LOG_SD.value))),
            chemo_cycles_mean=float(rng.uniform(*sp.CENTRE_CHEMO_CYCLES_RANGE)),
            bridging_share=float(rng.uniform(*sp.CENTRE_BRIDGING_RANGE)),
            intercept_shift=float(rng.normal(0, sp.CENTRE_INTERCEPT_SD.value)))
        u = rng.random(4)
        lacks = tuple(name for name, share, draw in (
            ("ras_status", sp.CENTRE_LACKS_RAS.value, u[0]), ("primary_side", sp.CENTRE_LACKS_SIDEDNESS.value, u[1]),
            ("cea_ng_ml", sp.CENTRE_LACKS_CEA.value, u[3])) if draw < share)
        out.append(Centre(f"centre-{i + 1:02d}", n, seed * 1000 + i + 1, mix, lacks,
                          bool(u[2] < sp.CENTRE_COUNT_AS_FLAG.value)))
    return out


def centre_cohort(centre: Centre) -> pd.DataFrame:
    """One centre's patients as the centre records them (columns it does not record are missing)."""
    df = simulate_cohort(centre.n, centre.seed, centre.mix)
    for name in centre.not_recorded:
        df[name] = df[name].where(pd.Series(False, index=df.index))  # all missing, dtype kept
    if centre.count_as_flag:
        df[COUNT_FLAG] = pd.array(df["n_liver_metastases"] > 1, dtype="boolean")
        df["n_liver_metastases"] = np.nan
    df[c.CENTRE] = centre.name
    return conform(df)


def simulate_centres(k: int, seed: int = 0, sizes: list[int] | None = None) -> tuple[pd.DataFrame, list[Centre]]:
    """The pooled multi-centre cohort (a `centre` column) and the centres it was drawn from."""
    centres = draw_centres(k, seed, sizes)
    pooled = pd.concat([centre_cohort(x) for x in centres], ignore_index=True)
    return conform(pooled), centres


def metadata(centres: list[Centre]) -> dict[str, Any]:
    return {"simulated": True, "centres": {x.name: {"patients": x.n, "study_design": x.design().stated(),
                                                    "not_collected": x.not_collected(),
                                                    "case_mix": x.mix.__dict__} for x in centres}}


def write_centres(pooled: pd.DataFrame, centres: list[Centre], out: Path, site_dir: Path | None = None) -> list[Path]:
    """The pooled file (with each centre's design in its metadata) and, with `site_dir`, one file per centre
    holding only what that centre records."""
    design = SIMULATED_DESIGN.model_copy(update={"site": f"{len(centres)} simulated centres"})
    write_with_design(pooled, Path(out), design, metadata(centres))
    written = [Path(out)]
    for x in centres if site_dir else []:
        own = pooled[pooled[c.CENTRE] == x.name].drop(columns=[*x.not_collected(), c.CENTRE])
        if not x.count_as_flag:
            own = own.drop(columns=[COUNT_FLAG], errors="ignore")
        path = Path(site_dir) / f"{x.name}.parquet"  # type: ignore[arg-type]
        write_with_design(own.reset_index(drop=True), path, x.design(), {"simulated": True,
                                                                          "not_collected": x.not_collected()})
        written.append(path)
    return written


def summary(pooled: pd.DataFrame, centres: list[Centre]) -> pd.DataFrame:
    rows = []
    for x in centres:
        part = pooled[pooled[c.CENTRE] == x.name]
        rows.append({"centre": x.name, "patients": len(part), "events": int(part[c.OUTCOME].sum()),
                     "outcome_rate": float(part[c.OUTCOME].mean()), "mean_age": float(part["age_years"].mean()),
                     "not_recorded": ", ".join(x.not_collected()) or "-"})
    return pd.DataFrame(rows)
