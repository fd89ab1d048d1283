"""`pverisk validate`: a registered model carried to a new 25-patient centre: figures with intervals under the
centre's own design, a plain small-sample warning, the update chosen by closed testing, and the updated
model registered as a new version tagged with the centre (never champion), its card validated there."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from feature_store import contract as c
from feature_store.centres import centre_cohort, draw_centres
from feature_store.simulate import simulate_cohort
from feature_store.study import write_with_design
from pverisk.cli import app
from tests.conftest import fast_settings, local_tracking
from training.pipeline import run_training

pytestmark = pytest.mark.slow
NAME = "pve-progression-risk"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate")
    path = root / "train.parquet"
    simulate_cohort(600, seed=41).to_parquet(path, index=False)
    tracking = local_tracking(root)
    result = run_training(path, settings=fast_settings(), tracking=tracking)
    centre = draw_centres(1, seed=7, sizes=[25])[0]
    new = root / "new-centre.parquet"
    write_with_design(centre_cohort(centre).drop(columns=[c.CENTRE]), new,
                      centre.design().model_copy(update={"site": "Hospital Z"}), {"simulated": True})
    env = {"PVERISK_TRACKING_URI": tracking.tracking_uri, "PVERISK_ARTIFACT_ROOT": str(tracking.artifact_root),
           "PVERISK_TRAIN_N_BOOTSTRAP": "100"}
    yield {"root": root, "result": result, "tracking": tracking, "new": new, "env": env}
    mlflow.set_tracking_uri(tracking.tracking_uri)


def test_validate_reports_with_intervals_warns_and_registers_the_update_for_the_centre(store):
    res = CliRunner().invoke(app, ["validate", "--data", str(store["new"]), "--model-version",
                                   store["result"].version], env=store["env"])
    out = " ".join(res.stdout.split())
    assert res.exit_code == 0, (res.output, res.exception)
    assert "Hospital Z: 25 patients" in out and "warning: Small validation cohort: 25 patients" in out
    assert "site: Hospital Z" in out and "closed testing (Vergouwe et al. 2017)" in out
    assert "updating method: " in out and "Refit not considered" in out
    client = MlflowClient(store["tracking"].tracking_uri)
    versions = {str(v.version): v for v in client.search_model_versions(f"name='{NAME}'")}
    new = versions[str(int(store["result"].version) + 1)]
    assert new.tags["centre"] == "Hospital Z" and new.tags["parent_version"] == store["result"].version
    assert new.tags["data_kind"] == "simulated" and new.tags["gate_decision"] in ("centre-hospital-z-candidate", "centre-hospital-z")
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert str(champion.version) != str(new.version)  # an update for one centre never becomes champion
    aliases = client.get_registered_model(NAME).aliases
    assert aliases.get("candidate") != str(new.version)  # nor the general candidate (trial: it took that alias)
    mlflow.set_tracking_uri(store["tracking"].tracking_uri)
    card = mlflow.artifacts.load_dict(f"runs:/{new.run_id}/model_card/model_card.json")
    entry = card["validated_at"][-1]
    assert entry["centre"] == "Hospital Z" and entry["n"] == 25 and entry["method"] in out
    assert entry["before"]["auroc_ci_low"] < entry["before"]["auroc"] < entry["before"]["auroc_ci_high"]
    assert "## Validated at Hospital Z" in mlflow.artifacts.load_text(f"runs:/{new.run_id}/model_card/model_card.md")
    meta = mlflow.models.get_model_info(f"models:/{NAME}/{new.version}").metadata
    assert meta["validated_at"] == "Hospital Z" and meta["updating_method"] == entry["method"]
    assert ("recalibration" in meta["calibration"]) == (entry["method"] in ("recalibration in the large",
                                                                             "logistic recalibration"))
    files = {f.path for f in client.list_artifacts(new.run_id, "plots")}
    assert {"plots/calibration.png", "plots/decision_curve.png"} <= files


def test_validate_refuses_an_invalid_file_and_writes_nothing(store, tmp_path):
    df = simulate_cohort(25, seed=3)
    df.loc[2, "age_years"] = 150
    bad = tmp_path / "bad.parquet"
    df.to_parquet(bad, index=False)
    client = MlflowClient(store["tracking"].tracking_uri)
    before = len(client.search_model_versions(f"name='{NAME}'"))
    res = CliRunner().invoke(app, ["validate", "--data", str(bad)], env=store["env"])
    assert res.exit_code == 1 and "age_years" in res.stderr and "nothing was written" in " ".join(res.stderr.split())
    assert len(client.search_model_versions(f"name='{NAME}'")) == before
