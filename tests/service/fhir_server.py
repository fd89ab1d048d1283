"""A small FHIR server on 127.0.0.1 for the tests: fixture patients, bearer-token check, JWKS,
and switches for 'slow' and 'down'."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.fixtures.fhir import patient_resources, searchset

TOKEN = "fixture-token-123"


class FhirServer:
    def __init__(self) -> None:
        self.delay = 0.0
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
                    time.sleep(server.delay)
                if self.headers.get("authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"resourceType": "OperationOutcome"})
                parts = url.path.strip("/").split("/")
                q = parse_qs(url.query)
                if parts[0] == "Patient" and len(parts) == 2 and parts[1] in server.patients:
                    return self._send(200, server.patients[parts[1]]["patient"][0])
                if parts[0] in ("Condition", "Observation") and q.get("patient", [""])[0] in server.patients:
                    key = "conditions" if parts[0] == "Condition" else "observations"
                    return self._send(200, searchset(server.patients[q["patient"][0]][key]))
                return self._send(404, {"resourceType": "OperationOutcome"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FhirServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
