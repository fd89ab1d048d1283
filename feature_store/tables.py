"""Cohort tables on disk: the file forms a cohort comes in (Parquet, CSV, TSV)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_table(path: Path) -> pd.DataFrame:
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    raise ValueError(f"{path}: use a Parquet or CSV file (import other exports with `pverisk import-cohort`)")
