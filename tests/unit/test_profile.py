"""Reference profiles, binning, PSI, quantiles, drift flags and live performance (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest

from feature_store import contract as c
from feature_store.encoding import encode_array, encode_record
from monitoring import profile as pr
from feature_store.simulate import simulate_cohort
from monitoring.rejections import rejected_fields
from monitoring.windows import Window
from monitoring.outcomes import auroc, performance

FEATURES = c.fine_feature_names()


@pytest.fixture(scope="module")
def reference():
    frame = simulate_cohort(1000, seed=1)
    return pr.build_profile(encode_array(frame, FEATURES), FEATURES, np.linspace(0.05, 0.6, 1000))


def test_profile_counts_every_patient_once_per_feature(reference):
    for name, entry in reference["features"].items():
        assert sum(entry["counts"]) + entry["missing"] == 1000, name
        assert len(entry["counts"]) == len(entry["labels"])
    assert reference["features"]["ras_status"]["labels"] == ["wild_type", "mutant"]  # "unknown" is missing
    assert reference["features"]["chemo_response"]["labels"] == list(c.BY_NAME["chemo_response"].categories)
    assert sum(reference["score"]["fine_counts"]) == 1000


def test_binning_agrees_row_by_row_and_in_bulk(reference):
    b = pr.Binner(reference)
    frame = simulate_cohort(50, seed=2)
    bulk = b.counts(encode_array(frame, FEATURES))
    one_by_one = sum(b.counts(encode_record(r, FEATURES)) for r in frame[FEATURES].to_dict("records"))
    assert np.array_equal(bulk, one_by_one)
    # a value on a bin edge goes to the bin it closes; above the top edge to the last bin
    age = reference["features"]["age_years"]
    X = encode_array({"age_years": [age["edges"][0], 1000.0, None]}, FEATURES)
    counts = b.counts(X)[b.slice("age_years")]
    assert counts[0] == 1 and counts[-2] == 1 and counts[-1] == 1


def test_psi_is_zero_on_the_reference_and_grows_with_the_shift():
    ref = np.array([100, 200, 300, 400])
    assert pr.psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert pr.psi(ref, ref * 3) == pytest.approx(0.0, abs=1e-3)  # shares, not counts
    small, big = pr.psi(ref, np.array([150, 200, 300, 350])), pr.psi(ref, np.array([400, 300, 200, 100]))
    assert 0 < small < 0.1 < big
    assert np.isnan(pr.psi(ref, np.zeros(4)))


def test_fresh_sample_passes_and_shift_is_flagged(reference):
    b = pr.Binner(reference)
    t = pr.DriftThresholds()
    fresh = simulate_cohort(500, seed=3)
    assert pr.drift_flags(b.drift(b.counts(encode_array(fresh, FEATURES))), t) == {f: 0 for f in FEATURES}
    older = fresh.assign(age_years=np.clip(fresh["age_years"] + 12, 18, 100))
    flags = pr.drift_flags(b.drift(b.counts(encode_array(older, FEATURES))), t)
    assert {f for f, v in flags.items() if v} == {"age_years"}
    # a field that stops arriving: flagged through the missing share
    gone = fresh.assign(cea_ng_ml=np.nan)
    d = b.drift(b.counts(encode_array(gone, FEATURES)))
    assert d["cea_ng_ml"]["missing_share"] == 1.0 and pr.drift_flags(d, t)["cea_ng_ml"] == 1
    # too few patients: never flagged, however shifted
    few = b.drift(b.counts(encode_array(older.iloc[:50], FEATURES)))
    assert few["age_years"]["psi"] > t.psi and pr.drift_flags(few, t)["age_years"] == 0


def test_score_quantiles_within_a_bin():
    p = np.random.default_rng(0).beta(2, 5, 20_000)
    got = pr.quantiles(pr.score_counts(p), (0.1, 0.5, 0.9))
    assert np.allclose(got, np.quantile(p, (0.1, 0.5, 0.9)), atol=0.01)
    assert all(np.isnan(pr.quantiles(np.zeros(100), (0.5,))))


def test_window_forgets_old_slots():
    w = Window(size=2, seconds=60, slots=6)
    w.add(np.array([1.0, 0.0]), now=1000.0)
    w.add(np.array([0.0, 2.0]), now=1030.0)
    assert w.total(1030.0).tolist() == [1.0, 2.0]
    assert w.total(1065.0).tolist() == [0.0, 2.0]  # the first slot is older than 60 s
    assert w.total(1200.0).tolist() == [0.0, 0.0]


def test_auroc_and_performance_match_sklearn():
    from sklearn.metrics import brier_score_loss, roc_auc_score

    rng = np.random.default_rng(1)
    p = np.round(rng.random(400), 2)  # ties
    y = (rng.random(400) < p).astype(float)
    assert auroc(p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    perf = performance(p, y)
    assert perf["brier"] == pytest.approx(brier_score_loss(y, p))
    assert perf["calibration_in_the_large"] == pytest.approx(y.mean() - p.mean())
    assert np.isnan(auroc(p, np.ones(400)))


def test_rejected_fields_from_our_400_bodies():
    assert rejected_fields(400, b'{"error": "x", "detail": [{"loc": ["age_years"], "msg": "m"}]}') == ["age_years"]
    assert rejected_fields(400, b'{"error": "x", "detail": [{"field": "multiple_liver_metastases"}]}') == [
        "multiple_liver_metastases"]
    body = b'{"invalid": [{"index": 1, "errors": [{"field": "sex", "problem": "p"}, {"field": "inr", "problem": "q"}]}]}'
    assert rejected_fields(400, body) == ["sex", "inr"]
    assert rejected_fields(400, b"not json") == ["body"]
    assert rejected_fields(200, b"{}") == []
