"""Data tests: the simulator follows the domain brief and recovers its published effects."""

import numpy as np
import pandas as pd
import pytest

from feature_store import contract as c
from feature_store import simulation_parameters as sp
from feature_store.recover import design, logit_fit
from feature_store.simulate import dataset_name, simulate_cohort
from feature_store.validate import validate_frame


def test_deterministic_for_a_seed():
    a, b = simulate_cohort(500, seed=3), simulate_cohort(500, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not simulate_cohort(500, seed=4)[c.OUTCOME].equals(a[c.OUTCOME])


def test_dataset_name_says_simulated():
    assert "simulated" in dataset_name(100, 1)


def test_simulated_cohort_passes_the_contract(cohort_20k):
    _, problems = validate_frame(cohort_20k, require_outcome=True)
    assert problems == []


def test_base_rate_and_non_resection(cohort_20k):
    assert 0.20 <= cohort_20k[c.OUTCOME].mean() <= 0.30
    # Ironside 2017: about 30% not resected, 84% of them for progression
    not_resected = (cohort_20k[c.NON_RESECTION_REASON] != "none").mean()
    assert 0.25 <= not_resected <= 0.36
    assert (cohort_20k.loc[cohort_20k[c.OUTCOME], c.NON_RESECTION_REASON] == "progression").all()


def test_realistic_missingness(cohort_20k):
    assert 0.10 <= (cohort_20k["ras_status"] == "unknown").mean() <= 0.20
    assert 0.05 <= cohort_20k["cea_ng_ml"].isna().mean() <= 0.15
    assert cohort_20k["n_liver_metastases"].notna().all()


def test_distributions_match_brief(cohort_20k):
    assert 58 <= cohort_20k["age_years"].mean() <= 64
    assert 0.25 <= (cohort_20k["primary_side"] == "right_colon").mean() <= 0.35
    assert 5 <= cohort_20k["n_liver_metastases"].median() <= 7
    assert 3.5 <= cohort_20k["largest_metastasis_cm"].median() <= 4.5
    assert 31 <= cohort_20k["sflr_percent"].median() <= 35
    assert 0.64 <= (cohort_20k["chemo_cycles_pre_pve"] > 6).mean() <= 0.74  # Pommier 2014: 69%


def test_dates_allow_point_in_time_joins(cohort_20k):
    assert (cohort_20k[c.OUTCOME_DATE] > cohort_20k[c.EVENT_TIMESTAMP]).all()


@pytest.fixture(scope="module")
def fitted(cohort_20k):
    return logit_fit(*design(cohort_20k))


def test_right_sided_or_within_published_ci(fitted):
    beta, _ = fitted
    lo, hi = sp.OR_RIGHT_SIDED_CI
    assert lo <= np.exp(beta["right_sided"]) <= hi


@pytest.mark.parametrize("term,param", [
    ("right_sided", sp.OR_RIGHT_SIDED),
    ("more_than_4_mets", sp.OR_MORE_THAN_4_METS),
    ("progressive", sp.OR_RESPONSE["progressive"]),
    ("stable", sp.OR_RESPONSE["stable"]),
    ("more_than_6_cycles", sp.OR_MORE_THAN_6_CYCLES),
    ("ras_mutant_no_bridging", sp.OR_RAS_MUTANT_NO_BRIDGING),
    ("bridging", sp.OR_BRIDGING),
    ("sflr_lower_10", sp.OR_PER_10_PCT_LOWER_SFLR),
    ("wait_weeks", sp.OR_PER_WEEK_LONGER_WAIT),
])
def test_simulated_effects_are_recovered(fitted, term, param):
    """Each effect entered on the log-odds scale comes back within its 99.9% Wald interval."""
    beta, se = fitted
    assert abs(beta[term] - np.log(param.value)) <= 3.3 * se[term], (term, np.exp(beta[term]), param.value)


def test_no_effect_for_age_sex_bevacizumab(cohort_20k):
    X, y = design(cohort_20k)
    d = cohort_20k.loc[X.index]
    X = X.assign(age=(d["age_years"] - 61) / 10, male=(d["sex"] == "male").astype(float),
                 bev=d["bevacizumab_pre_pve"].astype(float))
    beta, se = logit_fit(X, y)
    for term in ("age", "male", "bev"):
        assert abs(beta[term]) <= 3.3 * se[term], term
