"""CDS Hooks and FHIR endpoints over real HTTP, with a FHIR server on 127.0.0.1."""

import json
import statistics
import threading
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ehr.cds_models import CardsResponse, Discovery
from ehr.settings import EhrSettings
from tests.fixtures.fhir import hook_request, patient_resources, searchset
from tests.service.conftest import bento_server
from tests.service.fhir_server import TOKEN, FhirServer

pytestmark = pytest.mark.slow
SERVICE = "/cds-services/pve-progression-risk"


@pytest.fixture(scope="module")
def fhir():
    with FhirServer() as f:
        yield f


def cards(server, body, **kw):
    return httpx.post(f"{server.url}{SERVICE}", json=body, timeout=30, **kw)


def test_discovery_lists_the_service_with_prefetch(server):
    r = httpx.get(f"{server.url}/cds-services")
    assert r.status_code == 200, r.text
    d = Discovery.model_validate(r.json())
    svc = d.services[0]
    assert svc.id == "pve-progression-risk" and svc.hook == "patient-view"
    assert svc.prefetch["patient"] == "Patient/{{context.patientId}}"
    # the whole problem list: mCODE codes a cancer by any concept and puts the liver in bodySite
    assert svc.prefetch["conditions"] == "Condition?patient={{context.patientId}}"
    for code in ("2039-6", "83085-1", "1975-2", "14631-6", "1751-7", "6301-6", "777-3",
                 "21889-1", "69548-6", "53041-0", "21900-6"):  # labs, Tumor Size, genomics, pN
        assert f"http://loinc.org|{code}" in svc.prefetch["observations"]
    assert svc.prefetch["tumours"] == "BodyStructure?patient={{context.patientId}}"
    assert "http://www.nlm.nih.gov/research/umls/rxnorm|253337" in svc.prefetch["medications"]
    assert svc.prefetch["orders"].startswith("ServiceRequest?patient={{context.patientId}}")


def test_high_and_low_risk_cards_with_prefetch(server):
    hi = CardsResponse.model_validate(cards(server, hook_request("hi-1", True)).json()).cards[0]
    lo = CardsResponse.model_validate(cards(server, hook_request("lo-1", False)).json()).cards[0]
    assert len(hi.summary) <= 140 and "research use" in hi.summary
    assert hi.indicator == "warning" and lo.indicator == "info"  # the band decides; never "critical"
    hi_p = int(hi.summary.split("risk ")[1].split("%")[0])
    lo_p = int(lo.summary.split("risk ")[1].split("%")[0])
    assert hi_p > lo_p
    assert "What drives this estimate" in hi.detail and "Fong CRS" in hi.detail and "Research use only" in hi.detail
    assert "log-odds" not in hi.detail and "_mg_dl" not in hi.detail and "raises the risk" in hi.detail
    assert "SIMULATED" in hi.detail and "simulated data" in hi.source.label
    assert "#prefill=" in hi.links[0].url and hi.links[1].url.endswith("/model") and hi.overrideReasons


def test_request_without_patient_id_is_400(server):
    body = hook_request("hi-1", True)
    del body["context"]["patientId"]
    r = cards(server, body)
    assert r.status_code == 400 and "context.patientId" in json.dumps(r.json())


@pytest.mark.parametrize("missing", ["hook", "hookInstance"])
def test_required_request_fields(server, missing):
    body = hook_request("hi-1", True)
    del body[missing]
    assert cards(server, body).status_code == 400


def test_too_little_data_gives_an_info_card_not_a_number(server):
    body = hook_request("x-1", True)
    body["prefetch"]["observations"] = searchset([])
    card = CardsResponse.model_validate(cards(server, body).json()).cards[0]
    assert card.indicator == "info" and "not enough data" in card.summary
    assert "Number of liver metastases" in card.detail and "%" not in card.summary.replace("research", "")
    assert "n_liver_metastases" not in card.detail and "mCODE Tumor" in card.detail  # what would carry it


def _card_text(response: httpx.Response) -> tuple[str, str | None, str]:
    card = CardsResponse.model_validate(response.json()).cards[0]
    return card.summary, card.detail, card.indicator


AUTH = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "user/Patient.read",
        "subject": "pverisk"}


