"""Locust user for the load benchmark and the load smoke test (run by benchmarks/bench_load.py).

Never imported by the project: importing locust monkey-patches the standard library (gevent).
Reads its cases from PVERISK_LOAD_CASES (JSON written by bench_load.write_cases): request bodies
with the answer the service's own scoring code gives for them. A response counts as a success
only if it is a 200 AND carries exactly those probabilities and risk bands, so a load that
mixed up patients or answered from a half-loaded model shows as failures, not as speed. Raw
response times go to PVERISK_LOAD_TIMINGS at the end (Locust's own percentiles are bucketed).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter, defaultdict
from typing import Any

from locust import FastHttpUser, constant, events, task

with open(os.environ["PVERISK_LOAD_CASES"]) as _fh:
    CASES: dict[str, Any] = json.load(_fh)
TOL = 1e-9
_next = {kind: itertools.count() for kind in ("single", "batch")}
TIMES: dict[str, list[float]] = defaultdict(list)
FAILURES: Counter[str] = Counter()  # message -> count
FAILED: Counter[str] = Counter()  # request name -> count
CLOCK: dict[str, float] = {}


def check(body: dict[str, Any], expected: list[list[Any]], batch: bool) -> str | None:
    """Why a 200 response is wrong (None: it is right)."""
    results = body.get("results") if batch else [body]
    if not isinstance(results, list) or len(results) != len(expected):
        return f"expected {len(expected)} results, got {len(results) if isinstance(results, list) else results!r}"
    for i, (r, (prob, band)) in enumerate(zip(results, expected)):
        if not isinstance(r.get("probability"), (int, float)) or abs(r["probability"] - prob) > TOL:
            return f"result {i}: probability {r.get('probability')!r}, expected {prob!r}"
        if r.get("risk_band") != band:
            return f"result {i}: risk band {r.get('risk_band')!r}, expected {band!r}"
    if body.get("data_kind") != CASES["data_kind"]:  # every response says what the model was trained on
        return f"data_kind {body.get('data_kind')!r}, expected {CASES['data_kind']!r}"
    return None


class Clinician(FastHttpUser):
    """A closed loop: each user sends its next request as soon as the last one answered."""
    wait_time = constant(0)

    def _post(self, kind: str, path: str) -> None:
        cases = CASES[kind]
        case = cases[next(_next[kind]) % len(cases)]
        with self.client.post(path, data=case["body"], headers={"content-type": "application/json"},
                              name=kind, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
                return
            try:
                why = check(resp.json(), case["expected"], kind == "batch")
            except ValueError as exc:
                why = f"not JSON: {exc}"
            if why:
                resp.failure(why)
            else:
                resp.success()

    @task(9)
    def single(self) -> None:
        self._post("single", "/v1/predict")

    @task(1)
    def batch(self) -> None:
        self._post("batch", "/v1/predict/batch")


@events.test_start.add_listener
def _start(**_: Any) -> None:
    CLOCK["start"] = time.perf_counter()


@events.request.add_listener
def _record(name: str, response_time: float, exception: BaseException | None, **_: Any) -> None:
    TIMES[name].append(response_time)
    if exception is not None:
        FAILED[name] += 1
        FAILURES[f"{name}: {str(exception)[:200]}"] += 1


@events.quitting.add_listener
def _write(**_: Any) -> None:
    out = os.environ.get("PVERISK_LOAD_TIMINGS")
    if out:
        seconds = time.perf_counter() - CLOCK.get("start", time.perf_counter())
        with open(out, "w") as fh:
            json.dump({"seconds": seconds, "times_ms": TIMES, "failed": dict(FAILED), "failures": dict(FAILURES)}, fh)
