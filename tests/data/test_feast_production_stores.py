"""Production settings by configuration alone: a Redis online store and a PostgreSQL registry and
offline store, started by the tests from Debian's packages (skipped, saying why, where absent)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from feature_store import contract as c
from feature_store import feast_repo as fr
from feature_store import feast_data as fd
from tests.feast_fixtures import build_store, recent_cohort
from tests.servers import free_port

pytestmark = pytest.mark.slow
PG_BIN = Path("/usr/lib/postgresql/15/bin")
MODEL = fr.ModelVersion("pve-progression-risk", "1", ("age_years", "n_liver_metastases", "cea_ng_ml", "sflr_percent"))


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed (Debian package redis-server; .ci/run installs it)")
    port = free_port()
    work = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    import redis

    for _ in range(100):
        try:
            redis.Redis(port=port).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.skip("redis-server did not start")
    yield port
    proc.terminate()
    proc.wait(10)


def test_redis_online_store_by_configuration(tmp_path, redis_port):
    cohort = recent_cohort(8, seed=3, stale_labs=0)
    settings = build_store(tmp_path, [MODEL], cohort, online_store="redis", redis=f"127.0.0.1:{redis_port}")
    store = fr.open_store(settings)
    svc = store.get_feature_service(fr.service_name(MODEL.name, MODEL.version))
    got = fd.online_lookup(store, cohort[c.PATIENT_ID].iloc[2], svc)
    assert got.found and got.values["age_years"] == cohort["age_years"].iloc[2]
    assert got.values["n_liver_metastases"] == cohort["n_liver_metastases"].iloc[2]
    assert not fd.online_lookup(store, "NOBODY", svc).found
    import redis

    assert redis.Redis(port=redis_port).dbsize() > 0  # the values really are in Redis, not SQLite
    assert not (tmp_path / "online.db").exists()


def _pg_user() -> str | None:
    """initdb refuses root: run the cluster as the `postgres` account (Debian's package makes it)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
        return "postgres"
    except KeyError:
        return "nobody"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 not installed ({PG_BIN}; Debian package postgresql, installed by .ci/run)")
    user = _pg_user()
    import tempfile

    # not under pytest's tmp folder: that is private to root, and the cluster runs as another user
    root = Path(tempfile.mkdtemp(prefix="pverisk-pg-"))
    data = root / "data"
    port = free_port()

    def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        # runuser lives in /usr/sbin, which a minimal PATH (make test from CI) may not hold
        runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin") or "runuser"
        full = [runuser, "-u", user, "--", *cmd] if user else list(cmd)
        return subprocess.run(full, capture_output=True, text=True, check=check, timeout=120)

    if user:
        shutil.chown(root, user)
        os.chmod(root, 0o755)
    try:
        run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "pverisk", "--auth=trust", "-E", "UTF8")
        run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "pg.log"), "-w", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "pverisk", "pverisk")
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        pytest.skip(f"could not start a PostgreSQL cluster: {detail[-300:]}")
    yield port
    run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop", check=False)
    shutil.rmtree(root, ignore_errors=True)


def test_postgres_registry_and_offline_store_by_configuration(tmp_path, postgres):
    cohort = recent_cohort(10, seed=4, stale_labs=1)
    pg = dict(offline_store="postgres", registry="postgres", postgres_port=str(postgres),
              postgres_sslmode="disable")
    settings = build_store(tmp_path, [MODEL], cohort, **pg)
    store = fr.open_store(settings)
    assert {v.name for v in store.list_feature_views()} == set(c.SOURCE_GROUPS)
    assert [s.name for s in store.list_feature_services()] == ["pve_progression_risk_v1"]
    out = fd.historical_features(store, cohort[[c.PATIENT_ID, c.EVENT_TIMESTAMP, c.OUTCOME]], MODEL.features)
    assert len(out) == len(cohort)
    assert (out["age_years"].to_numpy() == cohort["age_years"].to_numpy()).all()
    assert pd.isna(out.loc[0, "cea_ng_ml"])  # labs older than the TTL: missing in PostgreSQL too
    assert out["cea_ng_ml"].iloc[1:].notna().sum() == cohort["cea_ng_ml"].iloc[1:].notna().sum()
    # the online store was materialized from PostgreSQL (in SQL: each patient's latest record)
    svc = store.get_feature_service(fr.service_name(MODEL.name, MODEL.version))
    got = fd.online_lookup(store, cohort[c.PATIENT_ID].iloc[2], svc)
    assert got.found and got.values["age_years"] == cohort["age_years"].iloc[2]
    # nothing of it on disk beside the yaml and the (SQLite) online store
    assert not (tmp_path / "registry.db").exists() and not (tmp_path / "sources").exists()
