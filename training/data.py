"""Load and validate a training cohort before anything touches MLflow."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from feature_store import contract as c
from feature_store.coarse import derive_coarse
from feature_store.simulate import SIMULATED_DATASET_PREFIX, conform
from feature_store.tables import read_table
from feature_store.study import SIMULATED_DESIGN, StudyDesign, design_from_metadata, read_cohort_metadata
from feature_store.validate import CohortValidationError, validate_frame
from training.settings import TrainSettings


@dataclass(frozen=True)
class Cohort:
    frame: pd.DataFrame  # validated, contract dtypes
    name: str
    source: str
    kind: str  # "simulated" or "real"
    digest: str
    design: StudyDesign | None = None  # None: the source did not state it
    not_collected: tuple[str, ...] = ()
    # several centres (a `centre` column): each centre's own metadata (study design, not collected)
    centres: dict[str, Any] | None = None

    @property
    def simulated(self) -> bool:
        return self.kind == "simulated"

    @property
    def n(self) -> int:
        return len(self.frame)

    @property
    def events(self) -> int:
        return int(self.frame[c.OUTCOME].sum())

    @property
    def recorded_scores(self) -> list[str]:
        return [col for col in self.frame.columns if str(col).startswith(c.RECORDED_SCORE_PREFIX)]


@dataclass
class FeatureChoice:
    """A model's inputs, picked from what its cohort recorded, with the reasons for the rest."""

    features: list[str]
    required: list[str]
    skipped: list[dict[str, str]] = field(default_factory=list)


def choose_features(frame: pd.DataFrame, requested: list[str] | None, settings: TrainSettings,
                    not_collected: tuple[str, ...] = ()) -> FeatureChoice:
    """The cohort's own features (or the requested ones), less those mostly missing, constant, or a
    coarse form of a fine feature the cohort also records. Raises ValueError when a requested
    feature is not in the cohort or nothing is left."""
    candidates = _candidates(frame, requested, not_collected)
    skipped: list[dict[str, str]] = [{"feature": f, "reason": "not collected (mapping)"} for f in not_collected
                                     if f not in frame]
    skipped += [{"feature": f.name, "reason": "known only after PVE: never an input of the pre-PVE model"}
                for f in c.features(c.Timing.POST_PVE) if f.name in frame]
    if requested is not None:
        skipped += [{"feature": f.name, "reason": "not among --features"} for f in c.features()
                    if f.name in frame and f.name not in requested]
    kept = _informative(frame, candidates, settings, skipped)
    _one_form_each(frame, kept, skipped)
    if not kept:
        raise ValueError("no usable feature in the cohort: " + "; ".join(f"{s['feature']}: {s['reason']}"
                                                                          for s in skipped))
    required = [f for f in kept if f in settings.required_features or any(
        src in settings.required_features for src in (c.BY_NAME[f].derivation.sources if c.BY_NAME[f].derivation
                                                      else ()))]
    return FeatureChoice(kept, required, skipped)


def _candidates(frame: pd.DataFrame, requested: list[str] | None, not_collected: tuple[str, ...]) -> list[str]:
    """The features to consider, in contract order: the requested ones (each in the cohort or derivable
    from it, none leaking the outcome), else every feature the cohort has."""
    def derivable(name: str) -> bool:  # a coarse form the cohort can compute from its fine columns
        d = c.BY_NAME[name].derivation
        return d is not None and all(src in frame for src in d.sources)

    if requested is None:
        return [f.name for f in c.features() if f.name in frame]
    c.check_no_leakage(requested)
    absent = [f for f in requested if f not in frame and not derivable(f)]
    if absent:
        why = [f"{f} (declared not collected)" if f in not_collected else f for f in absent]
        raise ValueError(f"--features names features the cohort does not have: {', '.join(why)}")
    return [f.name for f in c.features() if f.name in requested]


def _informative(frame: pd.DataFrame, candidates: list[str], settings: TrainSettings,
                 skipped: list[dict[str, str]]) -> list[str]:
    """The candidates recorded often enough and with more than one value; the others go to `skipped`."""
    kept: list[str] = []
    for name in candidates:
        col = frame[name] if name in frame else pd.Series(derive_coarse(frame, [name])[0][name], dtype=object)
        share = float(col.isna().mean()) if len(col) else 1.0
        if share > settings.max_missing_share:
            skipped.append({"feature": name, "reason": f"missing in {share:.0%} of patients (more than "
                                                        f"{settings.max_missing_share:.0%})"})
        elif col.dropna().nunique() < 2:
            skipped.append({"feature": name, "reason": "one value only in this cohort: nothing to learn from"})
        else:
            kept.append(name)
    return kept


