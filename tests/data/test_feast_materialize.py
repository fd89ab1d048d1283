"""Materialization in bulk and incrementally (feature_store/feast_materialize.py) against Feast's own:
the online store holds byte for byte what `FeatureStore.materialize` writes, after a first run and
after later ingests (a newer value, a late record dated earlier, a value gone missing, a new patient),
and a run with nothing new writes nothing."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from feature_store import contract as c
from feature_store import feast_data as fd
from feature_store import feast_repo as fr
from feature_store.feast_settings import FeastSettings
from tests.data.test_feast_production_stores import redis_port  # noqa: F401  (fixture)
from tests.feast_fixtures import recent_cohort

LAB = "laboratory"


def feast_own(store) -> None:
    """Feast's materialization of every record (the reference)."""
    end = datetime.now(timezone.utc)
    for group in fr.groups():
        store.materialize(datetime(1970, 1, 2, tzinfo=timezone.utc), end, feature_views=[group])


def sqlite_rows(settings: FeastSettings) -> dict[str, set[tuple]]:
    """Every view's online rows; rows of a missing value left out (Feast writes them empty, ours
    writes none: Feast's reader answers null for both)."""
    db = sqlite3.connect(settings.repo_dir / "online.db")
    out = {}
    for group in fr.groups():
        rows = db.execute(f'SELECT entity_key, feature_name, value, value_text, event_ts, created_ts '
                          f'FROM "{settings.project}_{group}"').fetchall()
        out[group] = {r for r in rows if r[2] != b""}
    db.close()
    return out


def later_records(cohort: pd.DataFrame) -> pd.DataFrame:
    """A second ingest: patient 0 a newer CEA, patient 1 a lab dated before its current one (entered
    late: must not replace it), patient 2 a newer lab without albumin, and a patient not seen before."""
    today = pd.Timestamp.now(tz="UTC").normalize()
    labs = [f.name for f in fr.groups()[LAB]]
    rows = cohort.iloc[[0, 1, 2, 3]].copy()
    rows[c.PATIENT_ID] = [*cohort[c.PATIENT_ID].iloc[:3], "SIM-NEW-0001"]
    lab_at = c.recorded_at_column(LAB)
    rows[lab_at] = [today - pd.Timedelta(hours=1), today - pd.Timedelta(days=200), today - pd.Timedelta(hours=2),
                    today - pd.Timedelta(days=1)]
    rows["cea_ng_ml"] = [999.0, 1.0, 42.0, 7.0]
    rows.loc[rows.index[2], "albumin_g_dl"] = float("nan")
    keep = [c.PATIENT_ID, c.EVENT_TIMESTAMP, lab_at, *labs]
    return rows[[k for k in keep if k in rows]]


def ingest(cohort: pd.DataFrame, settings: FeastSettings, at: str) -> None:
    """fd.ingest at a given ingest time (both stores of a comparison must hold the same records)."""
    for group, frame in fd.events(cohort, ingested_at=pd.Timestamp(at, tz="UTC")).items():
        fd.write_source(group, frame, settings)


def build(tmp: Path, name: str, cohort: pd.DataFrame, **kw: str) -> tuple[FeastSettings, object]:
    settings = FeastSettings(repo_dir=tmp / name, **kw)
    fd.apply(settings, models=[])
    ingest(cohort, settings, "2026-01-01 10:00")
    return settings, fr.open_store(settings)


def test_bulk_and_incremental_sqlite_equal_feasts_own(tmp_path):
    cohort = recent_cohort(40, seed=21, stale_labs=2)
    ours, ours_store = build(tmp_path, "ours", cohort)
    ref, ref_store = build(tmp_path, "feast", cohort)
    fd.materialize(ours_store)
    feast_own(ref_store)
    first = sqlite_rows(ours)
    assert first == sqlite_rows(ref)
    assert sum(len(v) for v in first.values()) > 40 * 20  # every patient's values, not an empty match

    again = fd.materialize(ours_store)  # nothing ingested since: nothing written
    assert sqlite_rows(ours) == first and set(again) == set(fr.groups())

    later = later_records(cohort)
    for settings in (ours, ref):
        ingest(later, settings, "2026-01-02 10:00")
    fd.materialize(ours_store)
    feast_own(ref_store)
    second = sqlite_rows(ours)
    assert second == sqlite_rows(ref)
    assert second[LAB] != first[LAB]
    svc = [f"{LAB}:cea_ng_ml", f"{LAB}:albumin_g_dl"]
    ids = cohort[c.PATIENT_ID]
    assert fd.online_lookup(ours_store, ids.iloc[0], svc).values["cea_ng_ml"] == 999.0  # the newer value
    late = fd.online_lookup(ours_store, ids.iloc[1], svc)
    assert late.values.get("cea_ng_ml", late.stale.get("cea_ng_ml")) != 1.0  # dated earlier: not the latest
    gone = fd.online_lookup(ours_store, ids.iloc[2], svc)
    assert gone.values["cea_ng_ml"] == 42.0 and "albumin_g_dl" not in gone.values  # missing in the latest record
    assert fd.online_lookup(ours_store, "SIM-NEW-0001", svc).values["cea_ng_ml"] == 7.0


def test_full_reload_after_the_views_change(tmp_path):
    """A watermark is tied to the view's feature list: another list reloads every patient."""
    from feature_store import feast_online_write as w

    cohort = recent_cohort(10, seed=22, stale_labs=0)
    settings, store = build(tmp_path, "ours", cohort)
    fd.materialize(store)
    db = sqlite3.connect(settings.repo_dir / "online.db")
    db.execute(f'DELETE FROM "{settings.project}_{LAB}"')
    db.commit()
    fd.materialize(store)  # the watermark says up to date: nothing rewritten
    assert db.execute(f'SELECT COUNT(*) FROM "{settings.project}_{LAB}"').fetchone()[0] == 0
    db.execute(f"UPDATE {w.WATERMARKS} SET mark = replace(mark, '\"features\": \"', '\"features\": \"x')")
    db.commit()
    fd.materialize(store)
    assert db.execute(f'SELECT COUNT(*) FROM "{settings.project}_{LAB}"').fetchone()[0] > 0
    db.close()


@pytest.mark.slow
def test_bulk_and_incremental_redis_equal_feasts_own(tmp_path, redis_port):  # noqa: F811
    import redis

    cohort = recent_cohort(30, seed=23, stale_labs=1)
    client = redis.Redis(port=redis_port)
    client.flushall()
    ours, ours_store = build(tmp_path, "ours", cohort, online_store="redis", redis=f"127.0.0.1:{redis_port}",
                             project="ours")
    ref, ref_store = build(tmp_path, "feast", cohort, online_store="redis", redis=f"127.0.0.1:{redis_port}",
                           project="feast")

    def hashes(project: str) -> dict[bytes, dict[bytes, bytes]]:
        out = {}
        for key in client.scan_iter():
            if key.endswith(project.encode()) and not key.startswith(b"pverisk_"):
                out[key[:-len(project)]] = client.hgetall(key)
        return out

    fd.materialize(ours_store)
    feast_own(ref_store)
    assert hashes("ours") == hashes("feast") and len(hashes("ours")) == 30
    ingest(later_records(cohort), ours, "2026-01-02 10:00")
    ingest(later_records(cohort), ref, "2026-01-02 10:00")
    fd.materialize(ours_store)
    feast_own(ref_store)
    assert hashes("ours") == hashes("feast") and len(hashes("ours")) == 31
