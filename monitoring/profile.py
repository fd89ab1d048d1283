"""Reference profiles and drift: per-feature bins, missing shares and the score distribution.

Training fits a profile on its cohort (bins from the data, counts per bin, missing counts) and
on its held-out scores; the profile travels with the model (MLmodel metadata). The service
bins live requests with the same bins and compares counts: only aggregate counts exist on
either side, never a patient's value.

Everything works on the encoded model matrix (`feature_store.encoding.encode_array`), so training, the
service and the drift report bin exactly the same representation, whole batches at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from feature_store import contract as c

PROFILE_VERSION = 1
# Bin edges of a numeric feature: these quantiles of the reference values (duplicates merged).
EDGE_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# Scores are kept in 100 fixed bins of width 0.01 (quantiles to within 0.01); their PSI uses the
# reference deciles rounded onto that grid, so the coarse bins are unions of fine ones.
SCORE_FINE_BINS = 100
MISSING = "missing"
SCORE_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
# Additive smoothing of bin shares in PSI: an empty bin on one side would make it infinite.
PSI_ALPHA = 0.5


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _numeric_labels(edges: Sequence[float]) -> list[str]:
    if not edges:
        return ["all"]
    labels = [f"<={_fmt(edges[0])}"]
    labels += [f"{_fmt(lo)}-{_fmt(hi)}" for lo, hi in zip(edges[:-1], edges[1:])]
    return labels + [f">{_fmt(edges[-1])}"]


def _layout(features: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Feature -> its column indices in the model matrix (contract order, as encode_array)."""
    cols = c.model_columns(list(features))
    index = {col: i for i, col in enumerate(cols)}
    return {f: tuple(index[col] for col in c.BY_NAME[f].model_columns()) for f in features}


def _category_labels(f: c.Feature) -> list[str]:
    if f.kind is c.Kind.BOOLEAN:
        return ["false", "true"]
    return list(f.known_categories)


