"""The feature contract: the one definition of every model input.

Names, types, units, allowed ranges or categories, clinical codes and the time at
which each value is known are defined here once.  Everything else derives from
this module: the pydantic patient record (serving), the model-matrix columns and
dtypes (training, MLflow signature), the FHIR mapping and the data dictionary.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

CONTRACT_VERSION = "1.1.0"

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"

# Identifier, time and outcome columns of a cohort table: part of the contract, never model inputs.
PATIENT_ID = "patient_id"
EVENT_TIMESTAMP = "pve_decision_date"
OUTCOME_DATE = "outcome_assessment_date"
OUTCOME = "progression"
NON_RESECTION_REASON = "non_resection_reason"
NON_RESECTION_REASONS = ("none", "progression", "insufficient_flr", "complication", "other")
PROGRESSION_DEFINITION = "progression_definition"
PROGRESSION_DEFINITIONS = ("RECIST 1.1", "volumetric", "clinical")
# Simulated data only: the generating probability (the oracle).  Never a feature.
TRUE_PROBABILITY = "true_probability"
# Clinical scores a registry recorded itself (mapping key `scores`): evaluated as rankers beside
# the model, never inputs. Column name: prefix + score name (fong_crs, game_score, m_crs,
# tumour_burden_score, or a local score's name).
RECORDED_SCORE_PREFIX = "recorded_score__"
# When each source's record was made (recorded_at__laboratory, ...; see SOURCE_GROUPS): the feature
# store's event timestamps. Never inputs.
RECORDED_AT_PREFIX = "recorded_at__"


def recorded_at_column(group: str) -> str:
    return f"{RECORDED_AT_PREFIX}{group}"


NON_FEATURE_COLUMNS = (
    PATIENT_ID,
    EVENT_TIMESTAMP,
    OUTCOME_DATE,
    OUTCOME,
    NON_RESECTION_REASON,
    PROGRESSION_DEFINITION,
    TRUE_PROBABILITY,
)


class Kind(str, Enum):
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    CATEGORY = "category"


class Timing(str, Enum):
    PRE_PVE = "pre_pve"
    POST_PVE = "post_pve"


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str
    unit: str | None = None  # UCUM unit the coded value is reported in, for lab observations
    # g/mol of the analyte: converts moles/volume results (umol/L) onto a mass/volume contract unit.
    molar_mass: float | None = None
    # Coded answers of a qualitative test: ((system, code), contract category).
    answers: tuple[tuple[tuple[str, str], str], ...] = ()
    # A tumour genotype does not go stale like a lab value: read whatever its age.
    never_stale: bool = False


@dataclass(frozen=True)
class Derivation:
    """How a coarse feature follows from fine ones: written once, here, and used by import,
    training, serving and the clinical scores alike."""

    sources: tuple[str, ...]
    rule: str  # the rule in words, for docs, cards and notes
    # columns (dict or DataFrame) and row count -> object array in the coarse feature's terms, None missing
    compute: Callable[[Mapping[str, Any], int], np.ndarray]


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Kind
    description: str
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] = ()
    # Categories that mean "not known": stored as missing, never as a level of their own.
    unknown_categories: tuple[str, ...] = ()
    # Ordered categories are encoded as one ordinal column, others one-hot.
    ordered: bool = False
    timing: Timing = Timing.PRE_PVE
    codes: tuple[Code, ...] = ()
    source: str = "assumption"
    example: Any = None
    # Direction the model is constrained to (XGBoost monotone constraint): +1 risk never falls
    # as the value rises, all else equal; 0 unconstrained.  Only where the literature says so.
    monotone: int = 0
    # Coarse forms registries record instead of the fine value (a 0/1 flag for a count).
    derivation: Derivation | None = None
    # The record the value comes from (a key of SOURCE_GROUPS): its feature view in the feature
    # store and how long a value stays current. A coarse form is recorded with its fine source.
    recorded_in: str | None = None

    @property
    def source_group(self) -> "SourceGroup":
        if self.recorded_in is None and self.derivation is not None:
            return BY_NAME[self.derivation.sources[0]].source_group
        if self.recorded_in is None:
            raise ValueError(f"{self.name}: no source group (recorded_in) in the contract")
        return SOURCE_GROUPS[self.recorded_in]

    @property
    def coarse(self) -> bool:
        return self.derivation is not None

    @property
    def known_categories(self) -> tuple[str, ...]:
        return tuple(c for c in self.categories if c not in self.unknown_categories)

    @property
    def range_text(self) -> str:
        if self.kind in (Kind.NUMBER, Kind.INTEGER):
            unit = f" {self.unit}" if self.unit else ""
            return f"{_fmt(self.minimum)} to {_fmt(self.maximum)}{unit}"
        if self.kind is Kind.BOOLEAN:
            return "true or false"
        return "one of " + ", ".join(self.categories)

    def model_columns(self) -> tuple[str, ...]:
        """Columns this feature contributes to the model matrix."""
        if self.kind is Kind.CATEGORY and not self.ordered and len(self.known_categories) > 2:
            return tuple(f"{self.name}__{c}" for c in self.known_categories)
        if self.kind is Kind.CATEGORY and not self.ordered:
            # two known levels: one indicator column for the second level
            return (f"{self.name}__{self.known_categories[1]}",)
        return (self.name,)


@dataclass(frozen=True)
class SourceGroup:
    """A kind of record features come from, dated by its own event (a lab draw, a scan, an MDT
    plan): one feature view in the feature store. `ttl_days` is how long a value stays the
    patient's current value for a decision; older values are missing, never carried forward
    (None: it never goes stale)."""

    name: str
    title: str
    ttl_days: int | None
    ttl_reason: str


SOURCE_GROUPS: dict[str, SourceGroup] = {g.name: g for g in (
    SourceGroup(
        "clinical_record", "clinical and pathology record", 365,
        "facts about the primary tumour (side, nodes, timing of metastases) do not change, but age does and "
        "the record is re-reviewed at every tumour board: a record older than a year predates the current "
        "line of treatment and is not the one a PVE decision is taken on"),
    SourceGroup(
        "tumour_genotype", "molecular pathology report", None,
        "a tumour's RAS/BRAF genotype does not go stale: the test is done once (the FHIR mapping reads it "
        "whatever its age too, Code.never_stale)"),
    SourceGroup(
        "imaging", "imaging and volumetry", 60,
        "metastases grow or shrink under chemotherapy within weeks; PVE and resection are planned on "
        "restaging CT/MRI and volumetry from the last 4-8 weeks, so a scan older than 60 days is not today's "
        "tumour burden or liver remnant"),
    SourceGroup(
        "laboratory", "laboratory values", 30,
        "liver function, coagulation and CEA change with chemotherapy and disease; labs before an "
        "interventional procedure are expected within about 30 days (a CEA from two years ago is not "
        "today's CEA)"),
    SourceGroup(
        "treatment_plan", "treatment plan", 90,
        "the plan (chemotherapy cycles, bridging chemotherapy, embolic agent, interval to surgery) is set by "
        "the tumour board for this PVE; a plan older than 3 months belongs to an earlier decision"),
)}


# Bilirubin (C33H36N4O6, 584.66 g/mol): the molar mass that gives the conventional factor labs and
# the tabular import use, 1 mg/dL = 17.1 umol/L (584.66 would give 17.104).
BILIRUBIN_G_MOL = 10_000 / 17.1
# Qualitative mutation results as labs code them (LOINC answer lists, SNOMED CT qualifiers).
MUTATION_ANSWERS: tuple[tuple[tuple[str, str], str], ...] = (
    ((LOINC, "LA9633-4"), "mutant"),  # Present
    ((LOINC, "LA9634-2"), "wild_type"),  # Absent
    ((LOINC, "LA6576-8"), "mutant"),  # Positive
    ((LOINC, "LA6577-6"), "wild_type"),  # Negative
    ((SNOMED, "260373001"), "mutant"),  # Detected
    ((SNOMED, "260415000"), "wild_type"),  # Not detected
    ((SNOMED, "10828004"), "mutant"),  # Positive
    ((SNOMED, "260385009"), "wild_type"),  # Negative
)

# Applicability: an active Condition with one of these codes makes a patient a candidate.
LIVER_METASTASIS_CODES: tuple[Code, ...] = (
    Code(SNOMED, "94381002", "Secondary malignant neoplasm of liver"),
    Code(ICD10, "C78.7", "Secondary malignant neoplasm of liver and intrahepatic bile duct"),
    Code(ICD10CM, "C78.7", "Secondary malignant neoplasm of liver and intrahepatic bile duct"),
)
# Primary site -> primary_side, for problem lists coded in SNOMED CT (ICD-10 C18-C20 are read by
# their structure: C18.0-C18.4 right, C18.5-C18.7 and C19 left, C20 rectum). Only codes checked
# against a published SNOMED CT expansion are listed; unspecified "colon" codes give no side.
PRIMARY_SITE_SNOMED: dict[str, str] = {
    "93683002": "right_colon",  # Primary malignant neoplasm of ascending colon
    "93826009": "right_colon",  # Primary malignant neoplasm of hepatic flexure of colon
    "93771007": "left_colon",  # Primary malignant neoplasm of descending colon
    "94006002": "left_colon",  # Primary malignant neoplasm of sigmoid colon
    "93980002": "left_colon",  # Primary malignant neoplasm of rectosigmoid junction
    "93984006": "rectum",  # Primary malignant neoplasm of rectum
}
PRIMARY_SITE_ICD10 = tuple(f"C18.{i}" for i in range(10)) + ("C19", "C20")


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:g}"


def _numbers(frame: Mapping[str, Any], name: str, n: int) -> np.ndarray:
    """A numeric column as float64 with NaN for missing (absent column: all NaN)."""
    values, missing = column_values(frame, name, n)
    out = np.full(n, np.nan)
    if (~missing).any():
        out[~missing] = values[~missing].astype("float64")
    return out


def _flag(source: str, op: str, cut: float) -> Callable[[Mapping[str, Any], int], np.ndarray]:
    compare = {">": np.greater, ">=": np.greater_equal, "<": np.less}[op]

    def compute(frame: Mapping[str, Any], n: int) -> np.ndarray:
        x = _numbers(frame, source, n)
        out = np.full(n, None, dtype=object)
        known = ~np.isnan(x)
        out[known] = compare(x[known], cut)
        return out

    return compute


def _threshold(source: str, op: str, cut: float) -> Derivation:
    return Derivation((source,), f"{source} {op} {cut:g}", _flag(source, op, cut))


TBS_BANDS = ("under_3", "3_to_8", "9_or_more")


def _tbs_band(frame: Mapping[str, Any], n: int) -> np.ndarray:
    tbs = np.sqrt(_numbers(frame, "largest_metastasis_cm", n) ** 2 + _numbers(frame, "n_liver_metastases", n) ** 2)
    out = np.full(n, None, dtype=object)
    known = ~np.isnan(tbs)
    out[known] = np.where(tbs[known] >= 9, TBS_BANDS[2], np.where(tbs[known] >= 3, TBS_BANDS[1], TBS_BANDS[0]))
    return out


FEATURES: tuple[Feature, ...] = (
    Feature(
        "age_years", Kind.NUMBER, "Age at the PVE decision", recorded_in="clinical_record", unit="years",
        minimum=18, maximum=100, source="Hitpass, Cancers 2020: mean 61 +/- 9",
        codes=(Code(LOINC, "30525-0", "Age", "a"),), example=62,
    ),
    Feature(
        "sex", Kind.CATEGORY, "Administrative sex (FHIR Patient.gender)", recorded_in="clinical_record",
        categories=("female", "male"), example="male",
    ),
    Feature(
        "primary_side", Kind.CATEGORY,
        "Side of the primary tumour: right colon (ICD-10 C18.0-C18.4), left colon (C18.5-C18.7, C19), rectum (C20)", recorded_in="clinical_record",
        categories=("right_colon", "left_colon", "rectum"), example="left_colon",
        source="Hitpass 2020: right-sided HR 2.24 (1.13-4.47)",
        codes=(Code(ICD10, "C18", "Malignant neoplasm of colon"), Code(ICD10, "C19", "Rectosigmoid junction"),
               Code(ICD10, "C20", "Malignant neoplasm of rectum")),
    ),
    Feature(
        "node_positive_primary", Kind.BOOLEAN, "Lymph-node-positive primary tumour (part of Fong, GAME, m-CRS)", recorded_in="clinical_record",
        example=True, codes=(Code(SNOMED, "443493003", "Metastasis to regional lymph node"),),
    ),
    Feature(
        "synchronous_metastases", Kind.BOOLEAN, "Liver metastases found with or within 3 months of the primary", recorded_in="clinical_record",
        example=True,
    ),
    Feature(
        "disease_free_interval_months", Kind.NUMBER,
        "Months from primary diagnosis to liver metastases (0 when synchronous; part of Fong)", recorded_in="clinical_record",
        unit="months", minimum=0, maximum=240, example=0,
    ),
    Feature(
        "ras_status", Kind.CATEGORY, "KRAS/NRAS mutation status of the tumour", recorded_in="tumour_genotype",
        categories=("wild_type", "mutant", "unknown"), unknown_categories=("unknown",), example="wild_type",
        codes=(Code(LOINC, "21702-6", "KRAS gene mutations found", answers=MUTATION_ANSWERS, never_stale=True),),
    ),
    Feature(
        "braf_v600e", Kind.CATEGORY, "BRAF V600E mutation status", recorded_in="tumour_genotype",
        categories=("wild_type", "mutant", "unknown"), unknown_categories=("unknown",), example="unknown",
        codes=(Code(LOINC, "58415-1", "BRAF gene mutations found", answers=MUTATION_ANSWERS, never_stale=True),),
    ),
    Feature(
        "n_liver_metastases", Kind.INTEGER, "Number of liver metastases on pre-PVE imaging", recorded_in="imaging",
        unit="count", minimum=1, maximum=100, example=5, monotone=1,
        source="> 4 metastases: OR 4.7 for PVE failure (Arch Med Sci 2013, n=38)",
    ),
    Feature(
        "largest_metastasis_cm", Kind.NUMBER, "Diameter of the largest liver metastasis", recorded_in="imaging",
        unit="cm", minimum=0.2, maximum=30, example=3.8, monotone=1,
        codes=(Code(LOINC, "33728-7", "Size.maximum dimension in Tumor", "cm"),),
    ),
    Feature("bilobar_disease", Kind.BOOLEAN, "Metastases in both liver lobes", recorded_in="imaging", example=True),
    Feature("extrahepatic_disease", Kind.BOOLEAN, "Extrahepatic disease at the PVE decision (part of GAME)", recorded_in="imaging",
            example=False),
    Feature(
        "cea_ng_ml", Kind.NUMBER, "Serum carcinoembryonic antigen before PVE (ug/L is the same number)", recorded_in="laboratory",
        unit="ng/mL", minimum=0, maximum=100000, example=12.5,
        codes=(Code(LOINC, "2039-6", "Carcinoembryonic Ag [Mass/volume] in Serum or Plasma", "ng/mL"),
               Code(LOINC, "83085-1", "Carcinoembryonic Ag [Mass/volume] in Serum or Plasma by Immunoassay",
                    "ng/mL")),
    ),
    Feature(
        "chemo_cycles_pre_pve", Kind.INTEGER, "Cycles of systemic chemotherapy before PVE", recorded_in="treatment_plan",
        unit="cycles", minimum=0, maximum=60, example=6,
        source="Pommier 2014; Passot 2016: > 6 cycles linked to two-stage failure",
    ),
    Feature(
        "chemo_response", Kind.CATEGORY, "Best radiological response to chemotherapy before PVE (RECIST 1.1)", recorded_in="imaging",
        categories=("complete", "partial", "stable", "progressive"), ordered=True, example="partial", monotone=1,
        source="Pommier 2014; Giuliante 2014",
    ),
    Feature("bevacizumab_pre_pve", Kind.BOOLEAN, "Bevacizumab given before PVE", recorded_in="treatment_plan", example=False,
            source="Simoneau 2012: about 53%, no effect"),
    Feature("bridging_chemo_planned", Kind.BOOLEAN, "Chemotherapy planned between PVE and surgery", recorded_in="treatment_plan",
            example=False),
    Feature(
        "sflr_percent", Kind.NUMBER, "Standardized future liver remnant before PVE", recorded_in="imaging",
        unit="%", minimum=5, maximum=80, example=28.0, source="median 33% (18-54%), Surgery 2018",
    ),
    Feature(
        "planned_interval_weeks", Kind.NUMBER, "Planned interval from PVE to surgery", recorded_in="treatment_plan",
        unit="weeks", minimum=1, maximum=26, example=5.0,
    ),
    Feature(
        "embolic_agent", Kind.CATEGORY, "Embolic agent planned for PVE", recorded_in="treatment_plan",
        categories=("nbca", "particles_coils", "other"), example="nbca",
    ),
    Feature(
        "bilirubin_mg_dl", Kind.NUMBER, "Total serum bilirubin", recorded_in="laboratory", unit="mg/dL", minimum=0.05, maximum=30,
        example=0.6,
        codes=(Code(LOINC, "1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "mg/dL",
                    molar_mass=BILIRUBIN_G_MOL),
               Code(LOINC, "14631-6", "Bilirubin.total [Moles/volume] in Serum or Plasma", "umol/L",
                    molar_mass=BILIRUBIN_G_MOL)),
    ),
    Feature(
        "albumin_g_dl", Kind.NUMBER, "Serum albumin", recorded_in="laboratory", unit="g/dL", minimum=1, maximum=7, example=4.1,
        codes=(Code(LOINC, "1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL"),),
    ),
    Feature(
        "inr", Kind.NUMBER, "International normalized ratio", recorded_in="laboratory", unit="ratio", minimum=0.5, maximum=10,
        example=1.0, codes=(Code(LOINC, "6301-6", "INR in Platelet poor plasma by Coagulation assay", "{INR}"),),
    ),
    Feature(
        "platelets_10e9_l", Kind.NUMBER, "Platelet count", recorded_in="laboratory", unit="10^9/L", minimum=5, maximum=2000,
        example=240,
        codes=(Code(LOINC, "777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL"),
               Code(LOINC, "26515-7", "Platelets [#/volume] in Blood", "10*3/uL")),
    ),
    # Coarse forms: what registries built around the clinical scores keep instead of the value
    # (domain brief, "What real cohorts look like"). Each derives from the fine feature(s).
    Feature(
        "multiple_liver_metastases", Kind.BOOLEAN, "More than one liver metastasis (coarse form of the count)",
        derivation=_threshold("n_liver_metastases", ">", 1), monotone=1, example=True,
        source="Fong, Ann Surg 1999: more than one tumour (Fong CRS item)",
    ),
    Feature(
        "more_than_4_liver_metastases", Kind.BOOLEAN, "More than 4 liver metastases (coarse form of the count)",
        derivation=_threshold("n_liver_metastases", ">", 4), monotone=1, example=True,
        source="> 4 metastases: OR 4.7 for PVE failure (Arch Med Sci 2013, n=38)",
    ),
    Feature(
        "largest_metastasis_over_5cm", Kind.BOOLEAN, "Largest liver metastasis larger than 5 cm (coarse form)",
        derivation=_threshold("largest_metastasis_cm", ">", 5), monotone=1, example=False,
        source="Fong, Ann Surg 1999 (Fong CRS item); Brudvik, Ann Surg 2019 (m-CRS item)",
    ),
    Feature(
        "cea_over_200", Kind.BOOLEAN, "CEA above 200 ng/mL (coarse form)",
        derivation=_threshold("cea_ng_ml", ">", 200), example=False,
        source="Fong, Ann Surg 1999 (Fong CRS item)",
    ),
    Feature(
        "cea_20_or_more", Kind.BOOLEAN, "CEA 20 ng/mL or more (coarse form)",
        derivation=_threshold("cea_ng_ml", ">=", 20), example=False,
        source="Margonis, Br J Surg 2018 (GAME item)",
    ),
    Feature(
        "disease_free_interval_under_12_months", Kind.BOOLEAN,
        "Less than 12 months from primary to liver metastases (coarse form)",
        derivation=_threshold("disease_free_interval_months", "<", 12), example=True,
        source="Fong, Ann Surg 1999 (Fong CRS item)",
    ),
    Feature(
        "tumour_burden_band", Kind.CATEGORY,
        "Tumour Burden Score band: sqrt(largest cm^2 + count^2) under 3, 3 to 8, 9 or more (coarse form)",
        categories=TBS_BANDS, ordered=True, monotone=1, example="3_to_8",
        derivation=Derivation(("n_liver_metastases", "largest_metastasis_cm"),
                              "TBS = sqrt(largest_metastasis_cm^2 + n_liver_metastases^2): < 3, 3-8, >= 9",
                              _tbs_band),
        source="Sasaki, Ann Surg 2018; GAME bands, Margonis, Br J Surg 2018",
    ),
    # Known only after PVE: never inputs of the pre-PVE model (leakage).
    Feature(
        "degree_hypertrophy_pp", Kind.NUMBER, "Degree of FLR hypertrophy after PVE", recorded_in="imaging", unit="percentage points",
        minimum=-20, maximum=60, timing=Timing.POST_PVE, source="Shindoh, JACS 2013: DH >= 7.5",
    ),
    Feature(
        "kinetic_growth_rate_pct_week", Kind.NUMBER, "Kinetic growth rate of the FLR after PVE", recorded_in="imaging",
        unit="%/week", minimum=-10, maximum=30, timing=Timing.POST_PVE, source="Shindoh, JACS 2013: KGR >= 2%/week",
    ),
)

BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}


def coarse_forms(name: str) -> list[Feature]:
    """Coarse features derived from a fine feature."""
    return [f for f in FEATURES if f.derivation and name in f.derivation.sources]


def input_names(model_features: list[str] | tuple[str, ...]) -> list[str]:
    """What a model can use from a request: its features and the fine sources of its coarse ones."""
    wanted = set(model_features)
    for name in model_features:
        d = BY_NAME[name].derivation
        if d:
            wanted.update(d.sources)
    return [f.name for f in FEATURES if f.name in wanted]


def derive_coarse(frame: Mapping[str, Any], names: list[str] | tuple[str, ...]) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """Fill each coarse feature in `names` from its fine source(s) where the coarse value is absent.

    Returns the columns (a dict; the input is not changed) and, per coarse feature, the rows
    where its given value contradicts the fine one (for the caller to report). A recorded coarse
    value is kept where no fine value exists.
    """
    n = column_length(frame)
    out: dict[str, Any] = dict(frame.items()) if not isinstance(frame, pd.DataFrame) else {
        k: frame[k].to_numpy(dtype=object) for k in frame.columns}
    conflicts: dict[str, list[int]] = {}
    for name in names:
        f = BY_NAME[name]
        if f.derivation is None or not any(s in frame for s in f.derivation.sources):
            continue
        derived = f.derivation.compute(frame, n)
        given, missing = column_values(frame, name, n)
        known = np.not_equal(derived, None).astype(bool)  # elementwise on objects: derivable rows
        have = ~missing & known
        if have.any():
            bad = [i for i in np.flatnonzero(have) if _plain_value(given[i]) != derived[i]]
            if bad:
                conflicts[name] = bad
        # the fine value wins where there is one: a flag is its summary, never the other way round
        out[name] = derived if missing.all() else np.where(known, derived, np.where(missing, None, given))
    return out, conflicts


def satisfies(name: str, columns: Mapping[str, Any]) -> np.ndarray:
    """Rows where a (required) feature is given, directly or through its fine source(s)."""
    n = column_length(columns)
    _, missing = column_values(columns, name, n)
    d = BY_NAME[name].derivation
    if d is None:
        return ~missing
    derived = d.compute(columns, n)
    return ~missing | np.array([v is not None for v in derived], dtype=bool)


def required_text(name: str) -> str:
    """How a required feature may be given, for error messages."""
    d = BY_NAME[name].derivation
    return f"{name} (or {', '.join(d.sources)}, from which it derives)" if d else name


def _plain_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


class LeakageError(ValueError):
    """A feature known only after the PVE decision was asked for as a pre-PVE model input."""


def features(timing: Timing | None = Timing.PRE_PVE) -> tuple[Feature, ...]:
    return tuple(f for f in FEATURES if timing is None or f.timing is timing)


def feature_names(timing: Timing | None = Timing.PRE_PVE) -> list[str]:
    return [f.name for f in features(timing)]


def fine_feature_names() -> list[str]:
    """Pre-PVE features in their fine form (what the simulator and a full record carry)."""
    return [f.name for f in features() if not f.coarse]


def check_no_leakage(names: list[str] | tuple[str, ...]) -> None:
    """Refuse post-PVE features and non-feature columns (outcome, oracle) as pre-PVE inputs."""
    leaking = [n for n in names if n in BY_NAME and BY_NAME[n].timing is Timing.POST_PVE]
    leaking += [n for n in names if n in NON_FEATURE_COLUMNS]
    unknown = [n for n in names if n not in BY_NAME and n not in NON_FEATURE_COLUMNS]
    if leaking:
        raise LeakageError(
            f"not known at the PVE decision, refused as inputs of the pre-PVE model: {', '.join(leaking)}"
        )
    if unknown:
        raise ValueError(f"not in the feature contract: {', '.join(unknown)}")


def model_columns(names: list[str] | None = None) -> list[str]:
    """The model matrix columns (all float64) for the given features (default: the fine pre-PVE
    features), in contract order."""
    chosen = fine_feature_names() if names is None else names
    check_no_leakage(chosen)
    return [c for f in FEATURES if f.name in chosen for c in f.model_columns()]


def monotone_constraints_for(columns: list[str]) -> tuple[int, ...]:
    """Per model-matrix column: +1/-1/0 (the owning feature's constraint)."""
    owner = column_owner()
    return tuple(BY_NAME[owner[col]].monotone for col in columns)


def column_owner() -> dict[str, str]:
    """Model-matrix column -> feature it came from (to fold explanations back onto features)."""
    return {c: f.name for f in FEATURES for c in f.model_columns()}


def cohort_dtypes(timing: Timing | None = None) -> dict[str, str]:
    """Pandas dtypes of a validated cohort table: numbers that can be missing are float64."""
    out: dict[str, str] = {}
    for f in features(timing):
        if f.kind in (Kind.NUMBER, Kind.INTEGER):
            out[f.name] = "float64"
        elif f.kind is Kind.BOOLEAN:
            out[f.name] = "boolean"
        else:
            out[f.name] = "string"
    return out


def is_missing(v: Any) -> bool:
    """None, NaN and pd.NA are missing values."""
    return v is None or v is pd.NA or (isinstance(v, float) and v != v)


def missing_mask(values: np.ndarray) -> np.ndarray:
    """is_missing over an array. A plain loop for a few values: pd.isna costs more than one
    patient's whole encoding."""
    if len(values) <= 32:
        return np.fromiter((is_missing(v) for v in values), dtype=bool, count=len(values))
    return pd.isna(values)


def column_length(frame: Mapping[str, Any]) -> int:
    """Rows of a DataFrame or of a dict of equal-length columns."""
    return len(frame) if isinstance(frame, pd.DataFrame) else len(next(iter(frame.values()), []))


def column_values(frame: Mapping[str, Any], name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A column as an object array (None missing) or, given floats, a float array (NaN missing),
    and its missing mask."""
    if name not in frame:
        return np.full(n, None, dtype=object), np.ones(n, dtype=bool)
    values = np.asarray(frame[name]).reshape(-1)
    if values.dtype.kind == "f":  # a float column stays one: NaN is its missing (no object per cell)
        return values, np.isnan(values)
    values = values.astype(object)
    missing = missing_mask(values)
    if missing.any():  # pd.NA refuses comparison (`NA == "x"` is NA): missing is None from here on
        values = values.copy()
        values[missing] = None
    return values, missing


@lru_cache(maxsize=32)
def _plan(names: tuple[str, ...]) -> tuple[tuple[Feature, tuple[int, ...], dict[Any, float]], ...]:
    """Per chosen feature: its model-matrix column indices and, for ordered categories, the codes."""
    plan = []
    j = 0
    for f in FEATURES:
        if f.name not in names:
            continue
        width = len(f.model_columns())
        codes = {cat: float(i) for i, cat in enumerate(f.known_categories)} if f.ordered else {}
        plan.append((f, tuple(range(j, j + width)), codes))
        j += width
    return tuple(plan)


def encode_array(frame: Mapping[str, Any], names: list[str] | None = None) -> np.ndarray:
    """Cohort table or dict of columns -> float64 model matrix (n x len(model_columns)).

    Works on a DataFrame and on a plain dict of lists alike, so a batch request is encoded
    by the same code as a training table. Missing stays NaN: XGBoost handles it natively;
    the logistic baseline imputes.
    """
    chosen = tuple(fine_feature_names() if names is None else names)
    check_no_leakage(chosen)
    plan = _plan(chosen)
    n = column_length(frame)
    out = np.full((n, sum(len(cols) for _, cols, _ in plan)), np.nan)
    for f, cols, codes in plan:
        values, missing = column_values(frame, f.name, n)
        if f.kind in (Kind.NUMBER, Kind.INTEGER, Kind.BOOLEAN):
            out[~missing, cols[0]] = values[~missing].astype("float64")
        elif n > 32:  # category codes from a hash table, not a comparison per value and level
            level = pd.Categorical(values, categories=f.categories).codes.astype("int64")  # -1: absent/other
            if f.ordered:
                rank = np.array([codes.get(cat, np.nan) for cat in f.categories] + [np.nan])
                out[:, cols[0]] = rank[level]  # -1 indexes the trailing NaN
            else:
                unknown = missing | np.isin(level, [f.categories.index(u) for u in f.unknown_categories])
                for j, col in zip(cols, f.model_columns()):
                    ind = (level == f.categories.index(col.split("__", 1)[1])).astype("float64")
                    ind[unknown] = np.nan
                    out[:, j] = ind
        elif f.ordered:
            out[:, cols[0]] = [np.nan if m else codes.get(v, np.nan) for v, m in zip(values, missing)]
        else:
            for unknown in f.unknown_categories:
                missing = missing | (values == unknown)
            for j, col in zip(cols, f.model_columns()):
                ind = (values == col.split("__", 1)[1]).astype("float64")
                ind[missing] = np.nan
                out[:, j] = ind
    return out


def encode_record(record: Mapping[str, Any], names: list[str] | None = None) -> np.ndarray:
    """One patient -> 1 x p model matrix, in plain Python (numpy's per-call overhead, paid
    once per feature in encode_array, would cost more than the model). Tests check it equals
    encode_array on whole simulated cohorts."""
    plan = _plan(tuple(fine_feature_names() if names is None else names))
    row = [np.nan] * sum(len(cols) for _, cols, _ in plan)
    for f, cols, codes in plan:
        v = record.get(f.name)
        if is_missing(v):
            continue
        if f.kind in (Kind.NUMBER, Kind.INTEGER, Kind.BOOLEAN):
            row[cols[0]] = float(v)
        elif f.ordered:
            row[cols[0]] = codes.get(v, np.nan)
        elif v not in f.unknown_categories:
            for j, col in zip(cols, f.model_columns()):
                row[j] = 1.0 if col.split("__", 1)[1] == v else 0.0
    return np.array([row], dtype="float64")


def encode(frame: pd.DataFrame, names: list[str] | None = None) -> pd.DataFrame:
    """Cohort table (contract names and values) -> float64 model matrix as a DataFrame."""
    chosen = fine_feature_names() if names is None else names
    return pd.DataFrame(encode_array(frame, chosen), columns=model_columns(chosen), index=frame.index)


def example_record(names: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
    """A made-up patient from the contract's examples (documentation and MLflow input examples:
    never a real patient's row); default: every fine pre-PVE feature. The coarse examples agree
    with the fine ones (a test checks it through `derive_coarse`)."""
    chosen = fine_feature_names() if names is None else names
    return {f.name: f.example for f in FEATURES if f.name in chosen and f.example is not None}


@lru_cache(maxsize=1)
def contract_summary() -> dict[str, Any]:
    """Machine-readable contract (served as model metadata, logged with every model)."""
    return {
        "version": CONTRACT_VERSION,
        "features": [
            {
                "name": f.name,
                "type": f.kind.value,
                "unit": f.unit,
                "minimum": f.minimum,
                "maximum": f.maximum,
                "categories": list(f.categories),
                "timing": f.timing.value,
                "coarse_of": list(f.derivation.sources) if f.derivation else [],
                "derivation": f.derivation.rule if f.derivation else None,
                "description": f.description,
                "codes": [{"system": c.system, "code": c.code, "display": c.display} for c in f.codes],
                "source": f.source,
            }
            for f in FEATURES
        ],
    }


def data_dictionary_markdown() -> str:
    """The data dictionary, generated from the contract (docs are never edited by hand)."""
    lines = [
        "# Data dictionary",
        "",
        f"Generated from `feature_store/contract.py` (contract version {CONTRACT_VERSION}) by "
        "`pverisk data-dictionary`. Do not edit by hand.",
        "",
        "Pre-PVE features are the candidate inputs; each model uses the ones its training cohort "
        "recorded, and which of them it requires is the model's own (see its card and `GET /v1/model`). "
        "Coarse forms (a 0/1 flag where the fine feature is a count) are derived from the fine "
        "feature by the rule given, so a model trained on either form serves patients recorded "
        "either way. Post-PVE features are known only after the embolization and are refused as "
        "inputs of the pre-PVE model.",
        "",
        "| feature | type | unit | allowed | known | derived from | codes | description | source |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in FEATURES:
        codes = "; ".join(f"{c.system.rsplit('/', 1)[-1]} {c.code}" for c in f.codes) or "-"
        derived = f.derivation.rule if f.derivation else "-"
        lines.append(
            f"| `{f.name}` | {f.kind.value} | {f.unit or '-'} | {f.range_text} | "
            f"{f.timing.value} | {derived} | {codes} | {f.description} | {f.source} |"
        )
    lines += [
        "",
        "Cohort columns that are never model inputs:",
        "",
        f"- `{PATIENT_ID}`: pseudonymous patient id (never logged).",
        f"- `{EVENT_TIMESTAMP}`: date of the PVE decision (the prediction time; point-in-time joins).",
        f"- `{OUTCOME_DATE}`: date the outcome was assessed.",
        f"- `{OUTCOME}`: progression of liver disease between PVE and planned resection (true/false).",
        f"- `{NON_RESECTION_REASON}`: one of {', '.join(NON_RESECTION_REASONS)}.",
        f"- `{PROGRESSION_DEFINITION}`: one of {', '.join(PROGRESSION_DEFINITIONS)}.",
        f"- `{TRUE_PROBABILITY}`: simulated cohorts only, the generating probability (the oracle).",
        f"- `{RECORDED_SCORE_PREFIX}<score>`: a clinical score the registry recorded itself (a baseline, never an input).",
        "",
        "Where each pre-PVE feature is recorded (one feature view each in the feature store, dated by its own "
        "records) and how long a value stays current for a decision: older values are missing, never carried "
        "forward. Coarse forms are recorded with their fine source.",
        "",
        "| source | TTL | features | why this TTL |",
        "|---|---|---|---|",
    ]
    for g in SOURCE_GROUPS.values():
        names = ", ".join(f"`{f.name}`" for f in features() if f.source_group is g)
        ttl = f"{g.ttl_days} days" if g.ttl_days is not None else "none"
        lines.append(f"| {g.title} (`{g.name}`) | {ttl} | {names} | {g.ttl_reason} |")
    lines.append("")
    return "\n".join(lines)

