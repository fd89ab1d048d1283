"""Point-in-time training data through Feast's historical join: a laboratory value recorded after
the PVE decision is not used, and one older than the laboratory TTL is missing, not carried forward."""

from __future__ import annotations

import pandas as pd
import pytest

from feature_store import contract as c
from feature_store import feast_repo as fr
from feature_store import feast_data as fd
from feature_store.feast_settings import FeastSettings

LAB = "laboratory"


def _labs(rows):
    frame = pd.DataFrame(rows, columns=[c.PATIENT_ID, fr.TIMESTAMP, "cea_ng_ml", "albumin_g_dl"])
    frame[fr.TIMESTAMP] = pd.to_datetime(frame[fr.TIMESTAMP]).dt.tz_localize("UTC")
    frame[fr.CREATED] = pd.Timestamp("2026-01-01", tz="UTC")
    for f in fr.groups()[LAB]:
        if f.name not in frame:
            frame[f.name] = pd.array([None] * len(frame), dtype=c.cohort_dtypes()[f.name])
    return frame


def test_lab_after_decision_not_used_and_older_than_ttl_missing(tmp_path, capsys):
    settings = FeastSettings(repo_dir=tmp_path / "feast")
    fd.apply(settings, models=[])
    assert c.SOURCE_GROUPS[LAB].ttl_days == 30
    records = _labs([
        # P1: a CEA two weeks before the decision, and a higher one three days after it
        ("P1", "2024-03-01", 8.0, 4.2),
        ("P1", "2024-03-18", 95.0, 3.1),
        # P2: the only labs, 45 days before the decision (TTL 30 days)
        ("P2", "2024-01-30", 40.0, 3.9),
        # P3: an old CEA outside the TTL and a fresh one inside it
        ("P3", "2023-06-01", 500.0, 2.5),
        ("P3", "2024-03-10", 12.0, 4.0),
    ])
    fd.write_source(LAB, records, settings, replace=True)
    entities = pd.DataFrame({c.PATIENT_ID: ["P1", "P2", "P3"],
                             c.EVENT_TIMESTAMP: pd.to_datetime(["2024-03-15", "2024-03-15", "2024-03-15"]),
                             c.OUTCOME: [True, False, True]})
    out = fd.historical_features(fr.open_store(settings), entities, ["cea_ng_ml", "albumin_g_dl"])
    shown = out[[c.PATIENT_ID, c.EVENT_TIMESTAMP, "cea_ng_ml", "albumin_g_dl"]]
    with capsys.disabled():
        print("\nlaboratory records (offline store):")
        print(records[[c.PATIENT_ID, fr.TIMESTAMP, "cea_ng_ml", "albumin_g_dl"]].to_string(index=False))
        print("\npoint-in-time training rows (decision 2024-03-15, laboratory TTL 30 days):")
        print(shown.to_string(index=False))
    assert list(out[c.PATIENT_ID]) == ["P1", "P2", "P3"]
    # P1: the value from before the decision, never the one recorded after it
    assert out.loc[0, "cea_ng_ml"] == 8.0 and out.loc[0, "albumin_g_dl"] == 4.2
    # P2: older than the TTL: missing, not stale-filled
    assert pd.isna(out.loc[1, "cea_ng_ml"]) and pd.isna(out.loc[1, "albumin_g_dl"])
    # P3: the fresh value, not the old one
    assert out.loc[2, "cea_ng_ml"] == 12.0
    assert list(out[c.OUTCOME]) == [True, False, True]


def _source(group, rows, columns):
    frame = pd.DataFrame(rows, columns=[c.PATIENT_ID, fr.TIMESTAMP, *columns])
    frame[fr.TIMESTAMP] = pd.to_datetime(frame[fr.TIMESTAMP]).dt.tz_localize("UTC")
    frame[fr.CREATED] = pd.Timestamp("2026-01-01", tz="UTC")
    for f in fr.groups()[group]:
        frame[f.name] = (frame[f.name].astype(c.cohort_dtypes()[f.name]) if f.name in frame
                         else pd.array([None] * len(frame), dtype=c.cohort_dtypes()[f.name]))
    return frame


