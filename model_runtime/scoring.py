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
from model_runtime.bands import band_labels, resolve_bands
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
    seconds to every worker's start-up). libyaml's safe loader where PyYAML has it: the same
    document, ~9x faster than the pure-Python one on a model's metadata (the service reads it at
    start-up, before it is ready)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load((Path(path) / "MLmodel").read_text(), Loader=loader)  # noqa: S506 - a safe loader


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
        # Explanations per clinical feature, not per one-hot level: sums over each feature's run of model
        # columns (a feature's columns are adjacent). Not a folding matrix product: that goes through
        # BLAS, whose threads spin on a busy machine.
        of = [self.features.index(owner[col]) for col in self.columns]
        self._fold_starts = np.array([i for i in range(len(of)) if i == 0 or of[i] != of[i - 1]], dtype=np.intp)
        self._fold_features = np.array([of[i] for i in self._fold_starts], dtype=np.intp)
        if len(set(self._fold_features.tolist())) != len(self._fold_features):
            raise ValueError("a feature's model columns are not adjacent")
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
        band = band_labels(p, self.band_low_below, self.band_high_from)
        if not explain:
            return Scored(p, band, X=X)
        contribs = self._by_feature(np.add.reduceat(self.explainer.contributions(X).astype("float64"),
                                                    self._fold_starts, axis=1))
        # a feature is missing when all its model columns are NaN ("unknown" encodes as NaN)
        missing = self._by_feature(np.logical_and.reduceat(np.isnan(X), self._fold_starts, axis=1))
        return Scored(p, band, contribs, score_arrays(columns), missing, X)

    def _by_feature(self, folded: np.ndarray) -> np.ndarray:
        """Per-feature sums in the order of the model's column runs, put in the model's feature order."""
        out = np.empty((len(folded), len(self.features)), dtype=folded.dtype)
        out[:, self._fold_features] = folded
        return out

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
        leads = zip(*lead.values()) if keys else ((),) * n
        if scored.contributions is None or scored.missing is None or scored.scores is None:
            return [dict(zip(keys, first), probability=p, risk_band=b) for first, p, b in zip(leads, probs, bands)]
        k = min(self.settings.top_factors, len(self.features))
        # Everything per patient is computed column-wise; what follows only assembles dicts, each
        # made whole at once (a dict filled key by key grows, and costs more).
        order = np.argsort(-np.abs(scored.contributions), axis=1, kind="stable")[:, :k]
        sizes = np.round(np.take_along_axis(scored.contributions, order, axis=1), 4)
        directions = np.where(sizes > 0, "raises risk", "lowers risk").tolist()
        values = self.factor_values(columns, order).tolist()
        feats = np.array(self.features, dtype=object)[order].tolist()
        _, cols = np.nonzero(scored.missing)
        flat = np.array(self.features, dtype=object)[cols].tolist()
        ends = np.cumsum(scored.missing.sum(axis=1)).tolist()
        missing_lists = [flat[a:b] for a, b in zip([0, *ends[:-1]], ends)]
        score_lists = {key: np.where(np.isnan(arr), None, np.round(arr, 3)).tolist()
                       for key, arr in scored.scores.items()}
        groups = [None if g is None else game_group(g) for g in score_lists["game_score"]]
        score_keys = [*score_lists, "game_group"]
        scores = [dict(zip(score_keys, vals)) for vals in zip(*score_lists.values(), groups)]
        factors = [[{"feature": f, "value": v, "contribution_log_odds": size, "direction": d}
                    for f, size, v, d in zip(fs, ss, vs, ds) if size != 0.0]
                   for fs, ss, vs, ds in zip(feats, sizes.tolist(), values, directions)]
        rows = [dict(zip(keys, first), probability=p, risk_band=b, clinical_scores=sc, top_factors=tf,
                     missing_inputs=miss)
                for first, p, b, sc, tf, miss in zip(leads, probs, bands, scores, factors, missing_lists)]
        if with_meta:
            meta = self.meta_block()
            for row in rows:
                row.update(meta)
        return rows

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
