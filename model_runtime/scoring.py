"""Scoring: calibrated risk, band, clinical scores, explanations and missing inputs.

One code path for one patient and for a batch: the input is a dict of columns, encoded
and scored column-wise against the feature contract (no per-row objects).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xgboost as xgb

from feature_store import contract as c
from feature_store.coarse import derive_coarse, required_text, satisfies
from feature_store.columns import column_values
from feature_store.encoding import encode_array, encode_record
from model_runtime.bands import resolve_bands
from model_runtime.calibration import apply_calibration
from feature_store.scores import game_group, score_arrays
from feature_store.study import predicted_outcome
from model_runtime.explain import PathExplainer
from model_runtime.options import Options, ScoringOptions

SIMULATED_NOTICE = (
    "Research use only: not a medical device, not for clinical decisions. This model was trained on "
    "SIMULATED data and says nothing about real patients."
)
REAL_NOTICE = "Research use only: not a medical device, not for clinical decisions."


@dataclass
class ModelIdentity:
    name: str
    version: str
    alias: str
    data_kind: str
    bento_tag: str
    run_id: str = ""
    feature_contract_version: str = c.CONTRACT_VERSION

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "alias": self.alias, "data_kind": self.data_kind,
                "bento_tag": self.bento_tag, "run_id": self.run_id,
                "feature_contract_version": self.feature_contract_version}


@dataclass(frozen=True)
class ServedInputs:
    """The served model's own inputs, read from its MLflow metadata: what the request model,
    validation, OpenAPI schema, FHIR mapping and CDS prefetch are built from."""

    features: tuple[str, ...]
    required: tuple[str, ...]
    question_note: str | None = None
    study_design: dict[str, Any] | None = None

    @property
    def accepted(self) -> tuple[str, ...]:
        """Fields a request may carry: every pre-PVE contract feature (unused ones are reported)."""
        return tuple(c.feature_names())

    @property
    def used(self) -> tuple[str, ...]:
        """The model's features and the fine sources its coarse features derive from."""
        return tuple(c.input_names(self.features))


def read_mlmodel(path: Path) -> dict[str, Any]:
    """The MLmodel file of an MLflow model directory (two file reads; importing mlflow would add
    seconds to every worker's start-up)."""
    import yaml

    return yaml.safe_load((Path(path) / "MLmodel").read_text())


# Models logged before requirements were per model: the three inputs the contract used to require.
LEGACY_REQUIRED = ("age_years", "n_liver_metastases", "largest_metastasis_cm")


def required_of(metadata: Mapping[str, Any]) -> list[str]:
    if "required" in metadata:
        return list(metadata["required"])
    return [f for f in LEGACY_REQUIRED if f in metadata["features"]]


def served_inputs(path: Path) -> ServedInputs:
    meta = read_mlmodel(path).get("metadata") or {}
    return ServedInputs(tuple(meta["features"]), tuple(required_of(meta)), meta.get("question_note"),
                        meta.get("study_design"))


@dataclass
class Scored:
    """n patients' results as arrays (the record, column and Arrow forms are views of these)."""

    probability: np.ndarray  # calibrated, float64
    band: np.ndarray  # "low" / "intermediate" / "high"
    contributions: np.ndarray | None = None  # n x features, log-odds (SHAP folded onto features)
    scores: dict[str, np.ndarray] | None = None  # clinical scores, NaN where not computable
    missing: np.ndarray | None = None  # n x features, True where the input was missing
    X: np.ndarray | None = None  # the model matrix scored (monitoring bins it; no second encoding)

    @property
    def answered(self) -> np.ndarray:
        """The probabilities as every response states them (4 decimals): what the outcome link stores,
        so that its live AUROC is the one a client computes from the answers."""
        return np.round(self.probability, 4)


ALL_COARSE = tuple(f.name for f in c.FEATURES if f.coarse)


