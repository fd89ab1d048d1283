"""HTTP helpers shared by the benchmarks that start servers on loopback (serving, CDS Hooks,
Feast lookups, monitoring, load): a free port, readiness, the process tree's memory, sequential
and concurrent clients, wrk, percentiles. Measurement code only; nothing here asserts."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180, log: Path | None = None) -> float:
    """Seconds until `url` answers 200; the server's exit (with its log's tail, if given) is an error."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            tail = f":\n{log.read_text(errors='replace')[-3000:]}" if log is not None and log.exists() else ""
            raise RuntimeError(f"server exited ({proc.returncode}){tail}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


def rss_mb(proc: subprocess.Popen | int) -> float:
    """Resident memory of a process and all its descendants (BentoML's arbiter and workers), MB;
    NaN once the process is gone."""
    try:
        root = psutil.Process(proc if isinstance(proc, int) else proc.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:  # a worker restarting between the listing and the read
            pass
    return total / 2**20


def sequential(url: str, payload: bytes, n: int) -> list[float]:
    times = []
    with httpx.Client(headers={"content-type": "application/json"}) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            r = client.post(url, content=payload)
            times.append((time.perf_counter() - t0) * 1e3)
            r.raise_for_status()
    return times


async def concurrent(url: str, payload: bytes, concurrency: int, total: int) -> tuple[float, list[float]]:
    times: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers={"content-type": "application/json"}, limits=limits, timeout=30) as client:
        remaining = total

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                r = await client.post(url, content=payload)
                times.append((time.perf_counter() - t0) * 1e3)
                r.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - t0), times


def wrk(url: str, payload: bytes, connections: int, seconds: int = 10) -> tuple[float, float, float]:
    """(requests/s, median ms, p99 ms) from wrk: a C load generator whose own overhead is far
    below a Python client's, so the numbers are the servers', not the client's."""
    import re
    import shutil

    work = Path(tempfile.mkdtemp(prefix="wrk-"))
    (work / "body.json").write_bytes(payload)
    (work / "post.lua").write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{work / "body.json"}", "rb")\nwrk.body = f:read("*a")\nf:close()\n')
    threads = min(2, connections)
    out = subprocess.run([shutil.which("wrk") or "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(work / "post.lua"), url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rps, ms("50%"), ms("99%")


def percentile(times: list[float], q: float) -> float:
    return float(np.percentile(times, q))


def stop(proc: subprocess.Popen) -> None:
    """Terminate a server (and kill it if it does not exit within 15 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
