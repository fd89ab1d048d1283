"""What the real registry showed, at import and at the split before training (issue: many centres, few
patients each)."""

from __future__ import annotations

import pytest

from feature_store.import_cohort import import_cohort
from feature_store.simulate import simulate_cohort
from feature_store.study import StudyDesign, write_with_design
from tests.conftest import fast_settings
from tests.fixtures.registry_pve import MAPPING, write_pve_subset
from training.prepare import SmallSampleWarning, prepare


def test_a_0_1_tumour_count_flag_mapped_as_the_count_suggests_the_coarse_form(tmp_path):
    files = write_pve_subset(tmp_path)
    mapping = tmp_path / "as-count.yaml"
    mapping.write_text(MAPPING.replace("multiple_liver_metastases: {source: multiple_mets}",
                                       "n_liver_metastases: {source: multiple_mets}"))
    result = import_cohort(files["csv"], mapping, tmp_path / "out.parquet", drop_invalid=True, max_drop=1.0)
    assert not result.ok and result.written is None  # never "one metastasis" for every 1
    whole = [p for p in result.problems if p.row is None and p.column == "n_liver_metastases"]
    assert whole and "map it to multiple_liver_metastases" in whole[0].rule and "only 0 and 1" in whole[0].rule


def _cohort(path, n, seed, site):
    write_with_design(simulate_cohort(n, seed=seed), path, StudyDesign(population="pve_only", site=site))
    return path


def test_an_evaluation_file_from_the_same_site_is_not_called_external_and_gets_its_own_warning(tmp_path):
    train = _cohort(tmp_path / "train.parquet", 300, 1, "Hospital A")
    same = _cohort(tmp_path / "later.parquet", 60, 2, "hospital a")
    with pytest.warns(SmallSampleWarning, match="small evaluation cohort"):
        plan = prepare(train, fast_settings(), same)
    assert "same site" in plan.design and "external" in plan.design and "not an external one" in plan.design
    assert any(n.startswith("small evaluation cohort: ") and "later" in n for n in plan.notes)
    other = _cohort(tmp_path / "other.parquet", 60, 3, "Hospital B")
    with pytest.warns(SmallSampleWarning):
        assert prepare(train, fast_settings(), other).design.startswith("external evaluation file ")
