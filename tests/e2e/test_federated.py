"""Federated training on Flower with real processes on 127.0.0.1: a SuperLink and four SuperNodes (three
hospitals with their own files, one whose file breaks the contract), each started by `pverisk federated
...` from the `federated` extra's environment; one hospital is killed mid-run. Then Flower's simulation
engine with ten sites. Every process is stopped even when a test fails."""

from __future__ import annotations


import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from feature_store import contract as c
from feature_store.centres import simulate_centres, write_centres
from feature_store.settings import project_root
from feature_store.study import design_from_metadata, read_cohort_metadata, write_with_design
from tests.servers import free_port, kill_tree, offline_env

pytestmark = pytest.mark.slow
NAME = "pve-progression-risk"
FEDERATED = Path(os.environ.get("PVERISK_FEDERATED_VENV", project_root() / ".venv-federated"))


def pverisk_federated() -> str:
    exe = FEDERATED / "bin" / "pverisk"
    if not exe.exists():
        pytest.fail(f"the federated environment is missing ({exe}): `make install-dev` (or make install-federated) "
                    "installs it")
    return str(exe)


class Processes:
    """Every process the test starts, killed with all its children at the end."""

    def __init__(self, root: Path):
        self.root, self.procs = root, {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "w")
        proc = subprocess.Popen([pverisk_federated(), "federated", *args], stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=project_root(), start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str) -> None:
        kill_tree(self.procs[name])

    def stop_all(self) -> None:
        for proc in self.procs.values():
            kill_tree(proc)


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {port}")


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    root = tmp_path_factory.mktemp("federated-sites")
    pooled, centres = simulate_centres(3, seed=11, sizes=[220, 160, 120])
    write_centres(pooled, centres, root / "pooled.parquet", root / "sites")
    bad = pd.read_parquet(root / "sites" / "centre-03.parquet")
    bad.loc[4, "age_years"] = 150
    bad.loc[9, "sflr_percent"] = 99
    design = design_from_metadata(read_cohort_metadata(root / "sites" / "centre-03.parquet"))
    write_with_design(bad, root / "invalid-site.parquet", design.model_copy(update={"site": "Hospital Invalid"}),
                      {"simulated": True})
    return root


def test_a_superlink_and_four_supernodes_train_register_and_name_the_refused_and_dropped_sites(sites, tmp_path):
    procs = Processes(tmp_path)
    port = free_port()
    env = offline_env(PVERISK_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                      PVERISK_ARTIFACT_ROOT=str(tmp_path / "artifacts"))
    files = {"a": sites / "sites" / "centre-01.parquet", "b": sites / "sites" / "centre-02.parquet",
             "c": sites / "sites" / "centre-03.parquet", "invalid": sites / "invalid-site.parquet"}
    try:
        link = procs.start("superlink", ["superlink", "--insecure", "--port", str(port)], env)
        _wait_port(port, link)
        for name, path in files.items():
            procs.start(f"site-{name}", ["site", "--data", str(path), "--superlink", f"127.0.0.1:{port}",
                                         "--runtime-port", str(free_port()), "--insecure"], env)
        train_log = tmp_path / "train.log"
        train = subprocess.Popen([pverisk_federated(), "federated", "train", "--superlink", f"127.0.0.1:{port}",
                                  "--insecure", "--strategy", "bagging", "--rounds", "4", "--expected-sites", "4", "--wait-for-sites", "90",
                                  "--round-timeout", "45"], stdout=open(train_log, "w"), stderr=subprocess.STDOUT,
                                 env=env, cwd=project_root(), start_new_session=True)
        procs.procs["train"] = train

        def drop_site_c_mid_run() -> None:  # after round 2 has been sent, site c crashes
            deadline = time.monotonic() + 400
            while time.monotonic() < deadline and "[ROUND 3/4]" not in train_log.read_text(errors="replace"):
                time.sleep(0.3)
            procs.kill("site-c")

        killer = threading.Thread(target=drop_site_c_mid_run, daemon=True)
        killer.start()
        assert train.wait(timeout=600) == 0, train_log.read_text()[-5000:]
        out = " ".join(train_log.read_text().split())
    finally:
        procs.stop_all()
    # the invalid site listed its problems locally (row, column, rule) and told the run only counts and columns
    local = procs.log("site-invalid")
    assert "2 problem(s) in invalid-site.parquet" in " ".join(local.split()) and "age_years" in local
    assert "site Hospital Invalid refused: its file broke the contract: 2 problems in 2 rows" in out
    assert "150" not in out.split("refused:")[1].split(".")[0]  # no value left the site
    assert "site simulated centre-03 dropped out" in out and "the run went on with the other sites" in out
    assert "registered version 1 -> " in out
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mv = client.get_model_version(NAME, "1")
    assert mv.tags["training"] == "federated" and mv.tags["federated_strategy"] == "bagging"
    assert mv.tags["data_kind"] == "simulated"
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    record = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/federated/run.json")
    status = {s["site"]: s["status"] for s in record["sites"]}
    assert status == {"simulated centre-01": "took part", "simulated centre-02": "took part",
                      "simulated centre-03": "dropped out", "Hospital Invalid": "refused"}
    assert [r["replied"] for r in record["rounds_log"]][:2] == [3, 3] and record["rounds_log"][-1]["replied"] == 2
    evaluation = record["site_evaluation"]
    assert {r["centre"] for r in evaluation["centres"]} == set(status)
    assert all("not evaluated" in r["too_small"] for r in evaluation["centres"] if r["centre"] in (
        "simulated centre-03", "Hospital Invalid"))
    card = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/model_card/model_card.json")
    assert card["federated"]["inputs_recorded_by"] and "plots/forest.png" in {
        f.path for f in client.list_artifacts(mv.run_id, "plots")}
    _served_unchanged(tmp_path, mv)


