"""An mCODE / US Core chart (tests/fixtures/mcode.py) through CDS Hooks and POST /v1/predict/fhir over real HTTP:
a risk card with every input the chart carries mapped, in words a surgeon reads; the same inputs at clinical
precision in the FHIR answer and the calculator prefill; and the coverage listing in GET /v1/model and
`pverisk ehr-coverage`."""

from __future__ import annotations

import re

import httpx
import pytest

from ehr.cds_models import CardsResponse
from feature_store import contract as c
from tests.fixtures.mcode import hook_request, mcode_chart

pytestmark = pytest.mark.slow
CDS = "/cds-services/pve-progression-risk"


@pytest.fixture(scope="module")
def chart():
    return mcode_chart()


def test_an_mcode_chart_gets_a_risk_card_with_every_input_it_carries(server, chart):
    r = httpx.post(f"{server.url}{CDS}", json=hook_request(chart), timeout=60)
    assert r.status_code == 200, r.text
    card = CardsResponse.model_validate(r.json()).cards[0]
    print("\n--- card for the mCODE chart ---\n" + card.summary + "\n\n" + card.detail)
    assert re.match(r"PVE progression risk \d+% \((low|intermediate|high)\)", card.summary)
    assert card.indicator == ("warning" if "(high)" in card.summary else "info")
    d = card.detail
    words = re.sub(r"urn:pverisk:feature\|\w+", "", d.split("_Research")[0])  # a local code is what would carry it
    assert "log-odds" not in d and not re.search(r"\b[a-z]+_[a-z_0-9]+\b", words)  # no code names
    assert "Not known" in d
    not_known = d.split("**Not known**", 1)[1].split("**Clinical scores**", 1)[0]
    for name in chart.expected:  # an input the chart gave is never listed as not known
        assert c.BY_NAME[name].label not in not_known, name
    token = next(link.url for link in card.links if "#prefill=" in link.url).split("#prefill=", 1)[1]
    prefill = httpx.post(f"{server.url}/v1/prefill", json={"token": token}).json()["inputs"]
    fhir = httpx.post(f"{server.url}/v1/predict/fhir", json=chart.bundle, timeout=60).json()
    for name, value in chart.expected.items():
        assert prefill[name] == value == fhir["inputs"][name], name  # clinical precision on every route
    assert fhir["input_sources"]["largest_metastasis_cm"].startswith("mCODE Tumor")
    assert f"{100 * fhir['probability']:.0f}%" in card.summary


def test_the_model_lists_its_ehr_coverage(server):
    info = httpx.get(f"{server.url}/v1/model").json()
    cov = info["ehr_coverage"]
    assert cov["total_inputs"] == len(info["features"]) and 0 < cov["standard_share"] <= 1
    by_name = {e["feature"]: e for e in cov["inputs"]}
    assert set(by_name) == set(info["features"])
    if "cea_ng_ml" in by_name:
        assert by_name["cea_ng_ml"]["standard"] and "LOINC 2039-6" in by_name["cea_ng_ml"]["carried_by"][0]["reads"]
    if "sflr_percent" in by_name:
        assert not by_name["sflr_percent"]["standard"] and by_name["sflr_percent"]["local_code"].endswith("sflr_percent")


def test_ehr_coverage_command_lists_a_running_service(server):
    from typer.testing import CliRunner

    from pverisk.cli import app

    res = CliRunner().invoke(app, ["ehr-coverage", "--service-url", server.url, "--json"])
    assert res.exit_code == 0, res.output
    import json

    assert json.loads(res.stdout) == httpx.get(f"{server.url}/v1/model").json()["ehr_coverage"]
