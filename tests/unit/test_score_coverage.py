"""Clinical scores where inputs are absent or unknown, the GAME group edges and the plain words of
`why_not_computed` (docs/MUTATION.md lists the mutants these tests kill)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from feature_store.scores import compute_scores, fong_crs, game_group, game_score, item_coverage, m_crs, why_not_computed


def test_a_cohort_without_a_scores_columns_gets_missing_scores_on_its_own_index():
    frame = pd.DataFrame({"largest_metastasis_cm": [3.0, 7.0]}, index=[10, 11])
    out = compute_scores(frame)
    assert list(out.index) == [10, 11]
    assert out.isna().all().all()


def test_game_groups_at_their_edges_and_without_a_score():
    assert [game_group(s) for s in (0.0, 1.0, 2.0, 3.0, 4.0, 7.0)] == ["low", "low", "medium", "medium", "high",
                                                                       "high"]
    assert game_group(None) is None and game_group(math.nan) is None


def test_unknown_counts_as_not_recorded_for_an_item():
    frame = pd.DataFrame({"ras_status": ["mutant", "unknown", "wild_type"]})
    assert item_coverage(frame, "m_crs")[0] == ("RAS mutation", 2)


def test_every_absent_item_is_listed_whatever_its_place():
    frame = pd.DataFrame({"largest_metastasis_cm": [6.0, 3.0]})
    assert item_coverage(frame, "m_crs") == [("RAS mutation", 0), ("node-positive primary", 0),
                                            ("largest metastasis over 5 cm", 2)]


def test_the_reason_names_absent_and_partly_missing_items_in_plain_words():
    frame = pd.DataFrame({"ras_status": ["mutant", "unknown", None], "largest_metastasis_cm": [6.0, 3.0, np.nan]})
    assert why_not_computed(frame, "m_crs") == (
        "node-positive primary not recorded in this cohort (nor a coarse form or an item that settles it); "
        "also missing for some patients: RAS mutation (2 of 3 patients), largest metastasis over 5 cm "
        "(1 of 3 patients)")
    two_absent = pd.DataFrame({"largest_metastasis_cm": [6.0]})
    assert why_not_computed(two_absent, "m_crs") == (
        "RAS mutation, node-positive primary not recorded in this cohort (nor a coarse form or an item that "
        "settles it)")


def test_a_score_computed_for_some_patients_says_which_items_are_missing_for_the_others():
    frame = pd.DataFrame({"ras_status": ["mutant", "wild_type", "mutant"], "node_positive_primary": [True, None, None],
                          "largest_metastasis_cm": [6.0, 3.0, np.nan]})
    assert why_not_computed(frame, "m_crs") == (
        "computed where every item is known; missing for some patients: node-positive primary (2 of 3 patients), "
        "largest metastasis over 5 cm (1 of 3 patients)")
    complete = pd.DataFrame({"ras_status": ["mutant"], "node_positive_primary": [True], "largest_metastasis_cm": [6.0]})
    assert why_not_computed(complete, "m_crs") is None


def test_each_score_alone_equals_the_score_computed_with_the_others():
    frame = pd.DataFrame({"ras_status": ["mutant", "wild_type"], "node_positive_primary": [True, False],
                          "largest_metastasis_cm": [6.0, 3.0], "n_liver_metastases": [4, 1], "cea_ng_ml": [250.0, 5.0],
                          "disease_free_interval_months": [3, 30], "extrahepatic_disease": [True, False]})
    together = compute_scores(frame)
    for name, alone in (("fong_crs", fong_crs), ("game_score", game_score), ("m_crs", m_crs)):
        assert list(alone(frame)) == list(together[name]), name


def _registry_shapes():
    """A complete cohort, then as registries record it: an input absent, or kept only in a coarse form."""
    from feature_store import contract as c
    from feature_store.coarse import derive_coarse
    from feature_store.scores import SCORE_ITEMS
    from feature_store.simulate import simulate_cohort

    cohort = simulate_cohort(120, seed=5)
    fine = sorted({s for items in SCORE_ITEMS.values() for _, name in items
                   for s in ((c.BY_NAME[name].derivation.sources if c.BY_NAME[name].derivation else (name,)))})
    cohort = cohort.dropna(subset=fine).reset_index(drop=True)
    yield "complete", cohort
    for source in fine:
        yield f"no {source}", cohort.drop(columns=[source])
    for coarse, source in (("cea_20_or_more", "cea_ng_ml"), ("cea_over_200", "cea_ng_ml"),
                           ("multiple_liver_metastases", "n_liver_metastases"),
                           ("largest_metastasis_over_5cm", "largest_metastasis_cm")):
        kept = cohort.drop(columns=[source])
        kept[coarse] = derive_coarse(cohort, [coarse])[0][coarse]
        yield f"{source} only as {coarse}", kept


def test_a_score_is_explained_exactly_when_it_is_missing():
    # the items a score's reason names (SCORE_ITEMS) must be the items the score uses: a blank score always
    # comes with its reason, and a reason never stands beside a score every patient has (found by a review:
    # a wrong item name left Fong CRS blank for a cohort with only the CEA >= 20 flag, with no reason)
    from feature_store.scores import SCORE_ITEMS

    for shape, frame in _registry_shapes():
        scores = compute_scores(frame)
        for score in SCORE_ITEMS:
            reason = why_not_computed(frame, score)
            assert (reason is None) == bool(scores[score].notna().all()), (shape, score, reason)
            if scores[score].isna().all():
                assert "not recorded in this cohort" in reason, (shape, score, reason)
