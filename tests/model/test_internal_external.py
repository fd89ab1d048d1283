"""Internal-external cross-validation: a cohort with a centre column is also validated one centre left out
at a time; per-centre figures, random-effects pooling, the forest plot in MLflow and on the card, and the
centres too small for a figure listed, never dropped."""

from __future__ import annotations

import mlflow
import pytest

from feature_store import contract as c
from feature_store.centres import simulate_centres, write_centres
from tests.conftest import fast_settings, local_tracking
from training.pipeline import run_training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def multi_centre_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("iecv")
    pooled, centres = simulate_centres(4, seed=3, sizes=[220, 160, 110, 14])
    path = root / "centres.parquet"
    write_centres(pooled, centres, path)
    tracking = local_tracking(root)
    # 4 events and non-events for a figure: the 14-patient centre (3 events) is too small
    result = run_training(path, settings=fast_settings(centre_min_events=4), tracking=tracking)
    return pooled, result, tracking


def test_each_centre_is_predicted_by_the_others_and_pooled(multi_centre_run):
    pooled, result, _ = multi_centre_run
    block = result.card["internal_external_validation"]
    assert [r["centre"] for r in block["centres"]] == sorted(pooled[c.CENTRE].unique())
    assert [r["n"] for r in block["centres"]] == [220, 160, 110, 14]
    auroc = block["pooled"]["AUROC"]
    assert auroc["k"] == 3 and auroc["ci_low"] < auroc["estimate"] < auroc["ci_high"]
    assert auroc["pi_low"] <= auroc["ci_low"] and auroc["pi_high"] >= auroc["ci_high"] and auroc["tau2"] >= 0
    assert block["too_small"] == [{"centre": "centre-04", "reason": block["centres"][3]["too_small"]}]
    assert "3 events" in block["centres"][3]["too_small"]
    assert block["centres"][0]["study_design"]["site"] == "simulated centre-01"  # each centre's own design


def test_the_forest_plot_and_pooled_figures_are_in_mlflow_and_on_the_card(multi_centre_run):
    _, result, tracking = multi_centre_run
    client = mlflow.tracking.MlflowClient(tracking.tracking_uri)
    files = {f.path for f in client.list_artifacts(result.run_id, "plots")}
    assert "plots/forest.png" in files
    metrics = client.get_run(result.run_id).data.metrics
    assert metrics["iecv_auroc_k"] == 3 and "iecv_calibration_slope_pi_low" in metrics
    from training.model_card import card_markdown

    md = card_markdown(result.card)
    assert "## Internal-external validation" in md and "centre-04: " in md and "prediction interval" in md
