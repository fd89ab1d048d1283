import re

import numpy as np
import pandas as pd
import pytest

from feature_store import contract as c
from feature_store.dictionary import data_dictionary_markdown
from feature_store.encoding import encode, encode_array, encode_record


def test_every_feature_is_well_formed():
    for f in c.FEATURES:
        if f.kind in (c.Kind.NUMBER, c.Kind.INTEGER):
            assert f.minimum is not None and f.maximum is not None and f.minimum < f.maximum, f.name
            assert f.unit, f.name
        if f.kind is c.Kind.CATEGORY:
            assert len(f.known_categories) >= 2, f.name
        assert f.description.strip() and f.description.strip().lower() != f.name.replace("_", " "), f.name
        # A source cites something with its year, or says plainly that the value is an assumption
        # (the default): a vague "literature" or an empty source fails.
        assert f.source == "assumption" or re.search(r"\b(19|20)\d\d\b", f.source), (f.name, f.source)


def test_model_columns_are_pre_pve_only():
    cols = c.model_columns()
    owners = c.column_owner()
    assert all(c.BY_NAME[owners[col]].timing is c.Timing.PRE_PVE for col in cols)
    assert "degree_hypertrophy_pp" not in cols


@pytest.mark.parametrize("leak", ["degree_hypertrophy_pp", "kinetic_growth_rate_pct_week", "true_probability",
                                  "progression"])
def test_leaking_columns_are_refused(leak):
    with pytest.raises(c.LeakageError):
        c.model_columns(c.feature_names() + [leak])


def test_unknown_feature_refused():
    with pytest.raises(ValueError, match="not in the feature contract"):
        c.check_no_leakage(["tumour_colour"])


def test_encode_one_hot_ordinal_and_missing():
    df = pd.DataFrame([
        {"primary_side": "right_colon", "ras_status": "unknown", "chemo_response": "progressive", "sex": "male",
         "n_liver_metastases": 3, "bridging_chemo_planned": True},
        {"primary_side": None, "ras_status": "mutant", "chemo_response": None, "sex": "female",
         "n_liver_metastases": None, "bridging_chemo_planned": None},
    ])
    X = encode(df)
    assert list(X.columns) == c.model_columns()
    assert (X.dtypes == "float64").all()
    r0, r1 = X.iloc[0], X.iloc[1]
    assert r0["primary_side__right_colon"] == 1 and r0["primary_side__rectum"] == 0
    assert np.isnan(r0["ras_status__mutant"])  # unknown is missing, not a level
    assert r0["chemo_response"] == 3.0 and np.isnan(r1["chemo_response"])
    assert r0["sex__male"] == 1 and r1["sex__male"] == 0
    assert np.isnan(r1["primary_side__left_colon"]) and np.isnan(r1["n_liver_metastases"])
    assert r0["bridging_chemo_planned"] == 1 and np.isnan(r1["bridging_chemo_planned"])


def test_data_dictionary_lists_every_feature_and_is_current():
    md = data_dictionary_markdown()
    for f in c.FEATURES:
        assert f"`{f.name}`" in md
    from pathlib import Path
    committed = Path(c.__file__).parent / "DATA_DICTIONARY.md"
    assert committed.read_text() == md, "regenerate with: pverisk data-dictionary --out feature_store/DATA_DICTIONARY.md"


def test_cohort_dtypes_numeric_are_float64():
    dt = c.cohort_dtypes()
    assert dt["n_liver_metastases"] == "float64" and dt["cea_ng_ml"] == "float64"


def test_encode_record_equals_encode_array_on_a_cohort():
    from feature_store.simulate import simulate_cohort

    df = simulate_cohort(3000, seed=8)
    df["braf_v600e"] = df["braf_v600e"].astype(object)
    df.loc[::7, "braf_v600e"] = None  # None as well as "unknown"
    fast = np.vstack([encode_record(r) for r in df.to_dict("records")])
    np.testing.assert_array_equal(fast, encode_array(df))
