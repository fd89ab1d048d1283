"""Golden checks: the number the service sells is the registered model's own number.

The expected side never touches `serving/`: it loads the registered version from the MLflow
registry (native XGBoost flavor: the pyfunc flavor of a classifier returns labels), encodes with
the contract's training-time encoder (`feature_store.encoding.encode`, as training does), and applies the
calibration logged with the model by its own few lines below. The served side is a real
`bentoml serve` over HTTP. Dropping or changing calibration, explanations or the model file in
serving makes these tests fail.
"""

from __future__ import annotations

from typing import Any, Iterator

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from feature_store import contract as c
from feature_store.encoding import encode
from training.settings import TrainSettings
from tests.service.conftest import Server, bento_server

pytestmark = pytest.mark.slow

DECIMALS = 4  # the API rounds probabilities and contributions to 4 decimals
TOL = 1e-6


# The session's model is trained on the full simulated record (fine features) with the default
# policy of required inputs.
FEATURES = [c.BY_NAME[name] for name in c.fine_feature_names()]
REQUIRED = set(TrainSettings().required_features)


def golden_patients() -> list[tuple[str, dict[str, Any]]]:
    """The contract's example patient, a required-inputs-only patient, every numeric input at its
    minimum and maximum (one at a time and all at once), every category and boolean value, and
    every optional input missing, one at a time. Derived from the contract, never listed by hand."""
    base = c.example_record()
    numeric = [f for f in FEATURES if f.kind in (c.Kind.NUMBER, c.Kind.INTEGER)]

    def bound(f: c.Feature, x: float) -> float | int:
        return int(x) if f.kind is c.Kind.INTEGER else float(x)

    cases: list[tuple[str, dict[str, Any]]] = [
        ("example", base),
        ("required inputs only", {f.name: base[f.name] for f in FEATURES if f.name in REQUIRED}),
        ("every number at its minimum", {**base, **{f.name: bound(f, f.minimum) for f in numeric}}),
        ("every number at its maximum", {**base, **{f.name: bound(f, f.maximum) for f in numeric}}),
    ]
    for f in FEATURES:
        if f in numeric:
            cases += [(f"{f.name}=min", {**base, f.name: bound(f, f.minimum)}),
                      (f"{f.name}=max", {**base, f.name: bound(f, f.maximum)})]
        elif f.kind is c.Kind.BOOLEAN:
            cases += [(f"{f.name}={v}", {**base, f.name: v}) for v in (True, False)]
        else:
            cases += [(f"{f.name}={v}", {**base, f.name: v}) for v in f.categories]
        if f.name not in REQUIRED:
            cases.append((f"{f.name} missing", {k: v for k, v in base.items() if k != f.name}))
    return cases


CASES = golden_patients()


