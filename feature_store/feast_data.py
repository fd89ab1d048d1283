"""Data in and out of the Feast stores: dated records into the offline store, materialization into the
online store, point-in-time training tables, and the online lookup by patient id. The definitions
are in feature_store/feast_repo.py; Feast is imported inside functions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import pandas as pd

from feature_store import contract as c
from feature_store.feast_repo import (
    CREATED,
    TIMESTAMP,
    ModelVersion,
    definitions,
    groups,
    open_store,
    registered_versions,
    service_name,
    source_path,
    stored_features,
    table_name,
    view_of,
    write_yaml,
)
from feature_store.feast_settings import FeastSettings

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore


def events(cohort: pd.DataFrame, ingested_at: datetime | None = None) -> dict[str, pd.DataFrame]:
    """Per source group: patient id, the record's date (recorded_at__<group>, else the PVE decision
    date: the value was known at the decision) and its features present in the cohort."""
    created = pd.Timestamp(ingested_at or datetime.now(timezone.utc))
    decision = _utc(cohort[c.EVENT_TIMESTAMP]) if c.EVENT_TIMESTAMP in cohort else None
    out = {}
    for group, feats in groups().items():
        col = c.recorded_at_column(group)
        if col in cohort:
            when = _utc(cohort[col])
        elif decision is not None:
            when = decision
        else:
            raise ValueError(f"the table has neither {col} nor {c.EVENT_TIMESTAMP}: the {group} records are undated")
        frame = pd.DataFrame({c.PATIENT_ID: cohort[c.PATIENT_ID].astype("string").to_numpy(),
                              TIMESTAMP: when.to_numpy(), CREATED: created})
        present = [f.name for f in feats if f.name in cohort]
        for f in feats:
            frame[f.name] = (cohort[f.name].astype(c.cohort_dtypes()[f.name]).to_numpy() if f.name in present
                             else pd.array([None] * len(cohort), dtype=c.cohort_dtypes()[f.name]))
        # a record with no value of this source is no record
        frame = frame[frame[[f.name for f in feats]].notna().any(axis=1).to_numpy() & frame[TIMESTAMP].notna().to_numpy()]
        out[group] = frame.reset_index(drop=True)
    return out


def _utc(values: pd.Series) -> pd.Series:
    s = pd.to_datetime(values)
    return s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")


def write_source(group: str, frame: pd.DataFrame, settings: FeastSettings, replace: bool = False) -> int:
    """Append a group's records to its offline source (same patient and date: the newer ingest wins)."""
    frame = frame.astype({TIMESTAMP: "datetime64[us, UTC]", CREATED: "datetime64[us, UTC]"})
    if settings.offline_store == "postgres":
        return _write_postgres(group, frame, settings, replace)
    path = source_path(group, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not replace:
        old = pd.read_parquet(path)
        frame = pd.concat([old, frame], ignore_index=True) if len(old) else frame
        frame = frame.drop_duplicates([c.PATIENT_ID, TIMESTAMP], keep="last")
    frame.to_parquet(path, index=False)
    return len(frame)


def _write_postgres(group: str, frame: pd.DataFrame, settings: FeastSettings, replace: bool) -> int:
    import psycopg

    cols = [c.PATIENT_ID, TIMESTAMP, CREATED, *[f.name for f in groups()[group]]]
    sql_type = {"float64": "double precision", "boolean": "boolean", "string": "text"}
    dtypes = c.cohort_dtypes()
    ddl = ", ".join([f"{c.PATIENT_ID} text not null", f"{TIMESTAMP} timestamptz not null", f"{CREATED} timestamptz",
                     *[f"{f.name} {sql_type[dtypes[f.name]]}" for f in groups()[group]]])
    table = f'"{settings.postgres_schema}"."{table_name(group)}"'
    with psycopg.connect(settings.postgres_url().replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute(f"create table if not exists {table} ({ddl}, primary key ({c.PATIENT_ID}, {TIMESTAMP}))")
        if replace:
            conn.execute(f"truncate {table}")
        if not len(frame):
            return 0
        conn.execute(f"create temporary table incoming (like {table}) on commit drop")
        with conn.cursor().copy(f"copy incoming ({', '.join(cols)}) from stdin") as copy:
            for row in frame[cols].astype(object).where(frame[cols].notna(), None).itertuples(index=False):
                copy.write_row(row)
        conn.execute(f"insert into {table} select * from incoming on conflict ({c.PATIENT_ID}, {TIMESTAMP}) "
                     f"do update set " + ", ".join(f"{col} = excluded.{col}" for col in cols[2:]))
    return len(frame)


def ingest(cohort: pd.DataFrame, settings: FeastSettings | None = None,
           on_group: Callable[[str, int], None] = lambda g, n: None) -> dict[str, int]:
    """Write a cohort's dated records into the offline sources; returns records per source group."""
    settings = settings or FeastSettings()
    if c.PATIENT_ID not in cohort:
        raise ValueError(f"the table has no {c.PATIENT_ID} column: records need a patient")
    counts = {}
    for group, frame in events(cohort).items():
        write_source(group, frame, settings)
        counts[group] = len(frame)
        on_group(group, len(frame))
    return counts


def materialize(store: "FeatureStore", end: datetime | None = None, full: bool = False,
                on_view: Callable[[str, float], None] = lambda v, s: None) -> dict[str, float]:
    """Bring the online store up to date, view by view (seconds per view): only the patients with
    records ingested since the last run (`full`: every patient), written in bulk
    (feature_store/feast_materialize.py). Online stores that writer does not know: Feast's own
    `materialize` of every record."""
    import time

    from feature_store.feast_materialize import materialize as bulk
    from feature_store.feast_online_write import Unsupported

    try:
        return bulk(store, end=end, full=full, on_view=on_view)
    except Unsupported:
        pass
    end = end or datetime.now(timezone.utc)
    start = datetime(1970, 1, 2, tzinfo=timezone.utc)  # every record: TTLs are applied when reading
    seconds = {}
    for group in groups():
        t0 = time.perf_counter()
        store.materialize(start, end, feature_views=[group])
        seconds[group] = time.perf_counter() - t0
        on_view(group, seconds[group])
    return seconds


def historical_features(store: "FeatureStore", entities: pd.DataFrame,
                        model_features: Iterable[str] | None = None) -> pd.DataFrame:
    """Point-in-time training table: for each (patient, PVE decision date) row, every feature as it
    was last recorded at or before the decision and within its source's TTL; later or older values
    are missing. Other entity columns (outcome, dates) pass through."""
    missing = [col for col in (c.PATIENT_ID, c.EVENT_TIMESTAMP) if col not in entities]
    if missing:
        raise ValueError(f"the entity table lacks {', '.join(missing)} (needs {c.PATIENT_ID}, "
                         f"{c.EVENT_TIMESTAMP} and {c.OUTCOME})")
    names = [f.name for f in stored_features()] if model_features is None else c.input_names(list(model_features))
    refs = [f"{view_of(n)}:{n}" for n in names if n in {f.name for f in stored_features()}]
    entity_df = entities.copy()
    entity_df[c.PATIENT_ID] = entity_df[c.PATIENT_ID].astype(str)
    entity_df[TIMESTAMP] = _utc(entity_df[c.EVENT_TIMESTAMP])
    entity_df["_row"] = np.arange(len(entity_df))
    # One join per feature view: Feast's file (dask) store drops an entity row when every record of
    # one view lies outside its TTL (or after the decision), and in a join of several views that
    # blanked the patient's other sources too (a stale lab emptied age, imaging and genotype: the
    # new-user trial). Per view, only that source's values go missing; each is put back onto every
    # entity row, so no patient vanishes from the training set either.
    keys = entity_df[[c.PATIENT_ID, TIMESTAMP, "_row"]]
    out = entity_df
    by_view: dict[str, list[str]] = {}
    for ref in refs:
        by_view.setdefault(ref.split(":", 1)[0], []).append(ref)
    for view_refs in by_view.values():
        joined = store.get_historical_features(entity_df=keys, features=view_refs).to_df()
        cols = [r.split(":", 1)[1] for r in view_refs]
        values = joined[["_row", *[n for n in cols if n in joined]]].drop_duplicates("_row")
        out = out.merge(values, on="_row", how="left", validate="one_to_one")
    out = out.sort_values("_row").drop(columns=["_row", TIMESTAMP]).reset_index(drop=True)
    for name in names:
        if name in out:
            out[name] = out[name].astype(c.cohort_dtypes()[name])
    return out


def remember_cohort(meta: dict[str, Any], settings: FeastSettings) -> None:
    """Keep the ingested cohort's description (study design, data kind, dataset name; no patient
    data) beside the repository: an entity table written by hand carries none, and a model trained
    on it must still say what population and outcome it learned."""
    keep = {k: meta[k] for k in ("study_design", "data_kind", "dataset_name", "simulated") if k in meta}
    if keep:
        settings.repo_dir.mkdir(parents=True, exist_ok=True)
        (settings.repo_dir / INGESTED_COHORT).write_text(json.dumps(keep, indent=1, default=str))


def training_cohort(entities_path: Path, settings: FeastSettings | None = None, out: Path | None = None) -> Path:
    """Build the training table for an entity file with the point-in-time join and write it (with
    the entity file's study design) where `run_training` reads it."""
    from feature_store.study import design_from_metadata, read_cohort_metadata, write_with_design
    from feature_store.tables import read_table

    settings = settings or FeastSettings()
    entities = read_table(Path(entities_path))
    if c.OUTCOME not in entities:
        raise ValueError(f"the entity table has no {c.OUTCOME} column (the outcome to learn)")
    keep = [col for col in entities.columns if col in c.NON_FEATURE_COLUMNS
            or str(col).startswith(c.RECORDED_SCORE_PREFIX)]
    frame = historical_features(open_store(settings), entities[keep])
    # a feature no record ever held (a coarse form of a cohort that records the fine one) is not
    # a column of this cohort, as in a flat file: training then reports what was recorded
    stored = {f.name for f in stored_features()}
    frame = frame.drop(columns=[col for col in frame.columns if col in stored and frame[col].isna().all()])
    meta = read_cohort_metadata(Path(entities_path))
    remembered = settings.repo_dir / INGESTED_COHORT
    if not meta.get("study_design") and remembered.exists():
        # the entity table states nothing: the design of the cohort whose records were ingested
        meta = {**json.loads(remembered.read_text()), **{k: v for k, v in meta.items() if v}}
        meta["study_design_from"] = "the cohort ingested into the feature store"
    stem = Path(entities_path).stem
    target = out or settings.repo_dir / "training" / f"{stem}-point-in-time.parquet"
    write_with_design(frame, target, design_from_metadata(meta),
                      {k: v for k, v in meta.items() if k != "study_design"} | {"point_in_time": True})
    return target


@dataclass
class Lookup:
    """One patient's values from the online store: fresh ones (used), stale ones (older than their
    source's TTL: not used) and their ages in days."""

    values: dict[str, Any]
    ages_days: dict[str, float]
    stale: dict[str, float]
    found: bool


def online_lookup(store: "FeatureStore", patient_id: str, service: "FeatureService | list[str]",
                  now: datetime | None = None) -> Lookup:
    now = now or datetime.now(timezone.utc)
    resp = store.get_online_features(features=service, entity_rows=[{c.PATIENT_ID: patient_id}])
    data = resp.to_dict(include_event_timestamps=True)
    values: dict[str, Any] = {}
    ages: dict[str, float] = {}
    stale: dict[str, float] = {}
    found = False
    for name in data:
        if name == c.PATIENT_ID or name.endswith("__ts") or name not in c.BY_NAME:
            continue
        value = data[name][0]
        ts = data.get(f"{name}__ts", [0])[0]
        if value is None or ts in (0, None):
            continue
        found = True
        age = (now.timestamp() - ts) / 86400
        limit = c.BY_NAME[name].source_group.ttl_days
        if limit is not None and age > limit:
            stale[name] = round(age, 1)
            continue
        values[name] = value
        ages[name] = round(age, 1)
    return Lookup(values, ages, stale, found)


def _empty_source(group: str) -> pd.DataFrame:
    frame = pd.DataFrame({c.PATIENT_ID: pd.Series([], dtype="string"),
                          TIMESTAMP: pd.Series([], dtype="datetime64[us, UTC]"),
                          CREATED: pd.Series([], dtype="datetime64[us, UTC]")})
    for f in groups()[group]:
        frame[f.name] = pd.Series([], dtype=c.cohort_dtypes()[f.name])
    return frame


def apply(settings: FeastSettings | None = None, models: list[ModelVersion] | None = None,
          store: "FeatureStore | None" = None) -> dict[str, Any]:
    """Write feature_store.yaml, make sure every source exists, and register the generated
    definitions (entity, views, one service per model version) with FeatureStore.apply."""
    settings = settings or FeastSettings()
    write_yaml(settings)
    models = registered_versions() if models is None else models
    for group in groups():
        if settings.offline_store == "file" and not source_path(group, settings).exists():
            write_source(group, _empty_source(group), settings)
        elif settings.offline_store == "postgres":
            write_source(group, _empty_source(group), settings)
    store = store or open_store(settings)
    objs = definitions(settings, models)
    store.apply(objs)
    return {"views": [o.name for o in objs[1:1 + len(groups())]],
            "services": [service_name(m.name, m.version) for m in models], "yaml": str(settings.yaml_path)}


INGESTED_COHORT = "ingested_cohort.json"