def _one_form_each(frame: pd.DataFrame, kept: list[str], skipped: list[dict[str, str]]) -> None:
    """Where a coarse form and its fine sources are all kept, drop (from `kept`, into `skipped`) the less
    complete side."""
    for name in list(kept):
        d = c.BY_NAME[name].derivation
        if not d or not all(src in kept for src in d.sources):
            continue
        # Both forms recorded (say, a registry that added the count later): keep the more complete.
        filled, _ = derive_coarse(frame[[name, *d.sources]], [name])
        coarse_missing = float(pd.isna(pd.Series(filled[name], dtype=object)).mean())
        fine_missing = float(frame[list(d.sources)].isna().any(axis=1).mean())
        if fine_missing <= coarse_missing:
            kept.remove(name)
            skipped.append({"feature": name, "reason": f"coarse form of {', '.join(d.sources)}, which the "
                                                        "cohort records at least as completely"})
        else:
            for src in d.sources:
                if src in kept:
                    kept.remove(src)
                    skipped.append({"feature": src, "reason": f"missing in {fine_missing:.0%} of patients against "
                                                              f"{coarse_missing:.0%} for its coarse form {name}, "
                                                              "which is used instead (filled from it where recorded)"})


def patient_keys(frame: pd.DataFrame) -> list[str]:
    """One key per patient row: a hash of the id together with the row's values (a re-exported
    identical patient gets the same key; two cohorts reusing ids like ROW-1 do not collide).
    Hashes only: the key never reveals the id."""
    cols = [col for col in frame.columns if col != c.TRUE_PROBABILITY]
    hashes = pd.util.hash_pandas_object(frame[cols].astype("string"), index=False).to_numpy()
    return [hashlib.sha256(f"pverisk:{h}".encode()).hexdigest()[:20] for h in hashes]


def design_tags(design: StudyDesign | None) -> dict[str, Any]:
    if design is None:
        return {"study_design": "not stated"}
    return {f"study_{k}": str(v) for k, v in design.stated().items()}


def frame_digest(frame: pd.DataFrame) -> str:
    """Content hash of the table (values and column names), stable across file formats."""
    h = hashlib.sha256()
    h.update("|".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def load_cohort(path: Path, features: list[str] | None = None, kind: str | None = None) -> Cohort:
    """Read, validate against the contract and label a cohort.

    Raises CohortValidationError listing every bad row and column; nothing else
    happens before this passes.  A table with the simulator's oracle column, or whose metadata says
    it is simulated, is simulated.
    """
    path = Path(path)
    raw = read_table(path)
    meta = read_cohort_metadata(path)
    if features is not None:
        c.check_no_leakage(features)
    frame, problems = validate_frame(raw, names=None, require_outcome=True)
    if problems:
        raise CohortValidationError(problems)
    frame = conform(frame if c.PATIENT_ID in frame else frame.assign(
        **{c.PATIENT_ID: [f"ROW-{i + 1}" for i in range(len(frame))]}))
    if c.TRUE_PROBABILITY in raw:
        frame[c.TRUE_PROBABILITY] = raw[c.TRUE_PROBABILITY].astype("float64").to_numpy()
    # the oracle column, or the file says so (a point-in-time table built from a simulated cohort's
    # records has no oracle column, and must not be labelled real)
    simulated = c.TRUE_PROBABILITY in raw or meta.get("simulated") is True or meta.get("data_kind") == "simulated"
    detected = "simulated" if simulated else "real"
    kind = kind or detected
    if kind not in ("simulated", "real"):
        raise ValueError("kind must be 'simulated' or 'real'")
    name = path.stem
    if kind == "simulated" and "simulated" not in name:
        name = f"{SIMULATED_DATASET_PREFIX}-{name}"
    if frame[c.OUTCOME].nunique() < 2:
        raise ValueError(f"{path}: the outcome has one value only; a risk model needs events and non-events")
    design = design_from_metadata(meta) or (SIMULATED_DESIGN if kind == "simulated" else None)
    return Cohort(frame=frame, name=name, source=str(path.resolve()), kind=kind, digest=frame_digest(frame),
                  design=design, not_collected=tuple(meta.get("not_collected") or ()), centres=meta.get("centres"))
