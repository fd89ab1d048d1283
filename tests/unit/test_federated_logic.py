"""The coordinator's and the site's federated logic without Flower: the union of inputs, the federated Platt
fit (equal to the pooled fit), what an invalid site tells the run, required inputs, the run's config."""

from __future__ import annotations

import json

import numpy as np
import pytest
import statsmodels.api as sm

from feature_store.validate import Problem
from training import federated_run as fr
from training.federated_site import invalid_summary
from training.federated_tracking import required_inputs


def _summary(site, features):
    return {"site": site, "status": "ok", "features": {f: {"recorded": 10, "distinct": 2} for f in features}}


def test_the_federated_model_uses_the_union_of_what_sites_recorded():
    features, by = fr.choose_features([_summary("A", ["age_years", "n_liver_metastases", "multiple_liver_metastases"]),
                                       _summary("B", ["age_years", "multiple_liver_metastases", "ras_status"])])
    assert features == ["age_years", "ras_status", "n_liver_metastases", "multiple_liver_metastases"]
    assert by["ras_status"] == ["B"] and by["age_years"] == ["A", "B"]
    # a coarse form some site kept instead of the count is required in its place (either form satisfies it)
    assert "multiple_liver_metastases" in required_inputs(features) and "n_liver_metastases" not in required_inputs(features)


def test_the_sites_summed_gradients_give_the_pooled_platt_fit():
    rng = np.random.default_rng(2)
    sites = []
    for n in (40, 120, 300):
        raw = rng.uniform(0.05, 0.9, n)
        lp = np.log(raw / (1 - raw))
        y = (rng.random(n) < 1 / (1 + np.exp(-(0.4 + 0.7 * lp)))).astype(int)
        sites.append((lp, y))
    a, b = 1.0, 0.0
    for _ in range(10):
        stats = []
        for lp, y in sites:
            q = 1 / (1 + np.exp(-(b + a * lp)))
            w, r = q * (1 - q), y - q
            stats.append({"g_b": r.sum(), "g_a": (r * lp).sum(), "h_bb": w.sum(), "h_ab": (w * lp).sum(),
                          "h_aa": (w * lp * lp).sum()})
        a, b, step = fr.newton_platt(stats, a, b)
    lp = np.concatenate([s[0] for s in sites])
    y = np.concatenate([s[1] for s in sites])
    pooled = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit(tol=1e-12)  # all patients in one place
    assert a == pytest.approx(pooled.params[1], rel=1e-6) and b == pytest.approx(pooled.params[0], abs=1e-6)


def test_an_invalid_site_tells_the_run_counts_and_columns_never_rows_or_values():
    problems = [Problem(4, "age_years", "150", "outside the allowed range 18 to 100 years"),
                Problem(9, "sflr_percent", "99", "outside the allowed range 5 to 80 %")]
    text = json.dumps(invalid_summary("X", problems))
    assert '"problems": 2' in text and "age_years" in text and "150" not in text and '"rows": 2' in text
    assert "99" not in text


def test_the_run_config_is_checked():
    cfg = fr.FederatedConfig.from_run_config({"rounds": 5, "strategy": "cyclic", "tracking-uri": "", "nonsense": 1})
    assert cfg.rounds == 5 and cfg.strategy == "cyclic" and cfg.tracking_uri is None
    assert (cfg.learning_rate, cfg.local_rounds) == (0.02, 5)  # the measured defaults
    bagging = fr.FederatedConfig.from_run_config({"strategy": "bagging"})
    assert (bagging.learning_rate, bagging.local_rounds) == (0.3, 1)
    assert fr.FederatedConfig.from_run_config({"local-rounds": 2, "learning-rate": 0.1}).local_rounds == 2
    with pytest.raises(ValueError, match="strategy"):
        fr.FederatedConfig.from_run_config({"strategy": "fedavg"})


def test_each_site_moves_the_model_by_its_share_of_patients():
    sizes = [400, 100, 12]
    bagging = [fr.site_learning_rate(0.3, n, sum(sizes), 3, True) for n in sizes]
    assert sum(bagging) == pytest.approx(0.3) and bagging[0] == pytest.approx(0.3 * 400 / 512)
    cyclic = [fr.site_learning_rate(0.3, n, sum(sizes), 3, False) for n in sizes]
    assert np.mean(cyclic) == pytest.approx(0.3) and cyclic[2] < cyclic[1] < cyclic[0]


def test_the_kept_size_is_the_lowest_summed_validation_loss(tmp_path):
    """Each site's loss curve is the log-loss of the model's prefixes on its calibration patients (the same
    number scikit-learn gives); the coordinator keeps the fewest trees with the lowest sum: an overfitted
    model is cut back."""
    from sklearn.metrics import log_loss

    from feature_store.simulate import simulate_cohort
    from training import federated_site as fs

    sites = []
    for i, n in enumerate((300, 160)):
        path = tmp_path / f"site{i}.parquet"
        simulate_cohort(n, seed=30 + i).to_parquet(path)
        assert fs.prepare_site(path, f"site-{i}", tmp_path / f"cache{i}")["status"] == "ok"
        sites.append(fs.SiteData(tmp_path / f"cache{i}"))
    columns = ["age_years", "n_liver_metastases", "largest_metastasis_cm", "cea_ng_ml"]
    columns = [c for c in columns if c in sites[0].columns]
    params = {"objective": "binary:logistic", "eta": 0.5, "max_depth": 6, "min_child_weight": 0, "nthread": 1}
    model, _ = fs.boost(sites[0], b"", columns, params, 60, False)  # far too many deep trees for 180 patients
    sizes = [5, 10, 20, 40, 60]
    curves = [fs.loss_curve(s, model, columns, sizes) for s in sites]
    raw, y = fs.raw_risk(sites[1], model, columns, fs.CALIBRATION)
    assert curves[1]["loss-60"] == pytest.approx(log_loss(y, raw, labels=[0, 1]) * len(y), rel=1e-4)
    assert curves[1]["n"] == len(y)
    summed = {k: sum(c[f"loss-{k}"] for c in curves) for k in sizes}
    kept = fr.trees_to_keep(summed)
    assert summed[kept] == min(summed.values()) and kept < 60
    assert fr.trees_to_keep({5: 1.0, 10: 1.0, 20: 2.0}) == 5  # a tie keeps the smaller model
