"""The calculator (`/`) and the model card (`/model`) in a real browser (Playwright driving Debian's
chromium; never `playwright install`), and the OpenAPI document as integrators meet it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from feature_store import contract as c
from feature_store.settings import project_root
from tests.fixtures.fhir import hook_request

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
                                    reason="Debian's chromium is not installed (.ci/run installs it)")
# PVERISK_UPDATE_SCREENSHOTS=1 writes the README's screenshots into docs/; otherwise a temp folder.
UPDATE_SCREENSHOTS = os.environ.get("PVERISK_UPDATE_SCREENSHOTS") == "1"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _page(browser: Any, size: tuple[int, int]) -> tuple[Any, list[str]]:
    """A fresh page that records every request it makes (URL and method)."""
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
    page.on("pageerror", lambda e: requests.append(f"PAGEERROR {e}"))
    return page, requests


def _shot(page: Any, name: str, tmp_path: Path) -> Path:
    folder = project_root() / "docs" if UPDATE_SCREENSHOTS else tmp_path
    out = folder / f"{name}.png"
    page.screenshot(path=str(out), full_page=False)
    return out


@needs_chromium
def test_calculator_gives_the_api_probability_for_the_documented_example(server, browser, tmp_path):
    spec = httpx.get(f"{server.url}/docs.json").json()
    example = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["example"]
    expected = httpx.post(f"{server.url}/v1/predict", json=example).json()["probability"]
    for width, size in WIDTHS.items():
        page, requests = _page(browser, size)
        page.goto(f"{server.url}/")
        page.wait_for_selector("form[data-ready=true]")
        # the form is the served model's: one labelled control per model input or fine source
        model = httpx.get(f"{server.url}/v1/model").json()
        shown = {n for n, role in model["inputs"].items() if role != "not used"}
        for name in shown:
            control = page.locator(f"#f-{name}")
            assert control.count() == 1, name
            assert page.locator(f"label[for=f-{name}]").count() == 1, name  # label tied to its input
        assert page.locator("#fields input, #fields select").count() == len(shown)
        # typed in by hand, as a clinician would (keyboard), not injected
        for name, value in example.items():
            control = page.locator(f"#f-{name}")
            if control.evaluate("e => e.tagName") == "SELECT":
                control.select_option(str(value).lower() if isinstance(value, bool) else str(value))
            else:
                control.fill(str(value))
        page.locator("#submit").focus()
        page.keyboard.press("Enter")
        page.wait_for_selector("#probability")
        shown_p = float(page.get_attribute("#probability", "data-probability"))
        assert shown_p == expected
        assert page.inner_text("#probability") == f"{100 * expected:.1f}%"
        assert page.inner_text("#band") == httpx.post(f"{server.url}/v1/predict", json=example).json()["risk_band"]
        text = page.inner_text("#result")
        for needle in ("Top factors", "Clinical scores", "GAME score", "Missing inputs", "Model card",
                       "simulated", "Research use only"):
            assert needle in text, needle
        assert not [r for r in requests if r.startswith("PAGEERROR")], requests
        assert all(r.split(" ", 1)[1].startswith(server.url) for r in requests), requests
        _shot(page, f"calculator-{width}", tmp_path)
        page.close()


@needs_chromium
def test_out_of_range_shows_the_api_message_and_sends_nothing(server, browser):
    page, requests = _page(browser, WIDTHS["desktop"])
    page.goto(f"{server.url}/")
    page.wait_for_selector("form[data-ready=true]")
    page.click("#example")
    page.fill("#f-largest_metastasis_cm", "45")
    before = len(requests)
    page.click("#submit")
    message = page.inner_text("[data-field=largest_metastasis_cm] .err")
    # the API's own message for the same value (the value itself is never echoed)
    api = httpx.post(f"{server.url}/v1/predict", json={**c.example_record(), "largest_metastasis_cm": 45}).json()
    api_msgs = [d["msg"] for d in api["detail"] if d["loc"][-1] == "largest_metastasis_cm"]
    assert message == api_msgs[0] == "outside the allowed range 0.2 to 30 cm"
    assert page.get_attribute("#f-largest_metastasis_cm", "aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "f-largest_metastasis_cm"  # focus moves to it
    assert not [r for r in requests[before:] if "/v1/predict" in r]  # nothing sent
    assert page.locator("#probability").count() == 0
    page.close()


@needs_chromium
def test_model_card_page(server, browser, tmp_path):
    info = httpx.get(f"{server.url}/v1/model").json()
    assert set(info["plots"]) == {"calibration", "decision_curve"}  # carried from MLflow at import
    assert all(v.startswith("data:image/png;base64,") for v in info["plots"].values())
    for width, size in WIDTHS.items():
        page, requests = _page(browser, size)
        page.goto(f"{server.url}/model")
        page.wait_for_selector("main[data-ready=true]")
        text = page.inner_text("main")
        for needle in ("AUROC", "95% CI", "Intended use", "Study design", "Predictors", "Limitations",
                       f"version {info['model']['version']}", "largest_metastasis_cm"):
            assert needle in text, needle
        assert page.locator("img.plot").count() == 2
        assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        assert all(r.split(" ", 1)[1].startswith((server.url, "data:")) for r in requests), requests
        _shot(page, f"model-card-{width}", tmp_path)
        page.close()


@needs_chromium
def test_cds_card_opens_the_calculator_prefilled_without_values_in_the_url(server, browser):
    def card_link():
        body = httpx.post(f"{server.url}/cds-services/pve-progression-risk", json=hook_request("hi-1", True)).json()
        card = body["cards"][0]
        link = next(ln["url"] for ln in card["links"] if "calculator" in ln["label"])
        assert link.startswith("/#prefill=")  # relative: no PVERISK_SERVE_PUBLIC_URL, never the Host header
        return card, link, link.split("#prefill=", 1)[1]

    card, link, token = card_link()
    assert "=" not in token and "&" not in token  # a token, no field=value pairs
    prefill = httpx.post(f"{server.url}/v1/prefill", json={"token": token}).json()["inputs"]
    for value in prefill.values():  # no patient value in the link
        assert str(value) not in token or len(str(value)) < 2
    card, link, token = card_link()  # a token is single-use: a new card's for the page
    page, requests = _page(browser, WIDTHS["desktop"])
    page.goto(f"{server.url}{link}")
    page.wait_for_selector("#probability")
    p_page = float(page.get_attribute("#probability", "data-probability"))
    assert round(100 * p_page) == int(card["summary"].split("risk ")[1].split("%")[0])
    assert page.evaluate("location.hash") == ""  # the token leaves the address bar once used
    page.close()
    assert httpx.post(f"{server.url}/v1/prefill", json={"token": token}).status_code == 404  # redeemed by the page
    assert httpx.post(f"{server.url}/v1/prefill", json={"token": "not-a-token"}).status_code == 404
    log = server.flushed_log()
    assert token not in log  # neither the fragment nor the POST body reaches the server's access log


def test_prefill_tokens_expire():
    from ehr.prefill import PrefillStore

    now = [0.0]
    store = PrefillStore(ttl_seconds=60, clock=lambda: now[0])
    token = store.put({"age_years": 62})
    assert store.get(token) == {"age_years": 62}
    assert store.get(token) is None  # once
    token = store.put({"age_years": 62})
    now[0] = 61.0
    assert store.get(token) is None


BENTOML_README = ("This is a Machine Learning Service created with BentoML", "BentoML Team", "contact@bentoml.com",
                  "img.shields.io", "badgen.net", "join-slack", "bentomlai", "docs.bentoml.com",
                  "customize this README", "IODescriptor", ":dev", "Service APIs")


def test_openapi_document_presents_us(server, imported):
    import tomllib

    _, result = imported
    spec = httpx.get(f"{server.url}/docs.json").json()
    project = tomllib.loads((project_root() / "pyproject.toml").read_text())["project"]
    info = spec["info"]
    assert info["title"] == "PVE progression risk API (research use only)"
    assert project["version"] in info["version"] and f"v{result.version}" in info["version"]
    assert info["license"]["name"] == project["license"]["text"]
    assert info["contact"]["name"] == project["authors"][0]["name"]
    for needle in ("Research use only", "What it predicts", "Authentication", "PVERISK_SERVE_API_KEY", "Limits",
                   "colorectal liver metastases"):
        assert needle in info["description"], needle
    text = str(spec)
    assert [s for s in BENTOML_README if s in text] == []
    assert "None" != info["version"]
    assert {t["name"] for t in spec["tags"]} == {"Prediction", "EHR integration", "Model", "Operations"}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("summary") and len(op["tags"]) == 1 and op["tags"][0] != "default", (path, method)
            if method == "post":
                body = op["requestBody"]["content"]["application/json"]
                assert body.get("example") or body["schema"].get("example"), path
            ok = op["responses"]["200"]
            assert any(ct.get("example") is not None or ct.get("schema", {}).get("example")
                       for ct in ok.get("content", {}).values()), (path, method)
    tags = {p: ops[next(iter(ops))]["tags"][0] for p, ops in spec["paths"].items()}
    assert tags["/v1/predict"] == "Prediction" and tags["/cds-services/pve-progression-risk"] == "EHR integration"
    assert tags["/v1/predict/fhir"] == "EHR integration" and tags["/v1/model"] == "Model"
    assert tags["/readyz"] == "Operations"
    assert "PatientRecord" in spec["components"]["schemas"]
