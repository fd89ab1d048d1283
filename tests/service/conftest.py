"""A real `bentoml serve` on 127.0.0.1 with a freshly trained small model."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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


@contextmanager
def bento_server(tmp: Path, tag: str, wait_ready: bool = True, port: int | None = None, **env: str
                 ) -> Iterator[Server]:
    port = port or free_port()
    log = tmp / f"server-{port}.log"
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