def _served_unchanged(tmp_path: Path, mv) -> None:
    """The registered federated model loads and scores through the service's own RiskModel."""
    from model_runtime.scoring import ModelIdentity, RiskModel

    local = mlflow.artifacts.download_artifacts(f"models:/{NAME}/{mv.version}", dst_path=str(tmp_path / "model"))
    risk = RiskModel.from_mlflow_dir(Path(local), ModelIdentity(NAME, mv.version, "x", "simulated", "t"))
    out = risk.score_record(c.example_record(risk.features))
    assert 0 < out["probability"] < 1 and out["risk_band"] in ("low", "intermediate", "high")
    assert risk.bands.source == "model"


def test_flowers_simulation_engine_trains_ten_sites(tmp_path):
    # ten rounds: every site gets its turn (with three, the turns could fall to three small sites, whose
    # few trees gave risks too flat for any centre's AUROC: the pooled row was missing, a flaky failure)
    pooled, centres = simulate_centres(10, seed=5, sizes=[60, 45, 80, 30, 50, 70, 40, 90, 35, 55])
    write_centres(pooled, centres, tmp_path / "pooled.parquet", tmp_path / "sites")
    env = offline_env(PVERISK_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                      PVERISK_ARTIFACT_ROOT=str(tmp_path / "artifacts"), RAY_USAGE_STATS_ENABLED="0")
    res = subprocess.run([pverisk_federated(), "federated", "simulate", "--site-dir", str(tmp_path / "sites"),
                          "--rounds", "10", "--no-register"], env=env, cwd=project_root(), capture_output=True,
                         text=True, timeout=600)
    out = " ".join(res.stdout.split())
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert out.count("took part") == 10 and "federated run: cyclic, 10 rounds" in out  # the default, by measurement
    assert "pooled AUROC" in out and "each site's held-out patients" in out
    assert re.search(r"trees kept: \d+ of \d+ \(fewest trees with the lowest summed log-loss", out), out[:2000]


def test_too_few_valid_sites_is_a_plain_answer_not_a_traceback(sites, tmp_path):
    """Trial: a run left with too few valid sites ended in a ServerApp traceback, "exit code 201" and then
    "did not finish (flwr run exited 0)". Now the reason, naming the refused site, and exit 1."""
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("centre-01.parquet", "invalid-site.parquet"):
        (folder / name).write_bytes(((sites / "sites" / name) if name.startswith("centre") else sites / name).read_bytes())
    env = offline_env(PVERISK_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                      PVERISK_ARTIFACT_ROOT=str(tmp_path / "artifacts"), RAY_USAGE_STATS_ENABLED="0")
    res = subprocess.run([pverisk_federated(), "federated", "simulate", "--site-dir", str(folder), "--rounds", "2",
                          "--no-register"], env=env, cwd=project_root(), capture_output=True, text=True, timeout=600)
    said = " ".join((res.stdout + res.stderr).split())
    assert res.returncode == 1, said[-3000:]
    assert "the federated run stopped: 1 valid sites, at least 2 needed" in said and "site invalid-site refused" in said
    assert "Traceback" not in said, said[-3000:]