@dataclass
class RiskModel:
    booster: xgb.Booster
    metadata: dict[str, Any]
    identity: ModelIdentity
    settings: Options = field(default_factory=ScoringOptions)

    def __post_init__(self) -> None:
        self.features: list[str] = list(self.metadata["features"])
        self.columns: list[str] = list(self.metadata["columns"])
        if self.columns != c.model_columns(self.features) or (
                self.booster.feature_names and list(self.booster.feature_names) != self.columns):
            raise ValueError("the model's columns do not match this feature contract; re-train or upgrade")
        owner = c.column_owner()
        # column -> feature folding matrix, so explanations are per clinical feature, not per one-hot level
        self._fold = np.zeros((len(self.columns), len(self.features)))
        for i, col in enumerate(self.columns):
            self._fold[i, self.features.index(owner[col])] = 1.0
        self.notice = SIMULATED_NOTICE if self.identity.data_kind == "simulated" else REAL_NOTICE
        self._model_block = self.identity.as_dict()
        # the model's own cut-offs unless the deployment set them (model_runtime/bands.py)
        self.bands = resolve_bands(self.metadata, self.settings.band_low_below, self.settings.band_high_from)
        self.band_low_below, self.band_high_from = self.bands.low_below, self.bands.high_from
        self._bands = self.bands.thresholds()
        self.required: list[str] = required_of(self.metadata)
        self.question_note: str | None = self.metadata.get("question_note")
        self.outcome = predicted_outcome(self.metadata.get("study_design"))
        self._coarse = [f for f in self.features if c.BY_NAME[f].coarse]
        self._required_coarse = [f for f in self.required if c.BY_NAME[f].coarse]
        self._used = set(c.input_names(self.features))
        # One thread per call: on a busy 2-core machine OpenMP's wake-ups of a second thread cost
        # 10-40 ms per call, far more than these predictions (see benchmarks/bench_serving.py).
        self.booster.set_param({"nthread": 1})
        self.explainer = PathExplainer(self.booster)

    @classmethod
    def from_mlflow_dir(cls, path: Path, identity: ModelIdentity, settings: Options | None = None
                        ) -> "RiskModel":
        """Load the native XGBoost flavor of an MLflow model directory (probabilities, not labels).

        Reads the MLmodel file and the flavor's model file directly: importing mlflow would add
        seconds to every worker's start-up for two file reads.
        """
        spec = read_mlmodel(path)
        flavor = spec["flavors"]["xgboost"]
        booster = xgb.Booster()
        booster.load_model(str(Path(path) / flavor["data"]))
        return cls(booster, spec.get("metadata") or {}, identity, settings or ScoringOptions())

    def derive(self, columns: Mapping[str, Any]) -> tuple[Mapping[str, Any], dict[str, list[int]]]:
        """Coarse inputs derived from fine values where the request gives those (the contract's
        rule); rows where a given coarse value contradicts its fine value, per feature."""
        # A coarse value the model does not use is still checked against its fine value: a flag
        # contradicting the count beside it is a data error whichever of the two the model reads.
        checked = [f for f in ALL_COARSE if f not in self._coarse and f in columns]
        _, conflicts = derive_coarse(columns, checked) if checked else (None, {})
        if not self._coarse:
            return columns, conflicts
        out, own = derive_coarse(columns, self._coarse)
        return out, {**own, **conflicts}

    def unused(self, record: Mapping[str, Any]) -> list[str]:
        """Contract features given in a request that this model does not use."""
        return [k for k, v in record.items() if v is not None and k not in self._used]

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        """Calibrated risks of a model matrix. From the margin in every mode, so a lean answer equals a
        full one and the shadow challenger's risks are computed as its own answers would be."""
        margin = self.booster.inplace_predict(X, predict_type="margin", missing=np.nan, validate_features=False)
        raw = 1.0 / (1.0 + np.exp(-np.asarray(margin, dtype="float64")))
        return apply_calibration(raw, self.metadata.get("calibration"))

    def score_arrays(self, columns: Mapping[str, Any], n: int, X: np.ndarray | None = None,
                     explain: bool = True) -> "Scored":
        """n patients given as a dict of columns (X: their model matrix, if known), scored into
        arrays: what every response form (records, columns, Arrow) and monitoring are built from.
        `explain=False` computes probabilities and bands only (no explanations, scores or missing
        inputs). Coarse inputs must already be derived (`derive`)."""
        X = encode_array(columns, self.features) if X is None else X
        p = self.probabilities(X)
        band = np.where(p < self.band_low_below, "low", np.where(p >= self.band_high_from, "high", "intermediate"))
        if not explain:
            return Scored(p, band, X=X)
        contribs = self.explainer.contributions(X).astype("float64") @ self._fold
        # a feature is missing when all its model columns are NaN ("unknown" encodes as NaN)
        missing = (np.isnan(X).astype(float) @ self._fold) == self._fold.sum(axis=0)
        return Scored(p, band, contribs, score_arrays(columns), missing, X)

    def score_columns(self, columns: Mapping[str, Any], n: int, X: np.ndarray | None = None,
                      with_meta: bool = True, explain: bool = True) -> list[dict[str, Any]]:
        """Responses for n patients given as a dict of columns (X: their model matrix, if known).
        `with_meta=False` leaves out what is the same for every patient (model, notice, bands):
        a batch response states it once. `explain=False`: probability and band only.
        Coarse inputs must already be derived (`derive`)."""
        return self.records(self.score_arrays(columns, n, X, explain), columns, n, with_meta)

    def records(self, scored: "Scored", columns: Mapping[str, Any], n: int, with_meta: bool = False,
                lead: Mapping[str, list[Any]] | None = None) -> list[dict[str, Any]]:
        """Scored patients as one response dict each; `lead`: keys put first in each row (a batch's
        index and prediction id), one value per patient."""
        # Thousands of small lists and dicts trigger full garbage collections that cost more than
        # the model; none of them is cyclic, so collection waits until they are built.
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            return self._records(scored, columns, n, with_meta, lead or {})
        finally:
            if gc_was_on:
                gc.enable()

    def _records(self, scored: "Scored", columns: Mapping[str, Any], n: int, with_meta: bool,
                 lead: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
        probs = scored.answered.tolist()
        bands = scored.band.tolist()
        keys = list(lead)
        firsts = [dict(zip(keys, vals)) for vals in zip(*lead.values())] if keys else [{} for _ in range(n)]
        if scored.contributions is None or scored.missing is None or scored.scores is None:
            for row, p, b in zip(firsts, probs, bands):
                row["probability"] = p
                row["risk_band"] = b
            return firsts
        k = min(self.settings.top_factors, len(self.features))
        # Everything per patient is computed column-wise; the loop below only assembles dicts.
        order = np.argsort(-np.abs(scored.contributions), axis=1, kind="stable")[:, :k]
        sizes = np.round(np.take_along_axis(scored.contributions, order, axis=1), 4).tolist()
        values = self.factor_values(columns, order).tolist()
        feats = np.array(self.features, dtype=object)[order].tolist()
        _, cols = np.nonzero(scored.missing)
        flat = np.array(self.features, dtype=object)[cols].tolist()
        ends = np.cumsum(scored.missing.sum(axis=1)).tolist()
        missing_lists = [flat[a:b] for a, b in zip([0, *ends[:-1]], ends)]
        score_lists = {key: np.where(np.isnan(arr), None, np.round(arr, 3)).tolist()
                       for key, arr in scored.scores.items()}
        self._assemble(firsts, probs, bands, feats, sizes, values, score_lists, missing_lists, with_meta)
        return firsts

    def factor_values(self, columns: Mapping[str, Any], order: np.ndarray) -> np.ndarray:
        """The value of each top factor (n x k objects, None where missing): one pass per feature,
        not per patient."""
        out = np.full(order.shape, None, dtype=object)
        for j, name in enumerate(self.features):
            hit = order == j
            if name not in columns or not hit.any():
                continue
            rows = np.nonzero(hit)[0]
            values, missing = column_values(columns, name, len(order))  # object array, None missing
            picked = values[rows]
            if picked.dtype.kind == "f":
                picked = picked.astype(object)  # Python floats
            else:  # numpy scalars as Python values (missing ones are set to None below)
                picked = np.asarray([v.item() if isinstance(v, np.generic) else v for v in picked.tolist()] + [None],
                                    dtype=object)[:-1]
            picked[missing[rows]] = None
            out[hit] = picked
        return out

    def _assemble(self, out: list[dict[str, Any]], probs: list[float], bands: list[str], feats: list[list[str]],
                  sizes: list[list[float]], values: list[list[Any]], score_lists: dict[str, list[Any]],
                  missing_lists: list[list[str]], with_meta: bool) -> None:
        meta = self.meta_block() if with_meta else None
        score_keys = list(score_lists)
        game = score_lists["game_score"]
        groups = [None if g is None else game_group(g) for g in game]
        for row, s_vals, p, b, fs, ss, vs, miss in zip(out, zip(*score_lists.values(), groups), probs, bands, feats,
                                                        sizes, values, missing_lists):
            row["probability"] = p
            row["risk_band"] = b
            s = dict(zip(score_keys, s_vals))
            s["game_group"] = s_vals[-1]
            row["clinical_scores"] = s
            row["top_factors"] = [{"feature": f, "value": v, "contribution_log_odds": size,
                                   "direction": "raises risk" if size > 0 else "lowers risk"}
                                  for f, size, v in zip(fs, ss, vs) if size != 0.0]
            row["missing_inputs"] = miss
            if meta is not None:
                row.update(meta)

    def meta_block(self) -> dict[str, Any]:
        """What every response carries: band thresholds, missing-data handling, model, data kind, notice."""
        block = {
            "band_thresholds": self._bands,
            "missing_handling": "left missing; the model follows its learned default branch",
            "model": self._model_block,
            "data_kind": self.identity.data_kind,
            "notice": self.notice,
        }
        if self.question_note:
            block["question_note"] = self.question_note
            block["predicted_outcome"] = self.outcome
        return block

    def missing_required(self, columns: Mapping[str, Any]) -> dict[str, list[int]]:
        """Rows lacking a required coarse input in either form (fine required inputs are checked by
        the request model and the batch validator)."""
        out = {}
        for name in self._required_coarse:
            rows = np.flatnonzero(~satisfies(name, columns))
            if len(rows):
                out[name] = rows.tolist()
        return out

    def score_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """One patient. Raises CoarseConflict when a coarse input contradicts its fine value, and
        MissingRequired when a required coarse input is absent in both forms."""
        if self._coarse or any(record.get(f) is not None for f in ALL_COARSE):
            columns = {k: [v] for k, v in record.items()}
            if absent := self.missing_required(columns):
                raise MissingRequired(absent)
            columns, conflicts = self.derive(columns)
            if conflicts:
                raise CoarseConflict(conflicts)
            record = {k: v[0] for k, v in columns.items()}
        out = self.score_columns({k: [v] for k, v in record.items()}, 1, encode_record(record, self.features))[0]
        out["unused_inputs"] = self.unused(record)
        return out


class MissingRequired(ValueError):
    """A required coarse input is given neither as itself nor as its fine form."""

    def __init__(self, missing: dict[str, list[int]]):
        self.missing = missing
        super().__init__("; ".join(self.problems()))

    def problems(self) -> list[str]:
        return [f"required value missing: give {required_text(name)}" for name in self.missing]


class CoarseConflict(ValueError):
    """A coarse input (a flag) contradicts the fine value given beside it."""

    def __init__(self, conflicts: dict[str, list[int]]):
        self.conflicts = conflicts
        super().__init__("; ".join(self.problems()))

    def problems(self) -> list[str]:
        return [f"{name}: contradicts {', '.join(c.BY_NAME[name].derivation.sources)} "  # type: ignore[union-attr]
                f"(rule: {c.BY_NAME[name].derivation.rule})" for name in self.conflicts]  # type: ignore[union-attr]
