"""The README's main job end to end: simulate, train, register, import, serve, predict."""

import json
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from feature_store.settings import project_root
from tests.servers import free_port, offline_env

pytestmark = pytest.mark.slow


def test_demo_trains_registers_imports_serves_and_predicts(tmp_path):
    port = free_port()
    env = offline_env(PVERISK_ROOT=str(tmp_path), BENTOML_HOME=str(tmp_path / "bentoml_home"))
    for var in ("MLFLOW_TRACKING_URI", "PVERISK_TRACKING_URI", "PVERISK_SERVE_MODEL_TAG"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-m", "pverisk", "demo", "--patients", "600", "--port", str(port),
                           "--no-keep-serving"], cwd=project_root(), env=env, capture_output=True, text=True,
                          timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    # 600 patients: the gate may or may not make v1 champion; the demo serves v1 either way and says which
    decision = client.get_model_version("pve-progression-risk", "1").tags["gate_decision"]
    assert "(SIMULATED)" in out and f"-> {decision}" in out
    assert f"curl -s -X POST http://127.0.0.1:{port}/v1/predict" in out
    after = out.split("# its answer:")[1]
    answer, _ = json.JSONDecoder().raw_decode(after[after.index("{"):])
    assert 0 <= answer["probability"] <= 1 and answer["data_kind"] == "simulated"
    assert answer["model"]["alias"] == decision and answer["model"]["version"] == "1"
    # by patient id, from the online feature store the demo filled
    assert f"curl -s -X POST http://127.0.0.1:{port}/v1/predict -H 'content-type: application/json' -d " \
           '\'{"patient_id": "SIM-0-' in out
    assert "values from the feature store (pve_progression_risk_v1)" in out, out[-2000:]
    assert (tmp_path / "data" / "feast" / "feature_store.yaml").exists()
    # stores live where the defaults say, inside the project root
    assert (tmp_path / "mlflow" / "mlflow.db").exists() and (tmp_path / "mlflow" / "artifacts").is_dir()
    assert (tmp_path / "data" / "simulated" / "cohort.parquet").exists()
    assert str(client.get_model_version_by_alias("pve-progression-risk", decision).version) == "1"
    # no library noise a new user cannot act on (stdout and stderr alike) ...
    everything = out + proc.stderr
    for noise in ("can be interpreted in multiple ways", "Failed to resolve installed pip version",
                  "Downloading artifacts"):
        assert noise not in everything, noise
    # ... and it ends with the calculator's address first
    closing = after[after.index("Risk calculator:"):].splitlines()
    assert closing[0].strip() == f"Risk calculator: http://127.0.0.1:{port}/"
