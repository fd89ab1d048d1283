"""A real `bentoml serve` on 127.0.0.1 with a freshly trained small model."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from feature_store.settings import project_root
from tests.servers import VENV_BIN, free_port, offline_env, stop, wait_http


@pytest.fixture(scope="session")
def imported(trained):
    """The session's champion imported into the session's BentoML store."""
    from serving.import_model import import_model

    result, tracking = trained
    model = import_model("champion", tracking)
    return model, result


class Server:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path, ready_seconds: float):
        self.url, self.proc, self.log, self.ready_seconds = url, proc, log, ready_seconds

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def flushed_log(self, timeout: float = 60.0) -> str:
        """The log up to now, shown to be complete: BentoML's access log records every request path,
        so a fresh marker path requested now must appear after everything logged before it. The
        positive control of every 'no value in the logs' check: without it an empty or lagging
        capture would pass them."""
        marker = f"log-marker-{uuid.uuid4()}"
        httpx.get(f"{self.url}/{marker}", timeout=30)  # a 404; what matters is its access-log line
        deadline = time.monotonic() + timeout  # a wait for the marker, not a speed check
        while time.monotonic() < deadline:
            text = self.log_text()
            if marker in text:
                return text
            time.sleep(0.1)
        raise AssertionError(f"the server log never showed {marker}: a leak check on this log proves nothing")


@contextmanager
def bento_server(tmp: Path, tag: str, wait_ready: bool = True, port: int | None = None, **env: str
                 ) -> Iterator[Server]:
    port = port or free_port()
    log = tmp / f"server-{port}.log"
    # Its own BentoML home around the session's model store: `bentoml serve` empties
    # BENTOML_HOME/prometheus_multiproc_dir at start, so servers sharing a home wipe each other's
    # /metrics (and show counters of servers that have stopped).
    home = tmp / f"bentoml-home-{port}"
    home.mkdir()
    (home / "models").symlink_to(Path(os.environ["BENTOML_HOME"]) / "models", target_is_directory=True)
    # the prediction-outcome link (monitoring/monitor.py) beside it, never in the project's data folder
    env = {"BENTOML_HOME": str(home), "PVERISK_MONITOR_STORE": str(home / "predictions.db"), **env}
    fh = open(log, "w")
    cmd = [str(VENV_BIN / "bentoml"), "serve", "serving.service:PVERisk", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=project_root(),
                            env=offline_env(PVERISK_SERVE_MODEL_TAG=tag, **env))
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            waited = wait_http(f"{url}/readyz", proc, timeout=120) if wait_ready else 0.0
        except (RuntimeError, TimeoutError) as exc:
            fh.flush()
            raise RuntimeError(f"{exc}\n{log.read_text(errors='replace')[-3000:]}") from None
        yield Server(url, proc, log, waited)
    finally:
        stop(proc)
        fh.close()


@pytest.fixture(scope="session")
def server(imported, tmp_path_factory) -> Iterator[Server]:
    model, _ = imported
    with bento_server(tmp_path_factory.mktemp("serve"), str(model.tag), PVERISK_SERVE_MAX_BATCH="50",
                      PVERISK_SERVE_MAX_BODY_BYTES="200000") as s:
        yield s
