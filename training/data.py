"""Load and validate a training cohort before anything touches MLflow."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from feature_store import contract as c
from feature_store.simulate import SIMULATED_DATASET_PREFIX, conform
from feature_store.validate import CohortValidationError, validate_frame


@dataclass(frozen=True)
class Cohort:
    frame: pd.DataFrame  # validated, contract dtypes
    name: str
    source: str
    kind: str  # "simulated" or "real"
    digest: str

    @property
    def simulated(self) -> bool:
        return self.kind == "simulated"

    @property
    def n(self) -> int:
        return len(self.frame)

    @property
    def events(self) -> int:
        return int(self.frame[c.OUTCOME].sum())


def read_table(path: Path) -> pd.DataFrame:
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    raise ValueError(f"{path}: use a Parquet or CSV file (import other exports with `pverisk import-cohort`)")


def frame_digest(frame: pd.DataFrame) -> str:
    """Content hash of the table (values and column names), stable across file formats."""
    h = hashlib.sha256()
    h.update("|".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def load_cohort(path: Path, features: list[str] | None = None, kind: str | None = None) -> Cohort:
    """Read, validate against the contract and label a cohort.

    Raises CohortValidationError listing every bad row and column; nothing else
    happens before this passes.  A table with the simulator's oracle column is simulated.
    """
    path = Path(path)
    raw = read_table(path)
    if features is not None:
        c.check_no_leakage(features)
    frame, problems = validate_frame(raw, names=None, require_outcome=True)
    if problems:
        raise CohortValidationError(problems)
    frame = conform(frame if c.PATIENT_ID in frame else frame.assign(
        **{c.PATIENT_ID: [f"ROW-{i + 1}" for i in range(len(frame))]}))
    if c.TRUE_PROBABILITY in raw:
        frame[c.TRUE_PROBABILITY] = raw[c.TRUE_PROBABILITY].astype("float64").to_numpy()
    detected = "simulated" if c.TRUE_PROBABILITY in raw else "real"
    kind = kind or detected
    if kind not in ("simulated", "real"):
        raise ValueError("kind must be 'simulated' or 'real'")
    name = path.stem
    if kind == "simulated" and "simulated" not in name:
        name = f"{SIMULATED_DATASET_PREFIX}-{name}"
    if frame[c.OUTCOME].nunique() < 2:
        raise ValueError(f"{path}: the outcome has one value only; a risk model needs events and non-events")
    return Cohort(frame=frame, name=name, source=str(path.resolve()), kind=kind, digest=frame_digest(frame))
