"""The registration lock (training/registry.py) on a local SQLite store: held, released on error,
busy with a clear message, and broken when stale (its holder died mid-registration)."""

from __future__ import annotations

import time

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import local_tracking
from training import registry


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> MlflowClient:
    """One store for the module (creating an MLflow database takes seconds); each test its own name."""
    return MlflowClient(local_tracking(tmp_path_factory.mktemp("lock")).tracking_uri)


def _locks(client: MlflowClient, name: str) -> list[str]:
    return [m.name for m in client.search_registered_models() if m.name == name + registry.LOCK_SUFFIX]


def test_lock_is_held_then_released_even_on_error(client):
    with pytest.raises(RuntimeError, match="inside"):
        with registry.registration_lock(client, "a"):
            assert _locks(client, "a") == ["a" + registry.LOCK_SUFFIX]
            raise RuntimeError("inside")
    assert _locks(client, "a") == []


def test_a_held_lock_makes_the_second_run_wait_then_say_who(client):
    with registry.registration_lock(client, "b"):
        with pytest.raises(registry.RegistrationBusy, match="delete the registered model 'b.registration-lock'"):
            with registry.registration_lock(client, "b", timeout_s=0.5):
                pass


def test_a_stale_lock_is_broken(client):
    client.create_registered_model("c" + registry.LOCK_SUFFIX,
                                   tags={"holder": "dead", "since_unix": f"{time.time() - 7200:.0f}"})
    with registry.registration_lock(client, "c", timeout_s=5):
        held = client.get_registered_model("c" + registry.LOCK_SUFFIX)
        assert held.tags["holder"] != "dead"
    assert _locks(client, "c") == []
