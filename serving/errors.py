"""BentoML's own refusals in the service's words.

BentoML answers a request its pydantic input model refuses with a 400 titled in pydantic's terms
("2 validation errors for Input"), each problem carrying a link to pydantic's documentation; and any
other client error it raises as a one-element JSON list instead of an object. Neither is configurable
in BentoML 1.4 (`_bentoml_impl/server/app.py: api_endpoint_wrapper`), so the guard middleware rewrites
those bodies on the way out: the field names in the headline, each problem in the contract's words (field,
what is wrong, allowed range: our validators write most messages; a field absent or unknown and a body that
is not an object pydantic words itself, and `feature_store.record.plain_problem` rewords), no link, always an
object.
"""

from __future__ import annotations

import json
import re
from typing import Any, Awaitable, Callable

Send = Callable[[dict[str, Any]], Awaitable[None]]

_PYDANTIC_TITLE = re.compile(r"^\d+ validation errors? for ")
_KEEP = ("loc", "msg", "type")
MAX_LISTED = 100  # problems listed in detail
MAX_NAMED = 10  # fields named in the headline


def reworded(body: bytes) -> bytes | None:
    """The body in our words, or None when it is not one of BentoML's refusals (left as it is)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict) and "error" in data[0]:
        return json.dumps(data[0]).encode()
    if not (isinstance(data, dict) and isinstance(data.get("error"), str) and _PYDANTIC_TITLE.match(data["error"])
            and isinstance(data.get("detail"), list)):
        return None
    n = len(data["detail"])
    # a body of 20,000 unknown keys gets a short answer, not one twice its size (trial: 1.9 MB)
    detail = [_plain({k: e[k] for k in _KEEP if k in e}) if isinstance(e, dict) else e
              for e in data["detail"][:MAX_LISTED]]
    if n > MAX_LISTED:
        detail.append({"loc": [], "msg": f"... and {n - MAX_LISTED} more problems", "type": "truncated"})
    fields = sorted({".".join(str(x) for x in e.get("loc", ())) or "body" for e in detail[:MAX_LISTED]
                     if isinstance(e, dict)})
    named = ", ".join(fields[:MAX_NAMED]) + (", ..." if len(fields) > MAX_NAMED or n > MAX_LISTED else "")
    headline = (f"invalid request: {n} problem{'s' if n != 1 else ''} ({named}); each is listed in "
                "detail with what is wrong")
    return json.dumps({**data, "error": headline, "detail": detail}).encode()


def _plain(problem: dict[str, Any]) -> dict[str, Any]:
    """pydantic's own words ("Field required", "Extra inputs are not permitted") in the contract's."""
    from feature_store.record import plain_problem

    loc = problem.get("loc") or []
    field = str(loc[-1]) if loc else None
    msg = plain_problem(str(problem.get("type", "")), field)
    return {**problem, "msg": msg} if msg else problem


def plain_client_errors(send: Send) -> Send:
    """`send` for one request: a 4xx JSON answer is held until complete and reworded (`reworded`); any
    other answer (2xx, 5xx, streams) passes through untouched, unbuffered."""
    held: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers") or [])
            if 400 <= message["status"] < 500 and headers.get(b"content-type", b"").startswith(b"application/json"):
                held.update(message)
                return
            await send(message)
            return
        if not held or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(chunks)
        body = reworded(body) or body
        headers = [(k, v) for k, v in held.get("headers") or [] if k.lower() != b"content-length"]
        await send({**held, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return wrapped
