"""A small FHIR server on 127.0.0.1 for the tests: fixture patients, bearer-token check, JWKS,
searches answered in pages (Bundle.link "next"), and switches for 'slow', endless paging and
next links to another origin."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from tests.fixtures.fhir import patient_resources, searchset

TOKEN = "fixture-token-123"
# Types the server knows but holds none of for its fixture patients (the tumour, medication and order keys).
EMPTY_TYPES = ("BodyStructure", "MedicationAdministration", "MedicationRequest", "ServiceRequest", "Procedure")


class FhirServer:
    def __init__(self, page_size: int = 5) -> None:
        # 'slow': a request waits up to `delay` seconds or until `release` is set (tests set it when done)
        self.delay = 0.0
        self.release = threading.Event()
        self.page_size = page_size  # searches are paged: a client that ignores "next" misses data
        self.endless = False  # every page links to a next one
        self.next_base: str | None = None  # next links point here instead (another origin)
        self.jwks: dict[str, Any] = {"keys": []}
        self.requests: list[tuple[str, str]] = []
        self.patients = {"hi-1": patient_resources("hi-1", True), "lo-1": patient_resources("lo-1", False)}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/fhir+json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                server.requests.append((url.path, self.headers.get("authorization", "")))
                if url.path == "/jwks.json":
                    return self._send(200, server.jwks)
                if server.delay:
                    server.release.wait(server.delay)
                if self.headers.get("authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"resourceType": "OperationOutcome"})
                parts = url.path.strip("/").split("/")
                q = parse_qs(url.query)
                if parts[0] == "Patient" and len(parts) == 2 and parts[1] in server.patients:
                    return self._send(200, server.patients[parts[1]]["patient"][0])
                if parts[0] in ("Condition", "Observation") and q.get("patient", [""])[0] in server.patients:
                    key = "conditions" if parts[0] == "Condition" else "observations"
                    return self._send(200, server.page(url.path, q, server.patients[q["patient"][0]][key]))
                if parts[0] in EMPTY_TYPES and q.get("patient", [""])[0] in server.patients:
                    return self._send(200, server.page(url.path, q, []))  # none recorded for the fixture patients
                return self._send(404, {"resourceType": "OperationOutcome"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def page(self, path: str, query: dict[str, list[str]], resources: list[dict[str, Any]]) -> dict[str, Any]:
        """One page of a searchset, with a "next" link while more remain (always, when endless)."""
        n = int(query.get("_page", ["0"])[0])
        bundle = searchset(resources[n * self.page_size:(n + 1) * self.page_size])
        bundle["total"] = len(resources)
        if self.endless or (n + 1) * self.page_size < len(resources):
            params = {k: v[0] for k, v in query.items()} | {"_page": str(n + 1)}
            bundle["link"] = [{"relation": "next", "url": f"{self.next_base or self.url}{path}?{urlencode(params)}"}]
        return bundle

    def __enter__(self) -> "FhirServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
