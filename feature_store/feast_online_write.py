"""Bulk writes into Feast's online stores (SQLite, Redis) in Feast's own layout, for
feature_store/feast_materialize.py.

Values are encoded by Feast's converters and serializers, once per distinct value (a column of
100,000 booleans is two protobuf messages, not 100,000); what differs from Feast's writer is only
how many statements carry them: Feast binds one SQLite statement per patient and feature and sends
one Redis command per patient and view, which is where its materialization spent its time.
Stores with options Feast's layout varies with (vector columns, OpenAI-compatible value columns) are
left to Feast's own `materialize`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from feature_store import contract as c
from feature_store.feast_materialize import Watermark
from feature_store.feast_repo import CREATED, TIMESTAMP

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

WATERMARKS = "pverisk_materialized"


class Unsupported(RuntimeError):
    """An online store this writer does not know: use Feast's own materialize."""


def writer_for(store: "FeatureStore") -> "SqliteWriter | RedisWriter":
    cfg = store.config.online_store
    kind = getattr(cfg, "type", "")
    if kind == "sqlite" and not getattr(cfg, "vector_enabled", False) and not getattr(
            cfg, "enable_openai_compatible_store", False):
        return SqliteWriter(store)
    if kind == "redis" and str(getattr(cfg, "redis_type", "redis")).endswith("redis"):
        return RedisWriter(store)
    raise Unsupported(f"online store {kind!r} with these options")


def entity_keys(store: "FeatureStore", ids: np.ndarray, cache: dict[str, bytes]) -> list[bytes]:
    """Feast's serialized entity key of each patient id. One join key of type string: Feast's key is
    its prefix for the join key (`serialize_entity_key_prefix`) then the id as a length-prefixed
    string; checked against `serialize_entity_key` on a sample id, and that function for every id
    should the layout ever differ."""
    import struct

    from feast.infra.key_encoding_utils import serialize_entity_key, serialize_entity_key_prefix
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.value_type import ValueType

    version = store.config.entity_key_serialization_version

    def feast_key(pid: str) -> bytes:
        return serialize_entity_key(EntityKey(join_keys=[c.PATIENT_ID], entity_values=[Value(string_val=pid)]),
                                    entity_key_serialization_version=version)

    prefix = serialize_entity_key_prefix([c.PATIENT_ID], version) + struct.pack("<I", ValueType.STRING.value)

    def ours(pid: str) -> bytes:
        raw = pid.encode("utf8")
        return prefix + struct.pack("<I", len(raw)) + raw

    make = ours if ours("P-1é") == feast_key("P-1é") else feast_key
    out = []
    for pid in map(str, ids.tolist()):
        key = cache.get(pid)
        if key is None:
            key = cache[pid] = make(pid)
        out.append(key)
    return out


def _feast_values(series: pd.Series) -> np.ndarray:
    """A column as Feast's materialization hands it to its converter (an Arrow column's to_numpy):
    float64 with NaN for numbers, objects with None otherwise."""
    if series.dtype.kind == "f":
        return series.to_numpy()
    values = series.to_numpy(dtype=object)
    missing = pd.isna(values)
    if missing.any():
        values = values.copy()
        values[missing] = None
    return values


def encoded(view: "FeatureView", frame: pd.DataFrame, text: bool = False) -> dict[str, tuple[np.ndarray, Any]]:
    """Feature name -> (serialized ValueProto per row, and with `text` the SQLite value_text per row),
    by Feast's converter on the column's distinct values."""
    from feast.infra.online_stores.helpers import extract_text_and_num
    from feast.type_map import python_values_to_proto_values

    out = {}
    for field in view.features:
        values = _feast_values(frame[field.name])
        codes, uniques = pd.factorize(values)  # a missing value: code -1, the last entry below
        distinct = np.empty(len(uniques) + 1, dtype=values.dtype)
        distinct[:-1] = uniques
        distinct[-1] = np.nan if values.dtype.kind == "f" else None
        protos = python_values_to_proto_values(distinct, field.dtype.to_value_type())
        blobs = np.array([p.SerializeToString() for p in protos], dtype=object)[codes]
        texts = np.array([extract_text_and_num(p, False)[0] for p in protos], dtype=object)[codes] if text else None
        out[field.name] = (blobs, texts)
    return out


def _sqlite_times(col: pd.Series) -> np.ndarray:
    """Timestamps as Feast stores them in SQLite: its `to_naive_utc`, then the adapter it registers
    for datetimes (epoch seconds), once per distinct time."""
    from feast.infra.online_stores.sqlite import adapt_datetime_epoch
    from feast.utils import to_naive_utc

    codes, uniques = pd.factorize(_utc_micros(col))
    seconds = [adapt_datetime_epoch(to_naive_utc(_from_micros(u))) for u in uniques.tolist()]
    return np.array([*seconds, None], dtype=object)[codes]


def _utc_micros(col: pd.Series) -> np.ndarray:
    """Microseconds since the epoch (UTC) of a timestamp column: factorized as integers, not as
    timestamps (pandas' timezone-aware path costs ~20x more)."""
    return pd.to_datetime(col, utc=True).to_numpy(dtype="datetime64[us]").astype(np.int64)


def _from_micros(us: int) -> Any:
    from datetime import datetime, timedelta, timezone

    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)


