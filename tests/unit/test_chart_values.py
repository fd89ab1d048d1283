"""The pool of dated chart values, rule by rule: future and stale values refused with their reason (at the
TTL's edge), partial dates placed in their part before the decision, the newest value winning, a newest
bound hiding older values, conflicts left missing, and problem-list fallbacks (docs/MUTATION.md)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ehr.chart_values import Pool
from ehr.fhir_read import BOUND, CONFLICT, FUTURE, IMPRECISE, STALE, Mapped, Problem
from feature_store import contract as c
from feature_store.sources import SOURCE_GROUPS

DECISION = datetime(2025, 6, 30, 12, 0)
CEA, RAS = c.BY_NAME["cea_ng_ml"], c.BY_NAME["ras_status"]


def _pool() -> Pool:
    return Pool(DECISION, Mapped(record={}))


def _day(days_before: float) -> tuple[datetime, datetime, str]:
    t = DECISION - timedelta(days=days_before)
    return t, t, "day"


def test_a_value_dated_after_the_decision_is_refused_and_said():
    pool = _pool()
    assert not pool.offer(CEA, _day(-1), 5.0, "Observation/f", "Observation/f", "lab")
    assert pool.offer(CEA, _day(0), 6.0, "Observation/d", "Observation/d", "lab")  # at the decision: used
    assert pool.out.problems == [Problem(FUTURE, "Observation/f", "dated after the decision date; ignored", "cea_ng_ml")]


def test_a_value_is_stale_the_day_after_its_ttl_and_genotype_never_is():
    pool = _pool()
    assert pool.offer(CEA, _day(30), 5.0, "Observation/a", "Observation/a", "lab")
    assert not pool.offer(CEA, _day(31), 5.0, "Observation/b", "Observation/b", "lab")
    assert pool.out.problems == [Problem(STALE, "Observation/b", "older than 30 days (laboratory values); ignored as "
                                         "stale", "cea_ng_ml")]
    assert pool.offer(RAS, _day(3000), "mutant", "Observation/g", "Observation/g", "genomics")


@pytest.mark.parametrize("name, ttl", [("largest_metastasis_cm", 60), ("n_liver_metastases", 60),
                                       ("sflr_percent", 60), ("bilirubin_mg_dl", 30), ("age_years", 365),
                                       ("chemo_cycles_pre_pve", 90)])
def test_each_source_keeps_a_value_exactly_as_long_as_its_documented_ttl(name, ttl):
    # the TTLs are clinical facts the README and the card state (imaging 60 days, labs 30, the record a year):
    # pinned here by value, not read from the table they come from
    meta = c.BY_NAME[name]
    pool = _pool()
    assert pool.offer(meta, _day(ttl), 1.0, "Observation/a", "Observation/a", "x")
    assert not pool.offer(meta, _day(ttl + 1), 1.0, "Observation/b", "Observation/b", "x")
    assert [p.kind for p in pool.out.problems] == [STALE]


def test_the_ttl_of_every_source_group():
    assert {g.name: g.ttl_days for g in SOURCE_GROUPS.values()} == {
        "clinical_record": 365, "tumour_genotype": None, "imaging": 60, "laboratory": 30, "treatment_plan": 90}


def test_a_span_is_judged_by_its_end_and_placed_in_its_part_before_the_decision():
    pool = _pool()
    year = (datetime(2025, 1, 1), datetime(2025, 12, 31, 23, 59), "year")
    assert pool.offer(CEA, year, 5.0, "Observation/y", "Observation/y", "lab")
    (cand,) = pool.values["cea_ng_ml"]
    assert cand.when == datetime(2025, 1, 1) + (DECISION - datetime(2025, 1, 1)) / 2
    assert pool.out.problems == [Problem(IMPRECISE, "Observation/y", "dated to the year only", "cea_ng_ml")]
    early = (DECISION - timedelta(days=40), DECISION - timedelta(days=20), "month")
    pool.add(CEA, early, 4.0, "Observation/m", "Observation/m", "lab", kind=BOUND)  # a bound: no date note
    assert pool.values["cea_ng_ml"][1].when == DECISION - timedelta(days=30)
    assert len(pool.out.problems) == 1


def test_a_span_starting_after_the_decision_keeps_its_own_end():
    pool = _pool()
    after = (DECISION + timedelta(days=2), DECISION + timedelta(days=4), "day")
    pool.add(CEA, after, 5.0, "Observation/x", "Observation/x", "lab")
    assert pool.values["cea_ng_ml"][0].when == DECISION + timedelta(days=3)


def test_a_fact_of_the_chart_as_it_stands_is_dated_at_the_decision_and_rounded_to_the_contract():
    pool = _pool()
    assert pool.offer(CEA, None, 12.3456, "Condition/c", "Condition/c", "problem list")
    (cand,) = pool.values["cea_ng_ml"]
    assert (cand.when, cand.value, cand.ref, cand.kind, cand.source) == (DECISION, 12.3, "Condition/c", None,
                                                                          "problem list")


def test_the_newest_value_wins_with_its_references_and_source():
    pool = _pool()
    pool.offer(CEA, _day(10), 5.0, "Observation/old", "Observation/old", "old lab")
    pool.offer(CEA, _day(2), 7.0, "Observation/new", "Observation/new", "new lab")
    pool.offer(CEA, _day(2), 7.0, "Observation/copy", "Observation/copy", "new lab")
    pool.offer(RAS, _day(5), "mutant", "Observation/new", "Observation/new", "genomics")
    pool.settle()
    out = pool.out
    assert out.record == {"cea_ng_ml": 7.0, "ras_status": "mutant"}
    assert out.basis == ["Observation/new", "Observation/copy"] and out.sources["cea_ng_ml"] == "new lab"


def test_a_newest_bound_hides_older_values_and_differing_newest_values_conflict():
    pool = _pool()
    pool.offer(CEA, _day(10), 5.0, "Observation/old", "Observation/old", "lab")
    pool.offer(CEA, _day(1), None, "Observation/bound", "Observation/bound", "lab", kind=BOUND)
    pool.offer(RAS, _day(5), "mutant", "Observation/b", "Observation/b", "genomics")
    pool.offer(RAS, _day(5), "wild_type", "Observation/a", "Observation/a", "genomics")
    pool.settle()
    assert pool.out.record == {} and pool.out.basis == []
    assert pool.out.problems == [Problem(CONFLICT, "Observation/a, Observation/b", "2 different values at the same "
                                         "time; left missing rather than choosing one", "ras_status")]


def test_a_problem_list_fallback_counts_only_without_a_value_of_its_own():
    pool = _pool()
    pool.offer(CEA, _day(1), 9.0, "Condition/dfi", "Condition/dfi", "dates", fallback=True)
    pool.offer(CEA, _day(5), 5.0, "Observation/lab", "Observation/lab", "lab")
    pool.offer(RAS, _day(1), "mutant", "Condition/r", "Condition/r", "dates", fallback=True)
    pool.settle()
    assert pool.out.record == {"cea_ng_ml": 5.0, "ras_status": "mutant"}


def test_a_span_starting_at_the_decision_is_dated_at_it_and_a_month_is_imprecise():
    pool = _pool()
    pool.add(CEA, (DECISION, DECISION + timedelta(days=2), "day"), 5.0, "Observation/x", "Observation/x", "lab")
    assert pool.values["cea_ng_ml"][0].when == DECISION
    month = (datetime(2025, 6, 1), datetime(2025, 6, 30, 23, 59), "month")
    assert pool.offer(RAS, month, "mutant", "Observation/m", "Observation/m", "genomics")
    assert pool.out.problems == [Problem(IMPRECISE, "Observation/m", "dated to the month only", "ras_status")]


def test_a_conflict_leaves_only_its_own_input_missing():
    pool = _pool()
    pool.offer(RAS, _day(5), "mutant", "Observation/b", "Observation/b", "genomics")
    pool.offer(RAS, _day(5), "wild_type", "Observation/a", "Observation/a", "genomics")
    pool.offer(CEA, _day(3), 5.0, "Observation/c", "Observation/c", "lab")
    pool.settle()
    assert pool.out.record == {"cea_ng_ml": 5.0}
