"""The Feast repository, generated from the feature contract (never restated by hand).

One `patient` entity; one feature view per source group of the contract (clinical record,
tumour genotype, imaging and volumetry, laboratory values, treatment plan), each with its own
event timestamps and the contract's TTL; one feature service per registered model version,
named after it and holding exactly that model's inputs. Feast is imported inside functions:
importing this module costs nothing (the service imports it only when a request names a patient).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import yaml

from feature_store import contract as c
from feature_store.feast_settings import FeastSettings

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore, FeatureView

ENTITY = "patient"
TIMESTAMP = "event_timestamp"
CREATED = "created_timestamp"
# Per-source record dates in a cohort table (recorded_at__laboratory, ...): when each record was made.
RECORDED_AT_PREFIX = c.RECORDED_AT_PREFIX


def stored_features() -> tuple[c.Feature, ...]:
    """What the store holds: every pre-PVE feature, fine and coarse. Post-PVE measurements are
    never model inputs and stay out of the store meant to serve them."""
    return c.features(c.Timing.PRE_PVE)


def groups() -> dict[str, list[c.Feature]]:
    """Source group name -> its stored features, in contract order."""
    out: dict[str, list[c.Feature]] = {}
    for f in stored_features():
        out.setdefault(f.source_group.name, []).append(f)
    return out


def view_of(feature: str) -> str:
    return c.BY_NAME[feature].source_group.name


def ttl(group: str) -> timedelta:
    """Feast's TTL: timedelta(0) means no expiry (the genotype)."""
    days = c.SOURCE_GROUPS[group].ttl_days
    return timedelta(days=days) if days is not None else timedelta(0)


def _feast_type(f: c.Feature) -> Any:
    from feast.types import Bool, Float64, String

    # numbers and counts are float64 everywhere (missing is NaN), as in the cohort tables
    return {c.Kind.NUMBER: Float64, c.Kind.INTEGER: Float64, c.Kind.BOOLEAN: Bool, c.Kind.CATEGORY: String}[f.kind]


def _source(group: str, settings: FeastSettings) -> Any:
    if settings.offline_store == "postgres":
        from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource

        return PostgreSQLSource(name=f"{group}_source", table=table_name(group), timestamp_field=TIMESTAMP,
                                created_timestamp_column=CREATED)
    from feast import FileSource

    return FileSource(name=f"{group}_source", path=str(source_path(group, settings)), timestamp_field=TIMESTAMP,
                      created_timestamp_column=CREATED)


def table_name(group: str) -> str:
    return f"pverisk_{group}"


def source_path(group: str, settings: FeastSettings) -> Path:
    return settings.sources_dir / f"{group}.parquet"


def entity() -> Any:
    from feast import Entity
    from feast.value_type import ValueType

    return Entity(name=ENTITY, join_keys=[c.PATIENT_ID], value_type=ValueType.STRING,
                  description="A PVE candidate, by pseudonymous id (never logged)")


def feature_views(settings: FeastSettings) -> list["FeatureView"]:
    from feast import FeatureView, Field

    views = []
    for group, feats in groups().items():
        g = c.SOURCE_GROUPS[group]
        views.append(FeatureView(
            name=group, entities=[entity()], ttl=ttl(group), source=_source(group, settings), online=True,
            schema=[Field(name=f.name, dtype=_feast_type(f), description=f.description) for f in feats],
            description=f"{g.title}; TTL {g.ttl_days if g.ttl_days is not None else 'none'} days: {g.ttl_reason}",
            tags={"contract_version": c.CONTRACT_VERSION, "ttl_days": str(g.ttl_days)},
        ))
    return views


def service_name(model: str, version: str | int) -> str:
    """Feature service of a registered model version, named after it."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{model}_v{version}")


def feature_service(name: str, model_features: Iterable[str], views: list["FeatureView"],
                    description: str = "") -> "FeatureService":
    """A model's inputs as a feature service: its features and the fine sources its coarse ones derive
    from (what the service needs to answer for it), projected from the views that hold them."""
    from feast import FeatureService

    wanted = set(c.input_names(list(model_features)))
    projections = []
    for view in views:
        names = [f.name for f in view.features if f.name in wanted]
        if names:
            projections.append(view[names])
    return FeatureService(name=name, features=projections, description=description,
                          tags={"contract_version": c.CONTRACT_VERSION})


def write_yaml(settings: FeastSettings) -> Path:
    """feature_store.yaml from the typed settings (so `feast` CLI commands work in the folder too)."""
    settings.repo_dir.mkdir(parents=True, exist_ok=True)
    settings.yaml_path.write_text(
        "# Generated by `pverisk features apply` from PVERISK_FEAST_* settings: do not edit.\n"
        + yaml.safe_dump(settings.repo_config(for_yaml=True), sort_keys=False))
    return settings.yaml_path


def open_store(settings: FeastSettings | None = None) -> "FeatureStore":
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    settings = settings or FeastSettings()
    settings.repo_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=RepoConfig(**settings.repo_config(), repo_path=settings.repo_dir),
                        repo_path=str(settings.repo_dir))


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    features: tuple[str, ...]


def registered_versions(tracking: Any = None) -> list[ModelVersion]:
    """Every registered model version with its feature list (the run's `features` tag, which is the
    model's MLmodel metadata list). An unreachable or empty MLflow store gives none."""
    from mlflow.tracking import MlflowClient

    from feature_store.settings import TrackingSettings

    tracking = tracking or TrackingSettings()
    client = MlflowClient(tracking.tracking_uri)
    try:
        versions = client.search_model_versions(f"name='{tracking.registered_model}'")
    except Exception:  # no registry yet: views only
        return []
    out = []
    for v in versions:
        tag = client.get_run(v.run_id).data.tags.get("features") if v.run_id else None
        if tag:
            out.append(ModelVersion(v.name, str(v.version), tuple(tag.split(","))))
    return sorted(out, key=lambda m: int(m.version))


def definitions(settings: FeastSettings, models: list[ModelVersion]) -> list[Any]:
    views = feature_views(settings)
    services = [feature_service(service_name(m.name, m.version), m.features, views,
                                description=f"inputs of {m.name} v{m.version}") for m in models]
    return [entity(), *views, *services]


# --- events in: a cohort table becomes one dated record per patient and source ---------------


# --- reading --------------------------------------------------------------------------------