def test_fetches_every_page_from_the_fhir_server_when_prefetch_is_absent(server, fhir):
    fhir.requests.clear()
    body = hook_request("hi-1", True, with_prefetch=False, fhirServer=fhir.url, fhirAuthorization=AUTH)
    r = cards(server, body)
    assert r.status_code == 200, r.text
    # the test server pages its searches: the same card as with everything prefetched means every
    # page was read
    assert _card_text(r) == _card_text(cards(server, hook_request("hi-1", True)))
    observations = len(patient_resources("hi-1", True)["observations"])
    pages = -(-observations // fhir.page_size)
    assert pages > 1 and [p for p, _ in fhir.requests].count("/Observation") == pages
    assert all(auth == f"Bearer {TOKEN}" for path, auth in fhir.requests if path != "/jwks.json")


def test_fhir_paging_is_bounded(server, fhir):
    fhir.requests.clear()
    fhir.endless = True
    try:
        r = cards(server, hook_request("hi-1", True, with_prefetch=False, fhirServer=fhir.url, fhirAuthorization=AUTH))
    finally:
        fhir.endless = False
    bound = EhrSettings().cds_fhir_max_pages  # the server runs with the default
    assert r.status_code == 412 and f"more than {bound} pages" in r.json()["error"]
    assert [p for p, _ in fhir.requests].count("/Condition") == bound


def test_fhir_next_link_to_another_origin_is_not_followed(server, fhir):
    with FhirServer() as other:
        fhir.next_base = other.url
        try:
            r = cards(server, hook_request("hi-1", True, with_prefetch=False, fhirServer=fhir.url,
                                           fhirAuthorization=AUTH))
        finally:
            fhir.next_base = None
        assert r.status_code == 412 and "another origin" in r.json()["error"]
        assert other.requests == []  # the bearer token never left the configured server


def test_no_prefetch_and_no_fhir_server_is_412(server):
    assert cards(server, hook_request("hi-1", True, with_prefetch=False)).status_code == 412


def test_fhir_server_down_or_slow_is_412(server, fhir):
    auth = {"access_token": TOKEN, "token_type": "Bearer"}
    down = hook_request("hi-1", True, with_prefetch=False, fhirServer="http://127.0.0.1:9", fhirAuthorization=auth)
    assert cards(server, down).status_code == 412
    # The FHIR server holds the request far beyond the service's 2 s timeout, and the test client
    # waits long enough: a 412 naming the timeout, instead of a client timeout, shows the service
    # gave up on its own. No wall-clock bound.
    fhir.delay = 600.0
    try:
        slow = hook_request("hi-1", True, with_prefetch=False, fhirServer=fhir.url, fhirAuthorization=auth)
        r = httpx.post(f"{server.url}{SERVICE}", json=slow, timeout=120)
        assert r.status_code == 412 and "Timeout" in r.json()["error"], r.text
    finally:
        fhir.release.set()
        fhir.delay = 0.0
        fhir.release = threading.Event()


def test_unsupported_hook_is_400(server):
    body = hook_request("hi-1", True)
    body["hook"] = "order-select"
    r = cards(server, body)
    assert r.status_code == 400 and "'order-select' not supported" in r.json()["error"]


def _feedback(comment: str = "discussed at tumour board") -> dict:
    return {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden",
                          "overrideReason": {"reason": {"code": "already-considered",
                                                        "system": "urn:pverisk:override-reason"},
                                             "userComment": comment},
                          "outcomeTimestamp": "2026-11-28T08:00:00Z"}]}


def test_feedback_is_accepted_and_counted(server):
    body = _feedback()
    r = httpx.post(f"{server.url}{SERVICE}/feedback", json=body)
    assert r.status_code == 200 and r.json() == {"accepted": 1}
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'pverisk_cds_feedback_total{outcome="overridden",override_reason="already-considered"}' in metrics
    assert "tumour board" not in server.flushed_log()  # the clinician's comment is never logged
    assert httpx.post(f"{server.url}{SERVICE}/feedback", json={"feedback": [{"card": "x"}]}).status_code == 400


def test_predict_can_return_a_fhir_risk_assessment(server):
    from feature_store import contract as c
    from fhir.resources.R4B.riskassessment import RiskAssessment

    r = httpx.post(f"{server.url}/v1/predict?format=fhir", json=c.example_record())
    assert r.status_code == 200, r.text
    ra = RiskAssessment.model_validate(r.json()["fhir_risk_assessment"])
    assert float(ra.prediction[0].probabilityDecimal) == r.json()["probability"]


