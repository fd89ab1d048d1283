"""The 23 PVE patients (14 events) of a registry, tried as a new user would (issue: "What the real registry
showed"): import with the registry's own mapping, train, and then try to serve, score and import what the
gate did not make champion. Every step ends in figures or a plain message, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from feature_store.import_cohort import import_cohort
from feature_store.settings import project_root
from tests.conftest import fast_settings, local_tracking
from tests.fixtures.registry_pve import N_EVENTS, N_PATIENTS, write_pve_subset
from tests.servers import offline_env
from training.pipeline import run_training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pve_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pve23")
    files = write_pve_subset(root)
    cohort = root / "cohort.parquet"
    imported = import_cohort(files["csv"], files["mapping"], cohort)
    assert imported.ok, imported.reason
    tracking = local_tracking(root)
    # the defaults' 100 bootstrap samples, as a new user runs it (the optimism correction crashed here)
    result = run_training(cohort, settings=fast_settings(optimism_bootstrap=100), tracking=tracking)
    return root, cohort, result, tracking


def test_the_23_patients_train_into_figures_with_wide_intervals_and_warnings(pve_run):
    _, _, result, _ = pve_run
    assert result.card["data"]["patients"] == N_PATIENTS and result.card["data"]["events"] == N_EVENTS
    m = result.metrics
    assert m["auroc_ci_high"] - m["auroc_ci_low"] > 0.2  # wide, and said so
    assert any("small sample: 23 patients" in w for w in result.warnings)
    assert result.optimism is not None and result.optimism["optimism_bootstrap_samples"] == 100
    # the bands come from this cohort's own rate (14/23), not from a 25% assumption
    bands = result.card["risk_bands"]
    assert (bands["low_below"], bands["high_from"]) == (round(0.6 * 14 / 23, 2), round(1.4 * 14 / 23, 2))


def test_the_card_states_the_moment_the_inputs_describe(pve_run):
    _, _, result, _ = pve_run
    assert result.card["outcome"]["prediction_time"].startswith("the time of resection")
    assert "inputs describe the time of resection" in result.question_note


def test_fong_is_computed_where_synchronous_metastases_settle_the_interval(pve_run):
    _, cohort, result, _ = pve_run
    import pandas as pd

    synchronous = int(pd.read_parquet(cohort)["synchronous_metastases"].fillna(False).sum())
    fong = result.baselines["fong_crs"]
    assert 0 < synchronous < N_PATIENTS
    assert "disease-free interval under 12 months" in (fong.get("note") or fong.get("skipped", ""))
    # every patient with a synchronous metastasis and the other four items has a Fong score
    assert fong.get("n", 0) > 0 or "too few patients" in fong.get("skipped", "")


def test_an_undefined_slope_is_explained_not_printed_as_nan(pve_run):
    _, _, result, _ = pve_run
    note = result.card["evaluation"]["calibration_slope_note"]
    if note is not None:  # the model may or may not give everyone the same risk on these 23
        assert "nan" not in result.gate_reason and "undefined" in result.gate_reason


def _command(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pverisk", *args], cwd=project_root(), env=env,
                          capture_output=True, text=True, timeout=300)


def test_without_a_champion_serve_score_and_import_say_what_exists(pve_run, tmp_path):
    root, cohort, result, tracking = pve_run
    assert result.alias != "champion", "the 23 patients cannot make a champion"
    env = offline_env(BENTOML_HOME=str(tmp_path / "bentoml_home"), PVERISK_TRACKING_URI=tracking.tracking_uri,
                      PVERISK_ARTIFACT_ROOT=str(tracking.artifact_root))
    env.pop("PVERISK_SERVE_MODEL_TAG", None)
    serve = _command(["serve", "--port", "1"], env)
    said = " ".join(serve.stderr.split())
    assert serve.returncode == 1 and "Traceback" not in serve.stderr + serve.stdout, said
    assert f"v{result.version} ({result.alias}" in said and "import-model --version N" in said
    score = _command(["score", "--data", str(cohort), "--out", str(tmp_path / "s.parquet")], env)
    assert score.returncode == 1 and "Traceback" not in score.stderr and f"v{result.version} (" in " ".join(
        score.stderr.split())
    champion = _command(["import-model"], env)
    said = " ".join(champion.stderr.split())
    assert champion.returncode == 1 and f"registered: v{result.version} ({result.alias}" in said
    assert "Train and register one" not in said
    by_number = _command(["import-model", "--version", result.version], env)
    assert by_number.returncode == 0, by_number.stderr[-2000:]
    tag = f"pve-progression-risk:v{result.version}"
    said = " ".join(by_number.stdout.split())
    assert f"imported {tag}" in said and f"alias {result.alias}" in said
    serve = _command(["serve", "--port", "1"], env)  # imported, but not a champion: serve it by tag
    said = " ".join(serve.stderr.split())
    assert serve.returncode == 1 and f"imported: {tag} ({result.alias})" in said and "--model-tag" in said
    scored = _command(["score", "--data", str(cohort), "--out", str(tmp_path / "s.parquet"), "--model-tag", tag, "--partial"], env)
    assert scored.returncode == 0, scored.stderr[-3000:]
    # promoted later by a person: importing the champion relabels the version imported before under its old
    # alias (BentoML labels are fixed at import), and serving or scoring without a tag then finds it
    promoted = _command(["promote", result.version, "--reason", "tumour board review", "--by", "tests"], env)
    assert promoted.returncode == 0, promoted.stderr[-2000:]
    relabelled = _command(["import-model"], env)
    assert relabelled.returncode == 0 and "alias champion" in " ".join(relabelled.stdout.split()), relabelled.stderr[-2000:]
    again = _command(["import-model"], env)  # idempotent once labelled
    assert again.returncode == 0, again.stderr[-2000:]
    champion_scored = _command(["score", "--data", str(cohort), "--out", str(tmp_path / "c.parquet"), "--partial"], env)
    assert champion_scored.returncode == 0, champion_scored.stderr[-3000:]
