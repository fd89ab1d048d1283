"""The Feast definitions are generated from the contract: nothing restated by hand."""

from __future__ import annotations

from datetime import timedelta

import yaml

from feature_store import contract as c
from feature_store import feast_repo as fr
from feature_store.feast_settings import FeastSettings


def test_every_pre_pve_feature_is_in_exactly_one_view_with_its_contract_ttl(tmp_path):
    views = fr.feature_views(FeastSettings(repo_dir=tmp_path))
    held = [f.name for v in views for f in v.features]
    assert sorted(held) == sorted(c.feature_names())  # every pre-PVE feature, once
    assert not set(held) & set(c.feature_names(c.Timing.POST_PVE))
    for v in views:
        g = c.SOURCE_GROUPS[v.name]
        assert v.ttl == (timedelta(days=g.ttl_days) if g.ttl_days else timedelta(0))
        assert g.ttl_reason in v.description
        assert [e for e in v.entities] == [fr.ENTITY]
        for f in v.features:
            assert c.BY_NAME[f.name].source_group.name == v.name
    assert {v.name for v in views} == set(c.SOURCE_GROUPS)
    # clinically: labs go stale before imaging, imaging before the plan, the genotype never
    ttl = {k: g.ttl_days for k, g in c.SOURCE_GROUPS.items()}
    assert ttl["laboratory"] < ttl["imaging"] < ttl["treatment_plan"] < ttl["clinical_record"]
    assert ttl["tumour_genotype"] is None


def test_coarse_forms_are_recorded_with_their_fine_source():
    for f in c.FEATURES:
        if f.coarse:
            assert f.source_group == c.BY_NAME[f.derivation.sources[0]].source_group


def test_feature_service_holds_the_models_inputs_and_their_fine_sources(tmp_path):
    views = fr.feature_views(FeastSettings(repo_dir=tmp_path))
    model = ("age_years", "multiple_liver_metastases", "cea_over_200", "sflr_percent")
    svc = fr.feature_service(fr.service_name("pve-progression-risk", 7), model, views)
    assert svc.name == "pve_progression_risk_v7"
    got = {(p.name, f.name) for p in svc.feature_view_projections for f in p.features}
    want = {(c.BY_NAME[n].source_group.name, n) for n in c.input_names(list(model))}
    assert got == want
    assert ("imaging", "n_liver_metastases") in got and ("laboratory", "cea_ng_ml") in got


def test_yaml_from_typed_settings_keeps_the_password_out(tmp_path, monkeypatch):
    monkeypatch.setenv("PVERISK_FEAST_ONLINE_STORE", "redis")
    monkeypatch.setenv("PVERISK_FEAST_REDIS", "10.0.0.5:6380")
    monkeypatch.setenv("PVERISK_FEAST_OFFLINE_STORE", "postgres")
    monkeypatch.setenv("PVERISK_FEAST_REGISTRY", "postgres")
    monkeypatch.setenv("PVERISK_FEAST_POSTGRES_PASSWORD", "s3cret-pw")
    settings = FeastSettings(repo_dir=tmp_path)
    text = fr.write_yaml(settings).read_text()
    assert "s3cret-pw" not in text
    conf = yaml.safe_load(text)
    assert conf["online_store"] == {"type": "redis", "connection_string": "10.0.0.5:6380"}
    assert conf["offline_store"]["type"] == "postgres" and conf["offline_store"]["password"] == "${PVERISK_FEAST_POSTGRES_PASSWORD}"
    assert conf["registry"]["path"].startswith("postgresql+psycopg://")
    default = yaml.safe_load(fr.write_yaml(FeastSettings(repo_dir=tmp_path / "d", online_store="sqlite",
                                                         offline_store="file", registry="sqlite")).read_text())
    assert default["online_store"]["type"] == "sqlite" and default["offline_store"] == {"type": "file"}
    assert default["registry"]["path"].startswith("sqlite:///")


def test_importing_the_repo_module_does_not_import_feast():
    import subprocess
    import sys

    code = "import sys, feature_store.feast_repo, serving.online; print('feast' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