def test_predict_from_a_fhir_bundle(server):
    from fhir.resources.R4B.riskassessment import RiskAssessment

    res = patient_resources("hi-1", True)
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": x} for k in ("patient", "conditions", "observations") for x in res[k]]}
    r = httpx.post(f"{server.url}/v1/predict/fhir", json=bundle)
    assert r.status_code == 200, r.text
    body = r.json()
    ra = RiskAssessment.model_validate(body["fhir_risk_assessment"])
    assert ra.subject.reference == "Patient/hi-1" and len(ra.basis) > 10
    assert body["inputs"]["bilirubin_mg_dl"] == pytest.approx(1.0)
    # the same patient through CDS Hooks gets the same number
    card = CardsResponse.model_validate(cards(server, hook_request("hi-1", True)).json()).cards[0]
    assert f"{100 * body['probability']:.0f}%" in card.summary
    empty = {"resourceType": "Bundle", "type": "collection", "entry": []}
    assert httpx.post(f"{server.url}/v1/predict/fhir", json=empty).status_code == 422


def test_cds_latency_with_prefetch(server):
    body = hook_request("hi-1", True)
    with httpx.Client() as client:
        for _ in range(20):
            client.post(f"{server.url}{SERVICE}", json=body)
        times = []
        for _ in range(100):
            t0 = time.perf_counter()
            assert client.post(f"{server.url}{SERVICE}", json=body).status_code == 200
            times.append((time.perf_counter() - t0) * 1e3)
    print(f"CDS Hooks call with prefetch: median {statistics.median(times):.1f} ms")  # measured, not asserted


@pytest.fixture(scope="module")
def jwt_server(imported, fhir, tmp_path_factory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    fhir.jwks = {"keys": [{**jwk, "kid": "k1", "alg": "RS384", "use": "sig"}]}
    model, _ = imported
    from tests.servers import free_port

    port = free_port()
    public = f"http://127.0.0.1:{port}"
    issuers = json.dumps({"https://ehr.test": f"{fhir.url}/jwks.json"})
    with bento_server(tmp_path_factory.mktemp("jwt"), str(model.tag), port=port, PVERISK_SERVE_CDS_JWT_REQUIRED="true",
                      PVERISK_SERVE_CDS_ISSUERS=issuers, PVERISK_SERVE_PUBLIC_URL=public) as s:
        yield s, key


def _token(key, aud, iss="https://ehr.test", exp_in=300, jti=None):
    now = int(time.time())
    return jwt.encode({"iss": iss, "aud": aud, "exp": now + exp_in, "iat": now, "jti": jti or str(uuid.uuid4()),
                       "sub": "ehr-client"}, key, algorithm="RS384", headers={"kid": "k1"})


def test_jwt_good_expired_wrong_audience_unknown_issuer_replay(jwt_server):
    s, key = jwt_server
    aud = f"{s.url}{SERVICE}"
    body = hook_request("hi-1", True)

    def call(token):
        return cards(s, body, headers={"authorization": f"Bearer {token}"}).status_code

    assert cards(s, body).status_code == 401
    assert call(_token(key, aud)) == 200
    assert call(_token(key, aud, exp_in=-60)) == 401
    assert call(_token(key, f"{s.url}/somewhere-else")) == 401
    assert call(_token(key, aud, iss="https://evil.test")) == 401
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert call(_token(other, aud)) == 401  # signed by a key not in the JWKS
    replay = _token(key, aud, jti="same-jti")
    assert call(replay) == 200 and call(replay) == 401


def test_feedback_requires_a_jwt_for_the_feedback_endpoint(jwt_server):
    s, key = jwt_server
    url = f"{s.url}{SERVICE}/feedback"

    def call(headers=None):
        return httpx.post(url, json=_feedback(), headers=headers or {}).status_code

    assert call() == 401
    assert call({"authorization": f"Bearer {_token(key, f'{s.url}{SERVICE}')}"}) == 401  # aud: the hook, not feedback
    assert call({"authorization": f"Bearer {_token(key, url, exp_in=-60)}"}) == 401
    assert call({"authorization": f"Bearer {_token(key, url)}"}) == 200


def test_cors_preflight_for_browser_sandboxes(jwt_server):
    s, _ = jwt_server
    r = httpx.options(f"{s.url}{SERVICE}", headers={"origin": "https://sandbox.cds-hooks.org",
                                                      "access-control-request-method": "POST",
                                                      "access-control-request-headers": "authorization,content-type"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] in ("*", "https://sandbox.cds-hooks.org")
