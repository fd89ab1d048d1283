"""Service lifecycle: refusal without a model, readiness, authentication, offline `bentoml build`."""

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest
import yaml

from feature_store import contract as c
from feature_store.settings import project_root
from tests.fixtures.fhir import hook_request
from tests.servers import VENV_BIN, offline_env, wait_http
from tests.service.conftest import bento_server

pytestmark = pytest.mark.slow


def test_refuses_to_start_without_a_model(tmp_path):
    env = offline_env(BENTOML_HOME=str(tmp_path / "empty-store"))
    env.pop("PVERISK_SERVE_MODEL_TAG", None)
    proc = subprocess.run([str(VENV_BIN / "bentoml"), "serve", "serving.service:PVERisk", "--host", "127.0.0.1",
                           "--port", "1"], cwd=project_root(), env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "no 'pve-progression-risk' model in the BentoML store" in out and "pverisk train" in out


def test_readiness_waits_for_the_model_and_auth_is_enforced(imported, tmp_path):
    model, _ = imported
    # The test-only hold keeps the service alive-but-not-ready for as long as the file exists:
    # the loading state is observed deterministically, not raced.
    hold = tmp_path / "hold-loading"
    hold.touch()
    key = {"x-api-key": "s3cret-key"}
    with bento_server(tmp_path, str(model.tag), wait_ready=False, PVERISK_SERVE_TEST_HOLD_LOADING_FILE=str(hold),
                      PVERISK_SERVE_API_KEY="s3cret-key") as s:
        wait_http(f"{s.url}/livez", s.proc, timeout=120)
        assert httpx.get(f"{s.url}/readyz").status_code == 503
        # While loading every endpoint answers 503 (never 500), each checked on its own with a
        # request that would otherwise succeed, so no earlier check (400, 401) can stand in for it.
        loading = {
            "model": httpx.get(f"{s.url}/v1/model", headers=key),
            "predict": httpx.post(f"{s.url}/v1/predict", json=c.example_record(), headers=key),
            "cds": httpx.post(f"{s.url}/cds-services/pve-progression-risk", json=hook_request("hi-1", True),
                              headers=key),
        }
        assert {k: r.status_code for k, r in loading.items()} == {"model": 503, "predict": 503, "cds": 503}
        assert "loading" in loading["cds"].json()["error"]
        hold.unlink()
        wait_http(f"{s.url}/readyz", s.proc, timeout=120)
        assert httpx.get(f"{s.url}/livez").status_code == 200
        assert httpx.post(f"{s.url}/cds-services/pve-progression-risk",
                          json=hook_request("hi-1", True), headers=key).status_code == 200
        # no EHR JWT required here, so the CDS calls need the key (they make the service call a fhirServer)
        assert httpx.post(f"{s.url}/cds-services/pve-progression-risk",
                          json=hook_request("hi-1", True)).status_code == 401
        assert httpx.get(f"{s.url}/cds-services").status_code == 200  # discovery stays public

        url = f"{s.url}/v1/predict"
        patient = c.example_record()
        assert httpx.post(url, json=patient).status_code == 401
        assert httpx.post(url, json=patient, headers={"x-api-key": "wrong"}).status_code == 401
        assert httpx.post(url, json=patient, headers={"x-api-key": "s3cret-key"}).status_code == 200
        assert httpx.post(url, json=patient, headers={"authorization": "Bearer s3cret-key"}).status_code == 200
        assert httpx.get(f"{s.url}/v1/model").status_code == 401
        assert httpx.get(f"{s.url}/livez").status_code == 200  # probes stay open
        # the pages and their assets are public; what they fetch from /v1/ needs the key
        for page in ("/", "/model", "/docs", "/docs.json", "/static/calculator.js"):
            assert httpx.get(f"{s.url}{page}").status_code == 200, page
        assert httpx.post(f"{s.url}/v1/prefill", json={"token": "x"}).status_code == 401
        assert "s3cret-key" not in s.flushed_log()  # with its positive control


def test_auth_off_by_default(server):
    assert httpx.post(f"{server.url}/v1/predict", json=c.example_record()).status_code == 200


def test_bentoml_build_offline(imported, tmp_path):
    model, _ = imported
    env = offline_env(PVERISK_SERVE_MODEL_TAG=str(model.tag), PIP_NO_INDEX="1", UV_OFFLINE="1")
    proc = subprocess.run([str(VENV_BIN / "bentoml"), "build", "-f", "bentofile.yaml", "--output", "tag"],
                          cwd=project_root(), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    tag = proc.stdout.strip().splitlines()[-1].replace("__tag__:", "")
    bento = Path(os.environ["BENTOML_HOME"]) / "bentos" / tag.replace(":", "/")
    assert (bento / "bento.yaml").exists()
    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    assert [m["tag"] for m in manifest["services"][0]["models"]] == [str(model.tag)]  # pinned, not latest
    # `bentoml export` makes one file that carries the model itself
    out = tmp_path / "pverisk.bento"
    exp = subprocess.run([str(VENV_BIN / "bentoml"), "export", tag, str(out)], cwd=project_root(), env=env,
                         capture_output=True, text=True, timeout=300)
    assert exp.returncode == 0, exp.stderr[-2000:]
    import tarfile

    with tarfile.open(out) as tar:
        assert any(n.endswith("mlflow_model/MLmodel") for n in tar.getnames())


# page -> (what its rendered DOM shows, requests it must have made): a blank page would pass vacuously
PAGES = {
    "/docs": (("/v1/predict",), ("/docs.json", "/docs-assets/swagger-ui-bundle.js")),
    "/": (('id="f-age_years"',), ("/docs.json", "/static/calculator.js", "/static/app.css", "/v1/model")),
    "/model": (('data-ready="true"', "Limitations"), ("/static/model.js", "/v1/model")),
}


@pytest.mark.skipif(shutil.which("chromium") is None and os.environ.get("CI") != "true",
                    reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("page", list(PAGES))
def test_our_pages_make_no_request_outside_loopback(server, tmp_path, page):
    netlog = tmp_path / "netlog.json"
    proc = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tempfile.mkdtemp()}", f"--log-net-log={netlog}", "--virtual-time-budget=8000",
         "--dump-dom", f"{server.url}{page}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shows, fetched = PAGES[page]
    assert all(s in proc.stdout for s in shows), f"{page} rendered from the service's data"
    # Page-initiated requests carry the page's origin as initiator; the browser's own
    # housekeeping (component updates, time sync) has none and is not the page's doing.
    log = json.loads(netlog.read_text())
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    from_page = {e["params"]["url"] for e in log["events"]
                 if names[e["type"]] == "URL_REQUEST_START_JOB" and "url" in e.get("params", {})
                 and str(e["params"].get("initiator", "")).startswith(("http://", "https://"))}
    assert {f"{server.url}{f}" for f in fetched} <= from_page, from_page
    outside = {u for u in from_page if not re.match(r"^https?://(127\.0\.0\.1|localhost)(:\d+)?/", u)}
    assert outside == set(), outside


def test_import_model_is_idempotent_and_labelled(imported, trained):
    import bentoml

    from serving.import_model import import_model

    model, result = imported
    _, tracking = trained
    again = import_model("champion", tracking)
    assert again.tag == model.tag
    assert len([m for m in bentoml.models.list("pve-progression-risk") if m.tag == model.tag]) == 1
    labels = again.info.labels
    assert labels["version"] == result.version and labels["alias"] == "champion"
    assert labels["data_kind"] == "simulated" and labels["run_id"] == result.run_id
    assert json.loads(again.info.metadata["model_card_json"])["data"]["simulated"] is True
