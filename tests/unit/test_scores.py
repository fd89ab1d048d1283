import math

import pandas as pd
import pytest

from feature_store.scores import compute_scores, game_group, scores_for_record

A = dict(largest_metastasis_cm=3.0, n_liver_metastases=4, node_positive_primary=True,
         disease_free_interval_months=0, cea_ng_ml=250, ras_status="mutant", extrahepatic_disease=True)
B = dict(largest_metastasis_cm=6.0, n_liver_metastases=1, node_positive_primary=False,
         disease_free_interval_months=24, cea_ng_ml=5, ras_status="wild_type", extrahepatic_disease=False)


def test_patient_a_hand_worked():
    # TBS sqrt(9+16)=5; Fong node+ DFI<12 n>1 CEA>200 = 4; GAME 1+1+1+1(TBS 3-8)+2 = 6; m-CRS RAS+node = 2
    assert scores_for_record(A) == {"tumour_burden_score": 5.0, "fong_crs": 4.0, "game_score": 6.0, "m_crs": 2.0}


def test_patient_b_hand_worked():
    s = scores_for_record(B)
    assert s["tumour_burden_score"] == pytest.approx(math.sqrt(37))
    assert s["fong_crs"] == 1.0  # only > 5 cm
    assert s["game_score"] == 1.0  # TBS 6.1 -> 1 point
    assert game_group(s["game_score"]) == "low"
    assert s["m_crs"] == 1.0


def test_tbs_of_nine_or_more_gives_two_game_points():
    rec = dict(B, largest_metastasis_cm=5.0, n_liver_metastases=8)  # TBS = sqrt(89) = 9.43
    assert scores_for_record(rec)["game_score"] == 2.0 + 0  # TBS 2, size not in GAME


def test_thresholds_are_strict_where_published():
    # Fong: CEA > 200 and > 5 cm are strict; DFI < 12 is strict.
    rec = dict(B, largest_metastasis_cm=5.0, cea_ng_ml=200, disease_free_interval_months=12, n_liver_metastases=1)
    assert scores_for_record(rec)["fong_crs"] == 0.0
    # GAME: CEA >= 20 inclusive
    assert scores_for_record(dict(B, cea_ng_ml=20))["game_score"] == 2.0


def test_missing_input_gives_missing_score_not_a_guess():
    rec = dict(A, cea_ng_ml=None, ras_status="unknown")
    s = scores_for_record(rec)
    assert s["fong_crs"] is None and s["game_score"] is None and s["m_crs"] is None
    assert s["tumour_burden_score"] == 5.0


def test_vectorised_matches_single():
    df = pd.DataFrame([A, B])
    out = compute_scores(df)
    assert out.iloc[0].to_dict() == scores_for_record(A)
    assert game_group(6.0) == "high" and game_group(2.0) == "medium"