def test_one_stale_source_blanks_only_that_source(tmp_path, capsys):
    """Found by the new-user trial: a stale (or post-decision) lab emptied the patient's whole row,
    age and imaging included, so 13% of a cohort trained as blank patients. Only the labs go missing."""
    settings = FeastSettings(repo_dir=tmp_path / "feast")
    fd.apply(settings, models=[])
    fd.write_source(LAB, _labs([("P1", "2024-03-18", 95.0, 3.1),    # after the decision
                                ("P2", "2023-11-01", 40.0, 3.9),    # older than the TTL
                                ("P3", "2024-03-10", 12.0, 4.0)]), settings, replace=True)
    fd.write_source("imaging", _source("imaging", [("P1", "2024-03-01", 3, 4.5), ("P2", "2024-02-20", 6, 2.0),
                                                   ("P3", "2024-03-05", 1, 7.0)],
                                       ["n_liver_metastases", "largest_metastasis_cm"]), settings, replace=True)
    fd.write_source("clinical_record", _source("clinical_record", [("P1", "2024-02-01", 61), ("P2", "2024-02-01", 70),
                                                                   ("P3", "2024-02-01", 55)], ["age_years"]),
                    settings, replace=True)
    entities = pd.DataFrame({c.PATIENT_ID: ["P1", "P2", "P3"],
                             c.EVENT_TIMESTAMP: pd.to_datetime(["2024-03-15"] * 3), c.OUTCOME: [True, False, True]})
    names = ["age_years", "n_liver_metastases", "largest_metastasis_cm", "cea_ng_ml"]
    out = fd.historical_features(fr.open_store(settings), entities, names)
    with capsys.disabled():
        print("\npoint-in-time rows, three sources (P1 lab after the decision, P2 lab 135 days old):")
        print(out[[c.PATIENT_ID, *names]].to_string(index=False))
    assert list(out["age_years"]) == [61, 70, 55]
    assert list(out["n_liver_metastases"]) == [3, 6, 1]
    assert pd.isna(out.loc[0, "cea_ng_ml"]) and pd.isna(out.loc[1, "cea_ng_ml"]) and out.loc[2, "cea_ng_ml"] == 12.0


@pytest.mark.parametrize("group", list(c.SOURCE_GROUPS))
def test_record_dates_simulated_before_the_decision(group):
    from feature_store.simulate import simulate_cohort, simulate_record_dates

    df = simulate_record_dates(simulate_cohort(300, 1), seed=1)
    lead = (pd.to_datetime(df[c.EVENT_TIMESTAMP]) - pd.to_datetime(df[c.recorded_at_column(group)])).dt.days
    assert (lead >= 0).all()
    ttl = c.SOURCE_GROUPS[group].ttl_days
    if group == LAB:
        assert 0 < (lead > ttl).mean() < 0.15  # a few stale labs, as in real charts
    elif ttl is not None:
        assert (lead <= ttl).all()


def test_an_import_dates_each_source_by_its_own_column(tmp_path):
    """A registry export with the date of the labs and of the restaging scan: the records the feature
    store ingests carry those dates, not the decision date."""
    import textwrap

    from feature_store.import_cohort import import_cohort

    export = tmp_path / "export.csv"
    export.write_text("pid,Age,n_mets,max_mm,CEA,pve_date,lab_date,ct_date,progressed\n"
                      "p1,61,3,42,12.5,01.03.2021,20.02.2021,10.01.2021,0\n"
                      "p2,55,7,25,NA,01.07.2020,,02.06.2020,1\n")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(textwrap.dedent("""
        id_column: pid
        decision_date: pve_date
        date_format: "%d.%m.%Y"
        record_dates: {laboratory: lab_date, imaging: ct_date}
        outcome: {source: progressed, recode: {1: true, 0: false}}
        columns:
          age_years: {source: Age}
          n_liver_metastases: {source: n_mets}
          largest_metastasis_cm: {source: max_mm, unit: mm}
          cea_ng_ml: {source: CEA}
    """))
    res = import_cohort(export, mapping, tmp_path / "cohort.parquet")
    assert res.ok, res.problems
    events = fd.events(pd.read_parquet(tmp_path / "cohort.parquet"))
    assert str(events["laboratory"][fr.TIMESTAMP].iloc[0].date()) == "2021-02-20"
    assert len(events["laboratory"]) == 1  # p2 has no lab value: no lab record
    assert [str(d.date()) for d in events["imaging"][fr.TIMESTAMP]] == ["2021-01-10", "2020-06-02"]
    assert str(events["clinical_record"][fr.TIMESTAMP].iloc[1].date()) == "2020-07-01"  # undated: the decision
    bad = mapping.read_text().replace("imaging: ct_date", "scans: ct_date")
    mapping.write_text(bad)
    with pytest.raises(Exception, match="record_dates: not source groups"):
        import_cohort(export, mapping, tmp_path / "c2.parquet")
