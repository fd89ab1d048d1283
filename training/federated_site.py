"""A hospital's side of federated training, without Flower: its file validated against the contract (the
same messages as `pverisk train`), prepared once into a local cache, and the three things the coordinator
may ask of it - boost trees on its own patients, give the calibration likelihood's gradient, report its
held-out figures. Only model updates (trees) and aggregates (sums, counts, a per-site row of figures) are
returned; no row, value or identifier leaves the site.

The cache (a directory on the site's machine) holds the encoded model matrix of every contract feature the
site recorded (coarse forms derived from fine values by the contract's rules), the outcomes, each patient's
split (boosting / calibration / held-out test, drawn from a hash of the patient, so it is the same in every
run), and a JSON summary. Flower's ClientApp (training/federated_client.py) reads it with numpy and XGBoost
only, so each message costs little start-up.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

TEST_SHARE = 0.25  # held out at each site for its own evaluation (pooled across sites)
CALIBRATION_SHARE = 0.15  # for the federated (Platt) recalibration of the boosted model
BOOST, CALIBRATION, TEST = 0, 1, 2
SUMMARY = "site.json"
MATRIX = "site.npz"


def prepare_site(data: Path, site: str, cache: Path) -> dict[str, Any]:
    """Validate `data` against the contract and write the cache. Returns the summary; an invalid file gives a
    summary with status "invalid" and the problems (listed in full by the caller, locally), and no matrix."""
    from feature_store import contract as c
    from feature_store.coarse import derive_coarse
    from feature_store.columns import column_values
    from feature_store.encoding import encode_array
    from feature_store.validate import CohortValidationError
    from training.data import load_cohort

    cache.mkdir(parents=True, exist_ok=True)
    try:
        cohort = load_cohort(data)
    except CohortValidationError as exc:
        return _write_summary(cache, invalid_summary(site, exc.problems))
    except ValueError as exc:
        return _write_summary(cache, {"site": site, "status": "invalid", "problems": 1, "rows": 0,
                                      "columns": [], "summary": str(exc)[:300]})
    frame = cohort.frame
    names = c.feature_names()
    filled, _ = derive_coarse(frame, [f.name for f in c.features() if f.coarse])
    recorded = [n for n in names if n in frame.columns or (c.BY_NAME[n].coarse and n in filled)]
    X = encode_array(filled, recorded).astype("float64")
    columns = c.model_columns(recorded)
    y = frame[c.OUTCOME].to_numpy(int)
    split = split_of(frame[c.PATIENT_ID].astype(str).tolist())
    stats = {}
    for name in recorded:
        values, missing = column_values(filled, name, len(frame))
        present = {str(v) for v in np.asarray(values, dtype=object)[~missing]}
        stats[name] = {"recorded": int((~missing).sum()), "distinct": min(len(present), 3)}
    np.savez(cache / MATRIX, X=X, y=y, split=split, columns=np.array(columns))
    summary = {
        "site": site, "status": "ok", "n": int(len(y)), "events": int(y.sum()), "kind": cohort.kind,
        "dataset": cohort.name, "digest": cohort.digest, "study_design": cohort.design.stated() if cohort.design else None,
        "not_collected": list(cohort.not_collected), "features": stats,
        "splits": {name: {"n": int((split == k).sum()), "events": int(y[split == k].sum())}
                   for k, name in ((BOOST, "boost"), (CALIBRATION, "calibration"), (TEST, "test"))},
    }
    return _write_summary(cache, summary)


def invalid_summary(site: str, problems: list[Any]) -> dict[str, Any]:
    """What an invalid site tells the run: counts and the columns with their rules, never rows or values."""
    by_column: dict[str, set[str]] = {}
    for p in problems:
        by_column.setdefault(p.column, set()).add(p.rule.split(";")[0])
    rows = {p.row for p in problems if p.row is not None}
    text = "; ".join(f"{col}: {', '.join(sorted(rules))}" for col, rules in sorted(by_column.items()))
    return {"site": site, "status": "invalid", "problems": len(problems), "rows": len(rows),
            "columns": sorted(by_column), "summary": text[:1000]}


def split_of(patient_ids: list[str]) -> np.ndarray:
    """Boosting / calibration / test from a hash of each patient's id (stable across runs, so the held-out
    patients of one federated version are held out of the next too; the hash never leaves the site)."""
    u = np.array([int(hashlib.sha256(f"pverisk-split:{k}".encode()).hexdigest()[:12], 16) / 16 ** 12
                  for k in patient_ids])
    # small sites keep the split as drawn: a part without both outcomes is listed as too small, never forced
    return np.where(u < TEST_SHARE, TEST, np.where(u < TEST_SHARE + CALIBRATION_SHARE, CALIBRATION, BOOST))


def _write_summary(cache: Path, summary: dict[str, Any]) -> dict[str, Any]:
    (cache / SUMMARY).write_text(json.dumps(summary, default=str))
    return summary


def read_summary(cache: Path) -> dict[str, Any]:
    return json.loads((Path(cache) / SUMMARY).read_text())


class SiteData:
    """The cache, loaded for one message (numpy only)."""

    def __init__(self, cache: Path):
        self.summary = read_summary(cache)
        data = np.load(Path(cache) / MATRIX)
        self.X, self.y, self.split = data["X"], data["y"], data["split"]
        self.columns = [str(x) for x in data["columns"]]

    def matrix(self, columns: list[str], part: int) -> tuple[np.ndarray, np.ndarray]:
        """The model's columns for one split; columns the site did not record are missing (NaN)."""
        m = self.split == part
        idx = {name: i for i, name in enumerate(self.columns)}
        X = np.full((int(m.sum()), len(columns)), np.nan)
        for j, name in enumerate(columns):
            if name in idx:
                X[:, j] = self.X[m, idx[name]]
        return X, self.y[m]


