"""A small feature store for the tests: simulated patients with recent, dated records."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from feature_store import contract as c
from feature_store import feast_repo as fr
from feature_store import feast_data as fd
from feature_store.feast_settings import FeastSettings
from feature_store.simulate import simulate_cohort, simulate_record_dates


def recent_cohort(n: int = 12, seed: int = 5, stale_labs: int = 1) -> pd.DataFrame:
    """SIMULATED patients decided today, their records dated the days before; the first
    `stale_labs` patients' latest labs are older than the laboratory TTL."""
    df = simulate_record_dates(simulate_cohort(n, seed), seed=seed, stale_lab_share=0.0)
    today = pd.Timestamp.now().normalize()
    shift = today - pd.to_datetime(df[c.EVENT_TIMESTAMP])
    for col in [c.EVENT_TIMESTAMP, c.OUTCOME_DATE, *[x for x in df.columns if x.startswith(fr.RECORDED_AT_PREFIX)]]:
        df[col] = pd.to_datetime(df[col]) + shift
    lab = c.recorded_at_column("laboratory")
    ttl = c.SOURCE_GROUPS["laboratory"].ttl_days
    df.loc[: stale_labs - 1, lab] = today - pd.Timedelta(days=ttl + 30)
    return df


def build_store(repo: Path, models: list[fr.ModelVersion], cohort: pd.DataFrame, **settings: str) -> FeastSettings:
    s = FeastSettings(repo_dir=repo, **settings)
    fd.apply(s, models=models)
    fd.ingest(cohort, s)
    fd.materialize(fr.open_store(s))
    return s
