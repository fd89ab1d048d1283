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
    assert cfg.rounds == 5 and cfg.strategy == "cyclic" and cfg.tracking_uri is None and cfg.learning_rate == 0.1
    assert fr.FederatedConfig.from_run_config({"strategy": "bagging"}).learning_rate == 0.3
    with pytest.raises(ValueError, match="strategy"):
        fr.FederatedConfig.from_run_config({"strategy": "fedavg"})


def test_each_site_moves_the_model_by_its_share_of_patients():
    sizes = [400, 100, 12]
    bagging = [fr.site_learning_rate(0.3, n, sum(sizes), 3, True) for n in sizes]
    assert sum(bagging) == pytest.approx(0.3) and bagging[0] == pytest.approx(0.3 * 400 / 512)
    cyclic = [fr.site_learning_rate(0.3, n, sum(sizes), 3, False) for n in sizes]
    assert np.mean(cyclic) == pytest.approx(0.3) and cyclic[2] < cyclic[1] < cyclic[0]
