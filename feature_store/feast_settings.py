"""Feature-store configuration (PVERISK_FEAST_*): embedded defaults, production by configuration.

Defaults: Parquet offline store, SQLite online store and SQLite (SQL) registry under the
git-ignored `data/feast/`. Production: `PVERISK_FEAST_ONLINE_STORE=redis` with
`PVERISK_FEAST_REDIS=host:port`, and `PVERISK_FEAST_OFFLINE_STORE=postgres` /
`PVERISK_FEAST_REGISTRY=postgres` with the `PVERISK_FEAST_POSTGRES_*` connection. Nothing in the
feature definitions changes between the two: only this configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from feature_store.settings import DataSettings

PASSWORD_ENV = "PVERISK_FEAST_POSTGRES_PASSWORD"


class FeastSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PVERISK_FEAST_")
    # Where the generated feature_store.yaml, the Parquet sources and the SQLite stores live.
    repo_dir: Path = Field(default_factory=lambda: DataSettings().data_dir / "feast")
    project: str = "pverisk"
    online_store: Literal["sqlite", "redis"] = "sqlite"
    # Feast's Redis connection string: host:port[,db=0,password=...,ssl=true]
    redis: str = "127.0.0.1:6379"
    offline_store: Literal["file", "postgres"] = "file"
    registry: Literal["sqlite", "postgres"] = "sqlite"
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_database: str = "pverisk"
    postgres_user: str = "pverisk"
    postgres_password: SecretStr = SecretStr("")
    postgres_schema: str = "public"
    postgres_sslmode: str = "prefer"
    # Seconds the registry is cached by a reader (the service): definitions change at `features apply`.
    registry_cache_ttl_s: int = Field(60, ge=0)

    @property
    def sources_dir(self) -> Path:
        return self.repo_dir / "sources"

    @property
    def yaml_path(self) -> Path:
        return self.repo_dir / "feature_store.yaml"

    def postgres_url(self, password: str | None = None) -> str:
        pw = self.postgres_password.get_secret_value() if password is None else password
        auth = f"{self.postgres_user}:{pw}" if pw else self.postgres_user
        return (f"postgresql+psycopg://{auth}@{self.postgres_host}:{self.postgres_port}/{self.postgres_database}"
                f"?sslmode={self.postgres_sslmode}")

    def _postgres(self, password: str) -> dict[str, Any]:
        return {"host": self.postgres_host, "port": self.postgres_port, "database": self.postgres_database,
                "db_schema": self.postgres_schema, "user": self.postgres_user, "password": password,
                "sslmode": self.postgres_sslmode}

    def repo_config(self, for_yaml: bool = False) -> dict[str, Any]:
        """Feast's RepoConfig as a dict. For the YAML file the password is a reference to the
        environment variable (Feast expands ${VAR}), never the secret itself."""
        password = f"${{{PASSWORD_ENV}}}" if for_yaml else self.postgres_password.get_secret_value()
        online: dict[str, Any] = (
            {"type": "sqlite", "path": str(self.repo_dir / "online.db")} if self.online_store == "sqlite"
            else {"type": "redis", "connection_string": self.redis})
        offline: dict[str, Any] = ({"type": "file"} if self.offline_store == "file"
                                   else {"type": "postgres", **self._postgres(password)})
        registry_path = (f"sqlite:///{self.repo_dir / 'registry.db'}" if self.registry == "sqlite"
                         else self.postgres_url(password))
        return {
            "project": self.project,
            "provider": "local",
            "registry": {"registry_type": "sql", "path": registry_path, "cache_ttl_seconds": self.registry_cache_ttl_s,
                         "sqlalchemy_config_kwargs": {"echo": False, "pool_pre_ping": True}},
            "online_store": online,
            "offline_store": offline,
            "entity_key_serialization_version": 3,
        }

    def describe(self) -> str:
        """Where things are, without secrets (for CLI output and responses)."""
        online = f"sqlite {self.repo_dir / 'online.db'}" if self.online_store == "sqlite" else f"redis {self.redis}"
        return f"online store: {online}; offline store: {self.offline_store}; registry: {self.registry}"