def site_learning_rate(learning_rate: float, n_site: int, n_total: int, n_sites: int, bagging: bool) -> float:
    """A site's share of the round's step, by its number of patients: bagging sums one tree per site, so the
    sum is a patient-weighted average step (equal shares would let a 12-patient site move the model as much as
    a 400-patient one); cyclic gives each site its turn with the same weighting about the average."""
    share = n_site / max(n_total, 1)
    return learning_rate * share * (1 if bagging else n_sites)


def _booster(model: bytes, params: dict[str, Any]) -> Any:
    import xgboost as xgb

    bst = xgb.Booster(params=params)
    if model:
        bst.load_model(bytearray(model))
    return bst


def boost(site: SiteData, model: bytes, columns: list[str], params: dict[str, Any], local_rounds: int,
          return_new_only: bool) -> tuple[bytes, int]:
    """Trees boosted on this site's boosting patients on top of the global model. Bagging returns only the
    new trees (Flower's FedXgbBagging appends them); cyclic returns the whole model."""
    import xgboost as xgb

    X, y = site.matrix(columns, BOOST)
    dtrain = xgb.DMatrix(X, label=y, missing=np.nan, feature_names=columns)
    if not model:
        bst = xgb.train(params, dtrain, num_boost_round=local_rounds)
    else:
        bst = _booster(model, params)
        for _ in range(local_rounds):
            bst.update(dtrain, bst.num_boosted_rounds())
        if return_new_only:
            bst = bst[bst.num_boosted_rounds() - local_rounds: bst.num_boosted_rounds()]
    return bytes(bst.save_raw("json")), int(len(y))


def raw_risk(site: SiteData, model: bytes, columns: list[str], part: int) -> tuple[np.ndarray, np.ndarray]:
    import xgboost as xgb

    X, y = site.matrix(columns, part)
    bst = _booster(model, {})
    return bst.predict(xgb.DMatrix(X, missing=np.nan, feature_names=columns)), y


def loss_curve(site: SiteData, model: bytes, columns: list[str], sizes: list[int]) -> dict[str, float]:
    """The summed log-loss of the model's first k trees on this site's calibration patients, for each k in
    `sizes`: one number per size and a count (aggregates only), from which the coordinator picks the number of
    trees to keep (early stopping on the sites' pooled validation loss)."""
    import xgboost as xgb

    X, y = site.matrix(columns, CALIBRATION)
    out = {"n": float(len(y))}
    if not len(y):
        return out
    bst = _booster(model, {})
    d = xgb.DMatrix(X, missing=np.nan, feature_names=columns)
    for k in sizes:
        margin = bst.predict(d, iteration_range=(0, k), output_margin=True).astype("float64")
        out[f"loss-{k}"] = float(np.sum(np.logaddexp(0, margin) - y * margin))  # -log-likelihood, stable form
    return out


def calibration_step(site: SiteData, model: bytes, columns: list[str], a: float, b: float) -> dict[str, float]:
    """Gradient and Hessian of the Platt log-likelihood (y ~ b + a logit raw) at (a, b) over this site's
    calibration patients: five sums and a count."""
    raw, y = raw_risk(site, model, columns, CALIBRATION)
    lp = np.log(np.clip(raw, 1e-6, 1 - 1e-6) / (1 - np.clip(raw, 1e-6, 1 - 1e-6)))
    q = 1 / (1 + np.exp(-(b + a * lp)))
    w = q * (1 - q)
    r = y - q
    return {"g_b": float(r.sum()), "g_a": float((r * lp).sum()), "h_bb": float(w.sum()), "h_ab": float((w * lp).sum()),
            "h_aa": float((w * lp * lp).sum()), "n": float(len(y)), "loglik": float(
                np.sum(y * np.log(np.clip(q, 1e-12, 1)) + (1 - y) * np.log(np.clip(1 - q, 1e-12, 1))))}


def evaluate_site(site: SiteData, model: bytes, columns: list[str], calibration: dict[str, Any],
                  min_events: int) -> dict[str, Any]:
    """This site's row of figures on its held-out patients (aggregates only)."""
    from model_runtime.calibration import apply_calibration
    from training.centre_metrics import centre_row

    raw, y = raw_risk(site, model, columns, TEST)
    p = apply_calibration(raw, calibration)
    return centre_row(site.summary["site"], y, p, min_events)
