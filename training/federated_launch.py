"""Starting Flower's own processes for `pverisk federated ...`: the SuperLink (coordinator), a SuperNode per
hospital (after its file is validated and cached locally), `flwr run` of the Flower App that trains, and
Flower's simulation engine. Flower's networking throughout; this module only builds the commands and their
environment (offline: telemetry and update checks off, no run-time installs; Flower's home in a folder of
the run's own).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from feature_store.settings import project_root

APP_DIR = Path(__file__).resolve().parent / "flower_app"
CONNECTION = "pverisk"


class FlowerMissing(RuntimeError):
    pass


def flower_bin(name: str) -> str:
    """A Flower command of this environment (Flower lives in the `federated` extra's environment)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FlowerMissing(f"Flower is not installed in this environment ({sys.prefix}): federated commands run from "
                            "the `federated` extra's environment: `make install-federated`, then "
                            "`.venv-federated/bin/pverisk federated ...` (or `uv sync --extra federated` on a site's "
                            "own machine)")
    return str(path)


def flower_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "RAY_USAGE_STATS_ENABLED": "0",
        "FLWR_HOME": str(home), "PYTHONUNBUFFERED": "1",
        # Flower's task executor polls for work every second by default; a few tenths keep rounds short
        "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": os.environ.get("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.2"),
        # Flower starts its helper processes by name: this environment's bin first
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
    })
    env.update(extra)
    return env


def tls_args(insecure: bool, certificates: Path | None, role: str) -> list[str]:
    if insecure:
        return ["--insecure"]
    if certificates is None:
        raise ValueError("give --insecure (loopback or a trusted network) or the TLS files (--certificates DIR with "
                         "ca.crt, server.pem, server.key)")
    if role == "superlink":
        return ["--ssl-ca-certfile", str(certificates / "ca.crt"), "--ssl-certfile", str(certificates / "server.pem"),
                "--ssl-keyfile", str(certificates / "server.key")]
    return ["--root-certificates", str(certificates / "ca.crt")]


def superlink_command(host: str, port: int, insecure: bool, certificates: Path | None, database: Path | None
                      ) -> list[str]:
    return [flower_bin("flower-superlink"), *tls_args(insecure, certificates, "superlink"), "--host", host,
            "--port", str(port), "--disable-runtime-dependency-installation",
            *(["--database", str(database)] if database else [])]


def supernode_command(superlink: str, site: str, cache: Path, runtime_port: int, insecure: bool,
                      certificates: Path | None) -> list[str]:
    node_config = f'site-name="{site}" cache="{cache}"'
    return [flower_bin("flower-supernode"), *tls_args(insecure, certificates, "supernode"), "--superlink", superlink,
            "--port", str(runtime_port), "--node-config", node_config]


def run_command(superlink: str, config: dict[str, Any], home: Path, insecure: bool, certificates: Path | None
                ) -> list[str]:
    """`flwr run` of the Flower App against this SuperLink; writes the connection into Flower's home."""
    home.mkdir(parents=True, exist_ok=True)
    tls = "insecure = true" if insecure else f'root-certificates = "{certificates / "ca.crt"}"'  # type: ignore[operator]
    (home / "config.toml").write_text(f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
                                      f'address = "{superlink}"\n{tls}\n')
    overrides = " ".join(f"{k}={_toml(v)}" for k, v in config.items())
    return [flower_bin("flwr"), "run", str(APP_DIR), CONNECTION, "--stream", "--run-config", overrides]


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_foreground(cmd: list[str], env: dict[str, str], cleanup: Path | None = None) -> int:
    """Run a Flower process until it ends (or this one is interrupted or terminated), then stop it. It stays in
    this process's group, so whoever stops the group (a supervisor, a test) stops Flower's helpers too."""
    proc = subprocess.Popen(cmd, env=env, cwd=project_root())
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return proc.wait()
    except (KeyboardInterrupt, SystemExit):
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def site_work_dir(work_dir: Path | None) -> tuple[Path, bool]:
    """Where a site keeps its cache: the given folder (kept), or a temporary one (removed at the end)."""
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        return work_dir, False
    return Path(tempfile.mkdtemp(prefix="pverisk-site-")), True
