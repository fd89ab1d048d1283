"""Start real servers on 127.0.0.1 for the tests, and stop them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

from benchmarks.bench_http import free_port, stop  # noqa: F401  (re-exported to the tests)

VENV_BIN = Path(sys.executable).parent


def offline_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
                # unbuffered output: a log check reads what the server has really written so far
                "PYTHONUNBUFFERED": "1"})
    # The venv's tools (uv for `bentoml build`, uvicorn for `mlflow models serve`) even when the
    # tests run without `uv run` or an activated venv.
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0, expect: int = 200) -> float:
    """Poll until `url` answers `expect`; returns seconds waited. Fails fast if the process died."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"server exited with {proc.returncode}:\n{out[-4000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == expect:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout} s")


@contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """A real `mlflow server` (1 worker, SQLite backend, proxied artifacts) on loopback."""
    with mlflow_server_process(root) as (url, _):
        yield url


@contextmanager
def mlflow_server_process(root: Path, port: int | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """The same, yielding its process too (fault tests kill it); a given port and the same `root`
    restart a server on the same store."""
    port = port or free_port()
    cmd = [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--artifacts-destination", str(root / "art")]
    # Output to a file, never an unread pipe: once 64 KB of access-log lines fill a pipe, the
    # server blocks on its next log line and every client waits forever.
    log = open(root / "mlflow-server.log", "a")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env=offline_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))
    try:
        try:
            wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=90)
        except (RuntimeError, TimeoutError) as exc:
            log.flush()
            raise RuntimeError(f"{exc}\n{(root / 'mlflow-server.log').read_text(errors='replace')[-3000:]}") from None
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop(proc)
        log.close()


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a server and every process it started (a crash, not a shutdown): its workers
    would otherwise go on answering."""
    import psutil

    try:
        root = psutil.Process(proc.pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=15)
    proc.wait(15)
