"""The modules that decide (issue 22) and the fast tests that exercise each: the one list of them.

Each module's mutants run only against its own tests (mutmut then narrows further, per mutated function,
to the tests that called it). Tests here are fast: no server, no training run, no Feast store.
`functions` (optional) restricts a module to the functions that decide, as mutmut name globs; the rest of
such a module is glue (MLflow calls, locks, I/O) that the slow suites cover and mutation does not score.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    path: str  # the source file, relative to the checkout
    what: str  # which decision it holds, as the issue names it
    tests: tuple[str, ...]  # pytest node ids or files, relative to the checkout
    functions: tuple[str, ...] = field(default=())  # function names to mutate (empty: every function)

    @property
    def module(self) -> str:
        return self.path.removesuffix(".py").replace("/", ".")

    @property
    def slug(self) -> str:
        return self.module.replace(".", "__")

    def mutant_globs(self) -> list[str]:
        """mutmut mutant-name globs: `<module>.x_<function>__mutmut_<n>`, methods `<module>.xǁClassǁ...`."""
        if not self.functions:
            return [f"{self.module}.*"]
        return [f"{self.module}.x_{f}__mutmut_*" for f in self.functions]


U = "tests/unit/"
FHIR_TESTS = (U + "test_fhir_map.py", U + "test_fhir_chart_mapping.py", U + "test_fhir_trial_holes.py",
              U + "test_fhir_scan.py", U + "test_fhir_mcode.py")

TARGETS: tuple[Target, ...] = (
    Target("training/registry.py", "champion/challenger gate and eligibility",
           (U + "test_registry_findings.py", U + "test_gate.py"),
           functions=("eligibility", "gate", "_compare_with_champion")),
    Target("model_runtime/calibration.py", "calibration map", (U + "test_updating.py", U + "test_calibration.py")),
    Target("model_runtime/bands.py", "risk bands",
           (U + "test_registry_findings.py", U + "test_bands.py", U + "test_decision_boundaries.py")),
    Target("model_runtime/explain.py", "explanations", (U + "test_explain.py", U + "test_explain_paths.py")),
    Target("feature_store/scores.py", "clinical scores",
           (U + "test_scores.py", U + "test_registry_findings.py", U + "test_score_coverage.py")),
    Target("feature_store/derivations.py", "coarse-form rules",
           (U + "test_coarse.py", U + "test_scores.py", U + "test_derivations.py")),
    Target("feature_store/coarse.py", "coarse forms at work", (U + "test_coarse.py", U + "test_registry_findings.py")),
    Target("feature_store/units.py", "unit conversion, tabular and FHIR/UCUM",
           (U + "test_units.py", U + "test_fhir_chart_mapping.py", U + "test_fhir_trial_holes.py",
            "tests/data/test_import.py")),
    Target("feature_store/import_cohort.py", "import: sentinels, recodes, units",
           (U + "test_import_values.py", "tests/data/test_import.py", "tests/data/test_registry_findings_import.py",
            U + "test_import_report.py", U + "test_import_write.py", U + "test_import_hints.py")),
    # not test_point_in_time.py: Feast, 15 s
    Target("ehr/fhir_refs.py", "FHIR patient identity", FHIR_TESTS + (U + "test_fhir_identity.py",)),
    Target("ehr/assess.py", "applicability and enough data",
           (U + "test_applicability.py", U + "test_cards.py") + FHIR_TESTS),
    Target("ehr/chart_values.py", "staleness (TTL) and conflicts", FHIR_TESTS + (U + "test_chart_values.py",)),
    # test_monitor_interval.py is left out: it trains a model, which every mutant would pay for again
    Target("monitoring/profile.py", "PSI and drift flags",
           (U + "test_profile.py", U + "test_drift.py", U + "test_profile_shape.py")),
    Target("monitoring/outcomes.py", "prediction-outcome link", (U + "test_outcomes.py", U + "test_profile.py", U + "test_outcome_link.py")),
    Target("training/meta_analysis.py", "multi-centre pooling",
           (U + "test_meta_analysis.py", U + "test_pooling_edges.py")),
    Target("training/updating.py", "model updating (closed testing)",
           (U + "test_updating.py", U + "test_updating_edges.py")),
)
