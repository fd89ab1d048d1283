"""Training against a real `mlflow server` on 127.0.0.1 works unchanged."""

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from feature_store import contract as c
from tests.conftest import fast_settings
from tests.servers import mlflow_server
from training.pipeline import run_training
from training.settings import TrackingSettings

pytestmark = pytest.mark.slow


def test_train_against_remote_tracking_server(tmp_path, cohort_file):
    with mlflow_server(tmp_path) as url:
        tracking = TrackingSettings(tracking_uri=url)
        result = run_training(cohort_file, settings=fast_settings(), tracking=tracking)
        client = MlflowClient(url)
        mv = client.get_model_version_by_alias(tracking.registered_model, "champion")
        assert str(mv.version) == result.version and mv.tags["data_kind"] == "simulated"
        # artifacts went through the server's proxy, not to a local folder
        assert not (tmp_path / "artifacts").exists()
        card = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/model_card/model_card.json")
        assert card["data"]["simulated"] is True
        mlflow.set_tracking_uri(url)
        info = mlflow.models.get_model_info(f"models:/{tracking.registered_model}@champion")
        assert info.signature.inputs.input_names() == c.model_columns()
    assert list((tmp_path / "art").rglob("MLmodel")), "the server stored the model artifacts"