def calibrate(raw: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """The logged calibration map, applied here on purpose without the project's helper."""
    if spec["method"] == "isotonic":
        return np.interp(raw, spec["x"], spec["y"])
    if spec["method"] == "sigmoid":
        p = np.clip(raw, 1e-6, 1 - 1e-6)
        return 1.0 / (1.0 + np.exp(-(spec["a"] * np.log(p / (1 - p)) + spec["b"])))
    assert spec["method"] == "none", spec
    return raw


def served_is(served: float, golden: float) -> bool:
    """The unrounded served value agrees with golden to TOL: the served number is golden rounded
    to DECIMALS (or its neighbour, only when golden lies within TOL of a rounding boundary)."""
    golden = float(golden)
    return any(abs(served - round(g, DECIMALS)) < 1e-12 for g in (golden - TOL, golden, golden + TOL))


class Golden:
    """What the registered version itself says for CASES."""

    def __init__(self, tracking_uri: str, name: str, version: str):
        mlflow.set_tracking_uri(tracking_uri)
        uri = f"models:/{name}/{version}"
        classifier = mlflow.xgboost.load_model(uri)
        meta = mlflow.models.get_model_info(uri).metadata
        self.features: list[str] = meta["features"]
        X = encode(pd.DataFrame.from_records([p for _, p in CASES]), self.features)[meta["columns"]]
        self.raw = classifier.predict_proba(X)[:, 1].astype("float64")  # numpy 2 keeps float32 otherwise
        self.probability = calibrate(self.raw, meta["calibration"])
        booster = classifier.get_booster()
        dm = xgb.DMatrix(X, missing=np.nan)
        self.margin = booster.predict(dm, output_margin=True).astype("float64")
        contribs = booster.predict(dm, pred_contribs=True).astype("float64")
        self.bias = contribs[:, -1]
        owner = c.column_owner()
        per_feature = pd.DataFrame(contribs[:, :-1], columns=list(X.columns)).T.groupby(
            lambda col: owner[col], sort=False).sum().T
        self.contributions = per_feature.reindex(columns=self.features, fill_value=0.0)
        self.calibration = meta["calibration"]["method"]


@pytest.fixture(scope="module")
def explaining_server(imported, tmp_path_factory) -> Iterator[Server]:
    """The session's model, explaining every feature (not just the top 5), so the served
    contributions can be summed."""
    model, _ = imported
    with bento_server(tmp_path_factory.mktemp("golden"), str(model.tag),
                      PVERISK_SERVE_TOP_FACTORS=str(len(FEATURES))) as s:
        yield s


@pytest.fixture(scope="module")
def served(explaining_server) -> list[dict[str, Any]]:
    out = []
    with httpx.Client(timeout=30) as client:
        for label, patient in CASES:
            r = client.post(f"{explaining_server.url}/v1/predict", json=patient)
            assert r.status_code == 200, (label, r.text)
            out.append(r.json())
    return out


@pytest.fixture(scope="module")
def golden(trained, served) -> Golden:
    _, tracking = trained
    model = served[0]["model"]
    # The version the service says it serves, fetched from the registry, not from the BentoML copy.
    return Golden(tracking.tracking_uri, model["name"], model["version"])


def test_the_patients_cover_edges_and_missing_inputs(served):
    missing = {label: r["missing_inputs"] for (label, _), r in zip(CASES, served)}
    assert len(missing["required inputs only"]) == len(FEATURES) - len(REQUIRED)
    assert all(f"{f.name}" in missing[f"{f.name} missing"] for f in FEATURES if f.name not in REQUIRED)


def test_served_probability_is_the_registered_model_plus_logged_calibration(served, golden):
    assert golden.calibration in ("isotonic", "sigmoid")  # a calibrated model: dropping it shows
    wrong = [(label, r["probability"], round(float(g), 6))
             for (label, _), r, g in zip(CASES, served, golden.probability) if not served_is(r["probability"], g)]
    assert not wrong, f"served vs registered model + calibration (label, served, golden): {wrong}"


def test_batch_serves_the_same_golden_numbers(explaining_server, golden):
    r = httpx.post(f"{explaining_server.url}/v1/predict/batch", json={"patients": [p for _, p in CASES]}, timeout=60)
    assert r.status_code == 200, r.text
    probs = [x["probability"] for x in r.json()["results"]]
    wrong = [(label, s, round(float(g), 6)) for (label, _), s, g in zip(CASES, probs, golden.probability)
             if not served_is(s, g)]
    assert not wrong, wrong


def test_explanations_are_the_models_contributions_and_sum_to_its_margin(served, golden):
    half_step = 0.5 * 10 ** -DECIMALS
    for i, ((label, _), r) in enumerate(zip(CASES, served)):
        factors = {f["feature"]: f["contribution_log_odds"] for f in r["top_factors"]}
        expected = golden.contributions.iloc[i]
        for name in golden.features:
            # each served contribution is the registered model's (SHAP) contribution of that feature;
            # a feature left out is one whose contribution rounds to zero
            assert served_is(factors.get(name, 0.0), float(expected[name])), (label, name, factors.get(name),
                                                                              float(expected[name]))
        # the golden contributions themselves add up to the model's margin (XGBoost's invariant) ...
        assert expected.sum() + golden.bias[i] == pytest.approx(golden.margin[i], abs=1e-4)
        # ... and so do the served ones, up to their rounding
        assert sum(factors.values()) + golden.bias[i] == pytest.approx(
            golden.margin[i], abs=len(golden.features) * half_step + 1e-4), label
