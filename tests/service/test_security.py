"""Security over real HTTP: the API key (read from a file) and its negative cases, the CDS Hooks JWT
against a JWKS served on 127.0.0.1 by the test (every way a token can be wrong), a scan of the
service's whole log for every value the test sent, and a Bento image that runs as non-root.

Who guards what: every /v1/ route needs the API key when one is set. CDS Hooks calls are
authenticated by the EHR's JWT when PVERISK_SERVE_CDS_JWT_REQUIRED is on (an EHR sends a JWT, not
our key); with it off and a key set, they need the key (they take a `fhirServer` URL that the
service calls, so they must not be open to anyone on the network). Discovery stays public."""

import base64
import json
import os
import subprocess
import time
import uuid
from datetime import date
from pathlib import Path

import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from feature_store import contract as c
from ehr.examples import record_to_bundle
from feature_store.settings import project_root
from tests.fixtures.fhir import hook_request, patient_resources
from tests.servers import VENV_BIN, free_port, offline_env
from tests.service.conftest import bento_server
from tests.service.fhir_server import TOKEN, FhirServer

pytestmark = pytest.mark.slow
SERVICE = "/cds-services/pve-progression-risk"
KEY = "key-Vn4q8ZrT2wLx9sKp"
ISSUER = "https://ehr.security.test"


@pytest.fixture(scope="module")
def fhir():
    with FhirServer() as f:
        yield f