def _categorical_codes(f: c.Feature, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Category index per row and the missing mask, from a feature's encoded columns."""
    missing = np.isnan(block[:, 0])
    if block.shape[1] > 1:  # one-hot over the known categories
        codes = np.argmax(np.nan_to_num(block), axis=1)
    else:  # 0/1 (boolean, two-level indicator) or an ordinal code
        codes = np.nan_to_num(block[:, 0]).astype(np.int64)
    return codes, missing


def build_profile(X: np.ndarray, features: Sequence[str], scores: np.ndarray | None = None,
                  source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The reference profile of an encoded cohort (n x model columns) and its scores (JSON-able)."""
    layout = _layout(features)
    out: dict[str, Any] = {"version": PROFILE_VERSION, "n": int(len(X)), "features": {},
                           "source": dict(source or {})}
    for name in features:
        f = c.BY_NAME[name]
        block = X[:, layout[name]]
        if f.kind in (c.Kind.NUMBER, c.Kind.INTEGER):
            x = block[:, 0]
            known = x[~np.isnan(x)]
            edges = sorted({float(v) for v in np.quantile(known, EDGE_QUANTILES)}) if len(known) else []
            entry: dict[str, Any] = {"kind": "numeric", "edges": edges, "labels": _numeric_labels(edges)}
        else:
            entry = {"kind": "categorical", "labels": _category_labels(f)}
        out["features"][name] = entry
    binner = Binner(out)
    counts = binner.counts(X)
    for name in features:
        sl = binner.slice(name)
        entry = out["features"][name]
        entry["counts"] = counts[sl][:-1].astype(int).tolist()
        entry["missing"] = int(counts[sl][-1])
    if scores is not None:
        scores = np.asarray(scores, dtype=float)
        grid = sorted({int(round(q * SCORE_FINE_BINS)) for q in np.quantile(scores, EDGE_QUANTILES)}
                      - {0, SCORE_FINE_BINS})
        out["score"] = {"n": int(len(scores)), "fine_counts": score_counts(scores).astype(int).tolist(),
                        "edges": [g / SCORE_FINE_BINS for g in grid]}
    return out


class Binner:
    """Bins encoded rows with a profile's bins: one flat count vector over all features, each
    feature's value bins followed by its missing bin."""

    def __init__(self, profile: Mapping[str, Any]) -> None:
        self.profile = profile
        self.features: list[str] = list(profile["features"])
        self._layout = _layout(self.features)
        self.offsets: dict[str, int] = {}
        self.sizes: dict[str, int] = {}
        total = 0
        for name in self.features:
            size = len(profile["features"][name]["labels"]) + 1  # + missing
            self.offsets[name], self.sizes[name] = total, size
            total += size
        self.total = total
        self._numeric = [(n, np.asarray(profile["features"][n]["edges"], dtype=float)) for n in self.features
                         if profile["features"][n]["kind"] == "numeric"]
        self._categorical = [n for n in self.features if profile["features"][n]["kind"] == "categorical"]
        edges = profile.get("score", {}).get("edges", [])
        self.score_grid = np.array([int(round(e * SCORE_FINE_BINS)) for e in edges], dtype=np.int64)

    def slice(self, name: str) -> slice:
        return slice(self.offsets[name], self.offsets[name] + self.sizes[name])

    def labels(self, name: str) -> list[str]:
        return [*self.profile["features"][name]["labels"], MISSING]

    def reference_counts(self) -> np.ndarray:
        out = np.zeros(self.total)
        for name in self.features:
            entry = self.profile["features"][name]
            out[self.slice(name)] = [*entry["counts"], entry["missing"]]
        return out

    def _codes_by_feature(self, X: np.ndarray) -> np.ndarray:
        """Flat bin index per feature and row (features x rows), offsets included: each feature's column
        read and written contiguously."""
        XT = np.ascontiguousarray(X.T)
        out = np.empty((len(self.features), len(X)), dtype=np.int64)
        pos = {name: j for j, name in enumerate(self.features)}
        for name, edges in self._numeric:
            x = XT[self._layout[name][0]]
            code = np.searchsorted(edges, x, side="left")
            code[np.isnan(x)] = self.sizes[name] - 1
            out[pos[name]] = code + self.offsets[name]
        for name in self._categorical:
            code, missing = _categorical_codes(c.BY_NAME[name], XT[list(self._layout[name])].T)
            code = np.minimum(code, self.sizes[name] - 2)
            code[missing] = self.sizes[name] - 1
            out[pos[name]] = code + self.offsets[name]
        return out

    def counts(self, X: np.ndarray) -> np.ndarray:
        """Counts per bin of all features for a batch of encoded rows (one bincount)."""
        if len(X) == 0:
            return np.zeros(self.total, dtype=np.int64)
        return np.bincount(self._codes_by_feature(X).ravel(), minlength=self.total)

    def coarse_scores(self, fine: np.ndarray) -> np.ndarray:
        """Fine score counts merged onto the reference's decile bins."""
        idx = np.searchsorted(self.score_grid, np.arange(SCORE_FINE_BINS), side="right")
        return np.bincount(idx, weights=np.asarray(fine, dtype=float), minlength=len(self.score_grid) + 1)

    def drift(self, current: np.ndarray, reference: np.ndarray | None = None) -> dict[str, dict[str, float]]:
        """Per feature: PSI (value bins and the missing bin), missing share now and in the reference."""
        reference = self.reference_counts() if reference is None else reference
        out = {}
        for name in self.features:
            sl = self.slice(name)
            cur, ref = current[sl], reference[sl]
            out[name] = {"psi": psi(ref, cur), "missing_share": _share(cur[-1], cur.sum()),
                         "reference_missing_share": _share(ref[-1], ref.sum()), "n": float(cur.sum())}
        return out


def _share(part: float, whole: float) -> float:
    return float(part / whole) if whole else float("nan")


def score_counts(p: np.ndarray) -> np.ndarray:
    """Scores (0-1) into the 100 fixed fine bins."""
    idx = np.minimum((np.asarray(p, dtype=float) * SCORE_FINE_BINS).astype(np.int64), SCORE_FINE_BINS - 1)
    return np.bincount(np.maximum(idx, 0), minlength=SCORE_FINE_BINS)


def psi(expected: np.ndarray, actual: np.ndarray, alpha: float = PSI_ALPHA) -> float:
    """Population stability index, sum((a - e) * ln(a / e)) over bin shares (smoothed). NaN when
    either side is empty."""
    e, a = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
    if e.sum() == 0 or a.sum() == 0:
        return float("nan")
    k = len(e)
    pe, pa = (e + alpha) / (e.sum() + alpha * k), (a + alpha) / (a.sum() + alpha * k)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def quantiles(fine: np.ndarray, qs: Sequence[float]) -> list[float]:
    """Quantiles from the fine score histogram (linear within a 0.01 bin); NaN when empty."""
    fine = np.asarray(fine, dtype=float)
    total = fine.sum()
    if total == 0:
        return [float("nan")] * len(qs)
    cum = np.cumsum(fine)
    out = []
    for q in qs:
        target = q * total
        j = int(np.searchsorted(cum, target, side="left"))
        j = min(j, len(fine) - 1)
        before = cum[j - 1] if j else 0.0
        within = (target - before) / fine[j] if fine[j] else 0.0
        out.append(float((j + min(max(within, 0.0), 1.0)) / SCORE_FINE_BINS))
    return out


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.2
    missing_share_change: float = 0.15
    min_patients: int = 100


def drift_flags(drift: Mapping[str, Mapping[str, float]], t: DriftThresholds) -> dict[str, int]:
    """1 where a feature drifted (PSI or missing share beyond its threshold, with enough patients)."""
    out = {}
    for name, d in drift.items():
        enough = d["n"] >= t.min_patients
        moved = d["psi"] > t.psi or abs(d["missing_share"] - d["reference_missing_share"]) > t.missing_share_change
        out[name] = int(bool(enough and moved))
    return out


def compare(profile: Mapping[str, Any], window: np.ndarray, fine_scores: np.ndarray,
            thresholds: DriftThresholds) -> dict[str, Any]:
    """A window's counts (Binner layout) and fine score counts against the profile: per feature the
    bins, both counts, PSI, missing shares and drift flag; the score's PSI, quantiles and bins.
    What the service exports and the drift report renders."""
    binner = Binner(profile)
    drift = binner.drift(np.asarray(window, dtype=float))
    flags = drift_flags(drift, thresholds)
    reference = binner.reference_counts()
    features = {}
    for name, d in drift.items():
        sl = binner.slice(name)
        features[name] = {**d, "drift": flags[name], "bins": binner.labels(name),
                          "window_counts": np.asarray(window, dtype=float)[sl].tolist(),
                          "reference_counts": reference[sl].tolist()}
    ref_fine = profile.get("score", {}).get("fine_counts")
    score_psi = (psi(binner.coarse_scores(ref_fine), binner.coarse_scores(fine_scores))
                 if ref_fine is not None else None)
    qs = SCORE_QUANTILES
    return {"features": features, "score_psi": score_psi,
            "score_quantiles": {f"{q:g}": v for q, v in zip(qs, quantiles(fine_scores, qs))},
            "score_fine_counts": np.asarray(fine_scores, dtype=float).tolist(), "reference_score_fine_counts": ref_fine,
            "thresholds": {"psi": thresholds.psi, "missing_share_change": thresholds.missing_share_change,
                           "min_patients": thresholds.min_patients},
            "reference": {"n": profile.get("n"), **profile.get("source", {})}}
