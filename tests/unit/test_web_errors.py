"""BentoML's own refusals reworded (serving/errors.py): pydantic's title and documentation links out, the
fields named in the headline, the problems kept; other answers untouched."""

from __future__ import annotations

import asyncio
import json

from serving.errors import plain_client_errors, reworded

BENTO_400 = {"error": "2 validation errors for Input", "detail": [
    {"type": "missing", "loc": ["n_liver_metastases"], "msg": "Field required",
     "url": "https://errors.pydantic.dev/2.11/v/missing"},
    {"type": "value_error", "loc": ["age_years"], "msg": "Value error, 150.5: outside the allowed range 18 to 100 years",
     "url": "https://errors.pydantic.dev/2.11/v/value_error"}]}


def test_pydantic_title_and_links_are_replaced_problems_kept():
    out = json.loads(reworded(json.dumps(BENTO_400).encode()))
    assert out["error"] == ("invalid request: 2 problems (age_years, n_liver_metastases); each is listed in detail "
                            "with what is wrong")
    assert [e["loc"] for e in out["detail"]] == [["n_liver_metastases"], ["age_years"]]
    assert all("url" not in e for e in out["detail"])
    assert "outside the allowed range 18 to 100 years" in out["detail"][1]["msg"]


def test_a_list_wrapped_error_becomes_an_object_and_others_are_left_alone():
    assert json.loads(reworded(b'[{"error": "not found"}]')) == {"error": "not found"}
    assert reworded(b'{"error": "missing required input", "detail": []}') is None
    assert reworded(b"not json") is None


def _run(status: int, ctype: bytes, chunks: list[bytes]) -> list[dict]:
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def go():
        wrapped = plain_client_errors(send)
        await wrapped({"type": "http.response.start", "status": status,
                       "headers": [(b"content-type", ctype), (b"content-length", b"999")]})
        for i, chunk in enumerate(chunks):
            await wrapped({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    asyncio.run(go())
    return sent


def test_a_4xx_json_body_is_held_rewritten_and_its_length_fixed():
    raw = json.dumps(BENTO_400).encode()
    sent = _run(400, b"application/json", [raw[:20], raw[20:]])
    assert len(sent) == 2
    body = sent[1]["body"]
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(body)).encode()
    assert json.loads(body)["error"].startswith("invalid request: 2 problems")


def test_success_and_server_errors_pass_through_unbuffered():
    for status in (200, 500):
        sent = _run(status, b"application/json", [b'{"a":', b"1}"])
        assert [m.get("body") for m in sent] == [None, b'{"a":', b"1}"]


def test_pydantics_own_words_become_the_contracts():
    body = {"error": "3 validation errors for Input", "detail": [
        {"type": "missing", "loc": ["n_liver_metastases"], "msg": "Field required"},
        {"type": "extra_forbidden", "loc": ["degree_hypertrophy_pp"], "msg": "Extra inputs are not permitted"},
        {"type": "extra_forbidden", "loc": ["kras"], "msg": "Extra inputs are not permitted"}]}
    msgs = [e["msg"] for e in json.loads(reworded(json.dumps(body).encode()))["detail"]]
    assert msgs[0] == "required value missing; allowed 1 to 100 count"
    assert msgs[1] == "known only after PVE: never an input of the pre-PVE model"
    assert msgs[2].startswith("unknown field")
    shape = {"error": "1 validation error for Input", "detail": [{"type": "model_type", "loc": [], "msg": "Input should be"}]}
    assert "JSON object" in json.loads(reworded(json.dumps(shape).encode()))["detail"][0]["msg"]


def test_thousands_of_problems_get_a_short_answer():
    body = {"error": "20000 validation errors for Input", "detail": [
        {"type": "extra_forbidden", "loc": [f"k{i}"], "msg": "Extra inputs are not permitted"} for i in range(20000)]}
    raw = json.dumps(body).encode()
    out = reworded(raw)
    assert len(out) < 20_000 < len(raw)
    data = json.loads(out)
    assert data["error"].startswith("invalid request: 20000 problems (") and data["error"].count(",") <= 11
    assert len(data["detail"]) == 101 and data["detail"][-1]["msg"] == "... and 19900 more problems"
