"""The online feature store by patient id: the served model's feature service, opened once on first
use and shared by every route that asks (POST /v1/predict by patient id, the CDS Hooks service).

Feast is imported on the first lookup (or at start-up with PVERISK_SERVE_FEATURE_STORE_WARM): a
service that is only sent explicit features never pays its import time or memory. Patient ids are
never logged.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger("pverisk.online")


class OnlineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PVERISK_SERVE_")
    # Open the feature store (import Feast) in the background at start-up rather than on the first
    # request by patient id (Feast's import takes seconds).
    feature_store_warm: bool = False
    feature_store_timeout_s: float = Field(5.0, gt=0)


class StoreUnavailable(RuntimeError):
    pass


class OnlineFeatures:
    """The served model's view of the online store, opened once, on first use."""

    def __init__(self, model: str, version: str, features: tuple[str, ...]) -> None:
        self.model, self.version, self.features = model, version, features
        self._store: Any = None
        self._service: Any = None
        self._kind = ""
        self._lock = threading.Lock()

    @property
    def service_name(self) -> str:
        from feature_store.feast_repo import service_name

        return service_name(self.model, self.version)

    def _open(self) -> tuple[Any, Any]:
        with self._lock:
            if self._store is None:
                from feature_store import feast_repo as fr
                from feature_store.feast_settings import FeastSettings

                settings = FeastSettings()
                store = fr.open_store(settings)
                try:
                    service = store.get_feature_service(self.service_name)
                except Exception:  # not applied yet for this version: the same generated definition
                    service = fr.feature_service(self.service_name, self.features, fr.feature_views(settings))
                self._store, self._service, self._kind = store, service, settings.online_store
        return self._store, self._service

    def warm(self) -> None:
        try:
            self._open()
        except Exception as exc:  # the first request by patient id reports it
            logger.warning("opening the feature store failed: %s", type(exc).__name__)

    def lookup(self, patient_id: str) -> Any:
        from feature_store.feast_data import online_lookup

        try:
            store, service = self._open()
            return online_lookup(store, patient_id, service)
        except Exception as exc:
            first = (str(exc).splitlines() or [""])[0][:300]
            # the exception text is the store's (host, port, file), never the patient id we asked for
            logger.warning("online feature store unavailable: %s", type(exc).__name__)
            raise StoreUnavailable(f"{type(exc).__name__}: {first}") from None


_SHARED: dict[tuple[str, str], OnlineFeatures] = {}
_SHARED_LOCK = threading.Lock()


def online_features(model: str, version: str, features: tuple[str, ...]) -> OnlineFeatures:
    """One store per served model version, shared by /v1/predict and the CDS service."""
    with _SHARED_LOCK:
        key = (model, version)
        if key not in _SHARED:
            _SHARED[key] = OnlineFeatures(model, version, tuple(features))
        return _SHARED[key]


def store_configured() -> bool:
    """A feature store is set up for this service: `pverisk features apply` wrote its configuration,
    or the environment names a production online store. The CDS service consults the store only
    then (requests by patient id always try it: asking is configuration enough)."""
    import os

    from feature_store.feast_settings import FeastSettings

    return "PVERISK_FEAST_ONLINE_STORE" in os.environ or FeastSettings().yaml_path.exists()