class SqliteWriter:
    """Feast's SQLite tables: one row per patient and feature, keyed (entity_key, feature_name)."""

    def __init__(self, store: "FeatureStore") -> None:
        from feast.infra.online_stores.sqlite import _table_id

        cfg = store.config
        path = Path(cfg.online_store.path)
        self.path = path if path.is_absolute() else Path(cfg.repo_path or ".") / path
        self.store, self._table_id = store, _table_id
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.execute(f"CREATE TABLE IF NOT EXISTS {WATERMARKS} (view TEXT PRIMARY KEY, mark TEXT NOT NULL)")

    def _table(self, view: "FeatureView") -> str:
        cfg = self.store.config
        name = self._table_id(cfg.project, view, cfg.registry.enable_online_feature_view_versioning)
        return '"' + name.replace('"', '""') + '"'

    def watermark(self, view: "FeatureView") -> Watermark | None:
        row = self.db.execute(f"SELECT mark FROM {WATERMARKS} WHERE view = ?", (view.name,)).fetchone()
        return Watermark.loads(row[0]) if row else None

    def set_watermark(self, view: "FeatureView", mark: Watermark) -> None:
        self.db.execute(f"INSERT OR REPLACE INTO {WATERMARKS} VALUES (?, ?)", (view.name, mark.dumps()))

    def write(self, view: "FeatureView", latest: pd.DataFrame, keys: dict[str, bytes]) -> None:
        """The patients' rows replaced in one transaction: one wide row per patient bound from Python,
        pivoted into Feast's one row per feature by SQL."""
        names = [f.name for f in view.features]
        values = encoded(view, latest, text=True)
        wide = list(zip(entity_keys(self.store, latest[c.PATIENT_ID].to_numpy(dtype=object), keys),
                        _sqlite_times(latest[TIMESTAMP]), _sqlite_times(latest[CREATED]),
                        *[col for name in names for col in values[name]]))
        slots = ", ".join(f"v{i}, t{i}" for i in range(len(names)))  # no declared types: values kept as bound
        # a missing value gets no row (Feast writes an empty value; its reader answers null either way), and
        # the patient's old rows are deleted first, so a value gone missing in the latest record is gone
        pivot = " UNION ALL ".join(f"SELECT entity_key, ?, v{i}, t{i}, event_ts, created_ts FROM temp.incoming "
                                   f"WHERE v{i} != x''" for i in range(len(names)))
        table = self._table(view)
        db = self.db
        db.execute("DROP TABLE IF EXISTS temp.incoming")
        db.execute(f"CREATE TEMP TABLE incoming (entity_key, event_ts, created_ts, {slots})")
        db.execute("BEGIN")
        try:
            db.executemany(f"INSERT INTO temp.incoming VALUES ({', '.join('?' * (3 + 2 * len(names)))})", wide)
            db.execute(f"DELETE FROM {table} WHERE entity_key IN (SELECT entity_key FROM temp.incoming)")
            db.execute(f"INSERT INTO {table} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
                       f"{pivot}", names)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.execute("DROP TABLE IF EXISTS temp.incoming")

    def close(self) -> None:
        self.db.close()


class RedisWriter:
    """Feast's Redis hashes: one key per patient (entity key + project), a field per view and feature
    (murmur3 of "view:feature") and the view's event time under `_ts:<view>`."""

    def __init__(self, store: "FeatureStore") -> None:
        from feast.infra.online_stores.redis import RedisOnlineStore

        self.store = store
        self.config = store.config.online_store
        self.client = RedisOnlineStore()._get_client(self.config)
        self.mark_key = f"{WATERMARKS}:{store.config.project}"

    def watermark(self, view: "FeatureView") -> Watermark | None:
        return Watermark.loads(self.client.hget(self.mark_key, view.name))

    def set_watermark(self, view: "FeatureView", mark: Watermark) -> None:
        self.client.hset(self.mark_key, view.name, mark.dumps())

    def write(self, view: "FeatureView", latest: pd.DataFrame, keys: dict[str, bytes], chunk: int = 5000) -> None:
        from feast.infra.online_stores.helpers import _mmh3
        from feast.infra.online_stores.redis import _versioned_fv_name
        from feast.utils import make_tzaware
        from google.protobuf.timestamp_pb2 import Timestamp

        name = _versioned_fv_name(view, self.store.config)
        fields = [_mmh3(f"{name}:{f.name}") for f in view.features]
        values = encoded(view, latest)
        columns = [values[f.name][0] for f in view.features]
        ts_codes, ts_uniques = pd.factorize(_utc_micros(latest[TIMESTAMP]))
        stamps = []
        for u in ts_uniques.tolist():  # as Feast: its make_tzaware, then Timestamp.FromDatetime
            ts = Timestamp()
            ts.FromDatetime(make_tzaware(_from_micros(u)))
            stamps.append(ts.SerializeToString())
        ts_field = f"_ts:{name}"
        project = self.store.config.project.encode()
        rows = zip(entity_keys(self.store, latest[c.PATIENT_ID].to_numpy(dtype=object), keys),
                   np.array(stamps, dtype=object)[ts_codes], *columns)
        ttl = self.config.key_ttl_seconds
        pipe = self.client.pipeline(transaction=False)
        for i, (key, stamp, *vals) in enumerate(rows, 1):
            redis_key = key + project
            pipe.hset(redis_key, mapping={ts_field: stamp, **dict(zip(fields, vals))})
            if ttl:
                pipe.expire(name=redis_key, time=ttl)
            if i % chunk == 0:
                pipe.execute()
        pipe.execute()

    def close(self) -> None:
        self.client.close()