@pytest.fixture(scope="module")
def signing_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def secured(imported, fhir, signing_key, tmp_path_factory):
    """API key from a file, CDS Hooks JWT required (issuer -> the test's JWKS on 127.0.0.1)."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    fhir.jwks = {"keys": [{**jwk, "kid": "sec-1", "alg": "RS384", "use": "sig"}]}
    tmp = tmp_path_factory.mktemp("secured")
    key_file = tmp / "api-key"
    key_file.write_text(KEY + "\n")  # as a secret mount writes it: the newline is not part of the key
    key_file.chmod(0o600)
    port = free_port()
    model, _ = imported
    with bento_server(tmp, str(model.tag), port=port, PVERISK_SERVE_API_KEY_FILE=str(key_file),
                      PVERISK_SERVE_CDS_JWT_REQUIRED="true", PVERISK_SERVE_PUBLIC_URL=f"http://127.0.0.1:{port}",
                      PVERISK_SERVE_CDS_ISSUERS=json.dumps({ISSUER: f"{fhir.url}/jwks.json"})) as s:
        yield s


def token(key, aud, *, iss=ISSUER, exp_in=300, jti=None, alg="RS384", kid="sec-1", drop=(), **extra):
    now = int(time.time())
    claims = {"iss": iss, "aud": aud, "exp": now + exp_in, "iat": now, "jti": jti or str(uuid.uuid4()),
              "sub": "ehr-client", **extra}
    for name in drop:
        claims.pop(name)
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def unsigned(claims: dict) -> str:
    def b64(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    return f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': 'sec-1'})}.{b64(claims)}."


# --- API key --------------------------------------------------------------------------------------

def test_api_key_negative_cases(secured):
    url, patient = f"{secured.url}/v1/predict", c.example_record()

    def status(headers=None, params=None):
        return httpx.post(url, json=patient, headers=headers or {}, params=params or {}).status_code

    assert status({"x-api-key": KEY}) == 200
    assert status({"authorization": f"Bearer {KEY}"}) == 200
    assert status({"authorization": f"bearer {KEY}"}) == 200  # the scheme is case-insensitive (RFC 7235)
    refused = {
        "missing": status(),
        "empty header": status({"x-api-key": ""}),
        "wrong": status({"x-api-key": "key-Vn4q8ZrT2wLx9sKq"}),
        "prefix of the key": status({"x-api-key": KEY[:-1]}),
        "key plus more": status({"x-api-key": KEY + "x"}),
        "with the file's newline": status({"x-api-key": KEY + " x"}),
        "wrong case": status({"x-api-key": KEY.upper()}),
        "Basic scheme": status({"authorization": "Basic " + base64.b64encode(f"user:{KEY}".encode()).decode()}),
        "Token scheme": status({"authorization": f"Token {KEY}"}),
        "bare key as authorization": status({"authorization": KEY}),
        "in the query string": status(params={"api_key": KEY}),
        "wrong X-API-Key beside a right Bearer": status({"x-api-key": "nope", "authorization": f"Bearer {KEY}"}),
    }
    assert set(refused.values()) == {401}, refused
    r = httpx.post(url, json=patient)
    assert r.headers["www-authenticate"] == "Bearer" and KEY not in r.text
    for path in ("/v1/model",):
        assert httpx.get(f"{secured.url}{path}").status_code == 401
        assert httpx.get(f"{secured.url}{path}", headers={"x-api-key": KEY}).status_code == 200
    # path tricks do not reach a /v1/ route around the check
    for path in ("//v1/predict", "/v1//predict", "/v1/./predict", "/%761/predict", "/V1/predict"):
        r = httpx.post(f"{secured.url}{path}", json=patient)
        assert r.status_code in (401, 404, 405), (path, r.status_code)
    spec = httpx.get(f"{secured.url}/docs.json").json()  # the docs say how to authenticate
    assert spec["components"]["securitySchemes"]["ApiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert spec["paths"]["/v1/predict"]["post"]["security"] == [{"ApiKey": []}, {"Bearer": []}]


def test_the_key_is_compared_in_constant_time(monkeypatch):
    # not a timing measurement (those flake): the comparison must go through hmac.compare_digest
    import serving.web as web
    from serving.settings import ServingSettings

    calls = []
    real = web.hmac.compare_digest
    monkeypatch.setattr(web.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    guard = web.GuardMiddleware(None, ServingSettings(api_key="k" * 20))
    assert guard._authorised({"headers": [(b"x-api-key", b"k" * 20)]})
    assert not guard._authorised({"headers": [(b"x-api-key", b"k" * 19)]})
    assert not guard._authorised({"headers": []})
    assert len(calls) == 3


# --- CDS Hooks JWT --------------------------------------------------------------------------------

def test_jwt_negative_cases(secured, signing_key):
    aud = f"{secured.url}{SERVICE}"
    body = hook_request("hi-1", True)

    def call(tok, scheme="Bearer"):
        return httpx.post(f"{secured.url}{SERVICE}", json=body, headers={"authorization": f"{scheme} {tok}"},
                          timeout=30).status_code

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = signing_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    good = token(signing_key, aud)
    head, payload, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged_payload = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "admin"}).encode()).rstrip(b"=").decode()
    import hmac as _hmac
    import hashlib

    def hs256_with_public_key() -> str:  # algorithm confusion: the public key used as an HMAC secret
        h = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "sec-1"}).encode()).rstrip(b"=")
        p = base64.urlsafe_b64encode(json.dumps({**claims, "jti": str(uuid.uuid4())}).encode()).rstrip(b"=")
        s = base64.urlsafe_b64encode(_hmac.new(public_pem, h + b"." + p, hashlib.sha256).digest()).rstrip(b"=")
        return (h + b"." + p + b"." + s).decode()

    refused = {
        "no token": httpx.post(f"{secured.url}{SERVICE}", json=body).status_code,
        "the API key instead": call(KEY),
        "alg none": call(unsigned({**claims, "jti": str(uuid.uuid4())})),
        "HS256 with the public key": call(hs256_with_public_key()),
        "bad signature": call(f"{head}.{forged_payload}.{sig}"),
        "signed by another key": call(token(other, aud)),
        "unknown kid": call(token(signing_key, aud, kid="nope")),
        "wrong issuer": call(token(signing_key, aud, iss="https://evil.test")),
        "wrong audience": call(token(signing_key, f"{secured.url}/cds-services/other")),
        "expired": call(token(signing_key, aud, exp_in=-120)),
        "not yet valid": call(token(signing_key, aud, nbf=int(time.time()) + 3600)),
        "no jti": call(token(signing_key, aud, drop=("jti",))),
        "no exp": call(token(signing_key, aud, drop=("exp",))),
        "not a JWT": call("not-a-jwt"),
        "Basic scheme": call(good, scheme="Basic"),
    }
    assert set(refused.values()) == {401}, refused
    assert call(good) == 200
    assert call(good) == 401  # replayed jti
    # with the JWT required, the API key is neither needed nor enough on the CDS calls
    fb = {"feedback": [{"card": "c1", "outcome": "accepted", "outcomeTimestamp": "2026-01-15T10:00:00Z"}]}
    assert httpx.post(f"{secured.url}{SERVICE}/feedback", json=fb, headers={"x-api-key": KEY}).status_code == 401
    assert httpx.get(f"{secured.url}/cds-services").status_code == 200  # discovery is public


# --- logs -----------------------------------------------------------------------------------------

def test_the_whole_log_holds_none_of_the_values_sent(secured, signing_key, fhir):
    """Distinctive values in every place a request can carry them, valid and invalid; then every
    line the service wrote (stdout and stderr, all processes) is searched for each of them."""
    key = {"x-api-key": KEY}
    sent: list[str] = [KEY, "key-WRONG-h7Gm2Qx"]
    patient = {**c.example_record(), "cea_ng_ml": 4321.987, "albumin_g_dl": 3.4567, "age_years": 71.23}
    sent += ["4321.987", "3.4567", "71.23"]
    r = httpx.post(f"{secured.url}/v1/predict", json=patient, headers=key)
    assert r.status_code == 200
    bad = {**patient, "cea_ng_ml": 987654.321, "platelets_10e9_l": 8765.4, "sex": "sex-Zq9Wv"}
    sent += ["987654.321", "8765.4", "sex-Zq9Wv"]
    assert httpx.post(f"{secured.url}/v1/predict", json=bad, headers=key).status_code == 400
    assert httpx.post(f"{secured.url}/v1/predict", json={**patient, "field-Kd8Pq": 1}, headers=key).status_code == 400
    sent.append("field-Kd8Pq")
    batch = {"patients": [{**patient, "patient_id": "pid-Batch-Rt5Yu", "n_liver_metastases": 77}, bad],
             "partial": True}
    sent += ["pid-Batch-Rt5Yu"]
    assert httpx.post(f"{secured.url}/v1/predict/batch", json=batch, headers=key).status_code in (200, 400)
    assert httpx.post(f"{secured.url}/v1/predict", json=patient,
                      headers={"x-api-key": "key-WRONG-h7Gm2Qx"}).status_code == 401
    # FHIR: a patient id and resource ids in a Bundle, valid and refused
    bundle = record_to_bundle(patient, patient_id="pid-Fhir-Mx3Jn", when=date.today().isoformat())
    sent.append("pid-Fhir-Mx3Jn")
    assert httpx.post(f"{secured.url}/v1/predict/fhir", json=bundle, headers=key).status_code == 200
    bad_bundle = json.loads(json.dumps(bundle).replace("pid-Fhir-Mx3Jn", "pid-Fhir-Bad-Lw2Ke"))
    bad_bundle["entry"] = [e for e in bad_bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    sent.append("pid-Fhir-Bad-Lw2Ke")
    assert httpx.post(f"{secured.url}/v1/predict/fhir", json=bad_bundle, headers=key).status_code == 422
    # CDS Hooks: patient ids, user, FHIR access token, JWTs (accepted, replayed, forged)
    aud = f"{secured.url}{SERVICE}"
    good = token(signing_key, aud)
    body = hook_request("pid-Cds-Pn6Vb", True, context={"userId": "Practitioner/dr-Hs4Ty",
                                                         "patientId": "pid-Cds-Pn6Vb"})
    sent += ["pid-Cds-Pn6Vb", "dr-Hs4Ty", good, good.split(".")[2]]
    r = httpx.post(aud, json=body, headers={"authorization": f"Bearer {good}"}, timeout=30)
    assert r.status_code == 200, r.text
    link = next(ln["url"] for ln in r.json()["cards"][0]["links"] if "#prefill=" in ln["url"])
    prefill = link.split("#prefill=")[1]
    sent.append(prefill)
    assert httpx.post(aud, json=body, headers={"authorization": f"Bearer {good}"}).status_code == 401  # replay
    forged = token(rsa.generate_private_key(public_exponent=65537, key_size=2048), aud)
    sent += [forged, forged.split(".")[2]]
    assert httpx.post(aud, json=body, headers={"authorization": f"Bearer {forged}"}).status_code == 401
    fhir.patients["pid-Fetch-Wk28"] = patient_resources("pid-Fetch-Wk28", True)
    fetch = hook_request("pid-Fetch-Wk28", True, with_prefetch=False, fhirServer=fhir.url,
                         fhirAuthorization={"access_token": TOKEN, "token_type": "Bearer",
                                            "subject": "client-Yb7Ur"})
    sent += ["pid-Fetch-Wk28", TOKEN, "client-Yb7Ur"]
    r = httpx.post(aud, json=fetch, headers={"authorization": f"Bearer {token(signing_key, aud)}"}, timeout=30)
    assert r.status_code == 200, r.text
    missing = hook_request("pid-Missing-Qa1Zs", True, with_prefetch=False)
    sent.append("pid-Missing-Qa1Zs")
    assert httpx.post(aud, json=missing, headers={"authorization": f"Bearer {token(signing_key, aud)}"}
                      ).status_code == 412
    comment = "comment-Ft6Gh tumour board"
    fb = {"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-01-15T10:00:00Z",
                        "overrideReason": {"reason": {"code": "already-considered"}, "userComment": comment}}]}
    sent.append("comment-Ft6Gh")
    assert httpx.post(f"{aud}/feedback", json=fb, headers={
        "authorization": f"Bearer {token(signing_key, f'{aud}/feedback')}"}).status_code == 200
    assert httpx.post(f"{secured.url}/v1/prefill", json={"token": prefill}, headers=key).status_code == 200
    log = secured.flushed_log()  # positive control: the capture is complete
    assert "/v1/predict" in log and SERVICE in log  # the requests were logged (access log) ...
    leaked = [v for v in sent if v in log]
    assert not leaked, leaked  # ... the values they carried were not


# --- the image ------------------------------------------------------------------------------------

def test_the_bento_image_runs_as_non_root(imported, tmp_path):
    model, _ = imported
    home = tmp_path / "bentoml-home"
    home.mkdir()
    (home / "models").symlink_to(Path(os.environ["BENTOML_HOME"]) / "models", target_is_directory=True)
    env = offline_env(PVERISK_SERVE_MODEL_TAG=str(model.tag), PIP_NO_INDEX="1", UV_OFFLINE="1",
                      BENTOML_HOME=str(home))
    proc = subprocess.run([str(VENV_BIN / "bentoml"), "build", "-f", "bentofile.yaml", "--output", "tag"],
                          cwd=project_root(), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    tag = proc.stdout.strip().splitlines()[-1].replace("__tag__:", "")
    bento = home / "bentos" / tag.replace(":", "/")
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), users  # the last USER is the one the service runs as
    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    assert not any("KEY" in str(e.get("name", "")).upper() for e in manifest.get("envs") or [])  # no secret baked in
