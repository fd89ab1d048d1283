"""MLflow tracking for a training run: the store and experiment, the run's provenance (commit, model
environment, dataset source), and one clear error when a tracking server stops answering mid-run."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from typing import Any, Iterator

import mlflow
from mlflow.tracking import MlflowClient

from feature_store.settings import project_root
from training import registry
from training.settings import TrackingSettings


class TrackingUnavailable(RuntimeError):
    """The tracking server stopped answering during a run."""


def _server_down(uri: str) -> bool:
    """A remote tracking server that does not answer its health check (local stores: never)."""
    if not uri.startswith(("http://", "https://")):
        return False
    import httpx

    try:
        return httpx.get(f"{uri.rstrip('/')}/health", timeout=5).status_code != 200
    except httpx.HTTPError:
        return True


@contextmanager
def tracking_guard(uri: str, stage: list[str], run_id: list[str]) -> Iterator[None]:
    """Turn a tracking server that stops mid-run into one clear error: where the run was, what was
    and was not registered, what to do. (Without it the user saw MLflow's error from marking the run
    failed, which replaced the first one after minutes of retries.)"""
    try:
        yield
    except registry.RegistrationIncomplete as exc:
        if _server_down(uri):
            raise TrackingUnavailable(f"the MLflow tracking server at {uri} stopped answering while "
                                      f"registering (run {run_id[0] if run_id else '?'}): {exc}") from exc
        raise
    except Exception as exc:
        if not _server_down(uri):
            raise
        first = exc
        while first.__context__ is not None and isinstance(first.__context__, Exception):
            first = first.__context__  # MLflow's failed attempt to mark the run failed hides the cause
        run = f"run {run_id[0]}" if run_id else "before the run started"
        raise TrackingUnavailable(
            f"the MLflow tracking server at {uri} stopped answering during training ({run}, while "
            f"{stage[-1] if stage else 'connecting'}): nothing was registered and no alias moved; the run may "
            f"stay marked RUNNING there. Rerun the training once the server answers again. "
            f"({type(first).__name__}: {str(first)[:300]})") from exc


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pinned_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("xgboost", "scikit-learn", "numpy", "pandas", "mlflow")]


def conda_env() -> dict[str, Any]:
    """The model's environment, stated in full: given only pip requirements, MLflow looks up the
    installed pip to write conda.yaml and warns on every run in a venv without pip (uv's)."""
    import platform

    return {"name": "pverisk-model", "channels": ["conda-forge"],
            "dependencies": [f"python={platform.python_version()}", "pip", {"pip": pinned_requirements()}]}


def dataset_source(path: str) -> Any:
    """The cohort file as MLflow's local-file dataset source, stated rather than guessed: MLflow
    registers two resolvers for local paths and warns at every guess. The path itself when no
    local resolver is registered (an MLflow change)."""
    from mlflow.data.dataset_source_registry import get_registered_sources

    local = [s for s in get_registered_sources() if s._get_source_type() == "local"]
    return local[-1]._resolve(path) if local else path


def configure_tracking(tracking: TrackingSettings) -> MlflowClient:
    """Point MLflow at the configured store and make sure the experiment exists."""
    mlflow.set_tracking_uri(tracking.tracking_uri)
    client = MlflowClient(tracking.tracking_uri)
    if client.get_experiment_by_name(tracking.experiment) is None:
        local = tracking.tracking_uri.startswith("sqlite:") or tracking.tracking_uri.startswith("file:")
        location = None
        if local:
            tracking.artifact_root.mkdir(parents=True, exist_ok=True)
            location = tracking.artifact_root.resolve().as_uri()
        client.create_experiment(tracking.experiment, artifact_location=location)
    mlflow.set_experiment(tracking.experiment)
    return client
