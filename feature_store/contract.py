"""The feature contract: the one definition of every model input.

Names, types, units, allowed ranges or categories, clinical codes and the time at
which each value is known are defined here once.  Everything else derives from
this module: the pydantic patient record (serving), the model-matrix columns and
dtypes (training, MLflow signature), the FHIR mapping and the data dictionary.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

# The code systems and codes a feature is defined with (feature_store/codes.py), and the rules its coarse
# forms follow (feature_store/derivations.py): part of each definition below.
from feature_store.codes import BILIRUBIN_G_MOL, ICD10, ICD10CM, LOINC, MUTATION_ANSWERS, SNOMED, UCUM, Code  # noqa: F401
from feature_store.derivations import TBS_BANDS, Derivation, tbs_band, threshold  # noqa: F401
# Where each feature is recorded, and how long its value stays current (feature_store/sources.py).
from feature_store.sources import SOURCE_GROUPS, SourceGroup

CONTRACT_VERSION = "1.1.0"

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


# The centre a patient was treated at, in a cohort pooled from several (internal-external validation) and
# in simulated multi-centre data. Never an input.
CENTRE = "centre"


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
    CENTRE,
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
    # How a clinician names the input (cards, coverage, the calculator): never the code name.
    label: str = ""

    @property
    def source_group(self) -> "SourceGroup":
        if self.recorded_in is None and self.derivation is not None:
            return BY_NAME[self.derivation.sources[0]].source_group
        if self.recorded_in is None:
            raise ValueError(f"{self.name}: no source group (recorded_in) in the contract")
        return SOURCE_GROUPS[self.recorded_in]

    @property
    def decimals(self) -> int:
        """Clinical precision: values are stated (mapped from FHIR, echoed, prefilled, shown) at this many
        decimals, the precision labs and imaging report them at (a converted 17.1 umol/L bilirubin is
        1.0 mg/dL, not 0.99999999999927)."""
        return DECIMALS_BY_UNIT.get(self.unit or "", 2)

    @property
    def ttl_days(self) -> int | None:
        """How long a value stays current for a decision (its source group's TTL; None: never stale)."""
        return self.source_group.ttl_days

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


# Decimals a clinician reads a value at, by contract unit (a lab prints bilirubin 1.1, not 1.1228).
# Intervals keep one decimal: a disease-free interval of 11.6 months must not become 12 (Fong's cut-off).
DECIMALS_BY_UNIT = {"years": 0, "count": 0, "cycles": 0, "10^9/L": 0, "%": 0, "months": 1, "weeks": 1,
                    "ratio": 1, "mg/dL": 1, "g/dL": 1, "ng/mL": 1, "cm": 1, "percentage points": 1, "%/week": 1}
# Units as a clinician writes them (cards and the coverage listing).
UNIT_TEXT = {"10^9/L": "×10⁹/L", "ratio": "", "count": "", "%": "%", "percentage points": "percentage points"}


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:g}"


FEATURES: tuple[Feature, ...] = (
    Feature(
        "age_years", Kind.NUMBER, "Age at the PVE decision", label="Age", recorded_in="clinical_record", unit="years",
        minimum=18, maximum=100, source="Hitpass, Cancers 2020: mean 61 +/- 9",
        codes=(Code(LOINC, "30525-0", "Age", "a"),), example=62,
    ),
    Feature(
        "sex", Kind.CATEGORY, "Administrative sex (FHIR Patient.gender)", label="Sex", recorded_in="clinical_record",
        categories=("female", "male"), example="male",
    ),
    Feature(
        "primary_side", Kind.CATEGORY,
        "Side of the primary tumour: right colon (ICD-10 C18.0-C18.4), left colon (C18.5-C18.7, C19), rectum (C20)", label="Primary tumour side", recorded_in="clinical_record",
        categories=("right_colon", "left_colon", "rectum"), example="left_colon",
        source="Hitpass 2020: right-sided HR 2.24 (1.13-4.47)",
        codes=(Code(ICD10, "C18", "Malignant neoplasm of colon"), Code(ICD10, "C19", "Rectosigmoid junction"),
               Code(ICD10, "C20", "Malignant neoplasm of rectum")),
    ),
    Feature(
        "node_positive_primary", Kind.BOOLEAN, "Lymph-node-positive primary tumour (part of Fong, GAME, m-CRS)", label="Node-positive primary", recorded_in="clinical_record",
        example=True, codes=(Code(SNOMED, "443493003", "Metastasis to regional lymph node"),),
    ),
    Feature(
        "synchronous_metastases", Kind.BOOLEAN, "Liver metastases found with or within 3 months of the primary", label="Synchronous liver metastases", recorded_in="clinical_record",
        example=True,
    ),
    Feature(
        "disease_free_interval_months", Kind.NUMBER,
        "Months from primary diagnosis to liver metastases (0 when synchronous; part of Fong)", label="Disease-free interval", recorded_in="clinical_record",
        unit="months", minimum=0, maximum=240, example=0,
    ),
    Feature(
        "ras_status", Kind.CATEGORY, "KRAS/NRAS mutation status of the tumour", label="RAS (KRAS/NRAS)", recorded_in="tumour_genotype",
        categories=("wild_type", "mutant", "unknown"), unknown_categories=("unknown",), example="wild_type",
        codes=(Code(LOINC, "21702-6", "KRAS gene mutations found", answers=MUTATION_ANSWERS),),
    ),
    Feature(
        "braf_v600e", Kind.CATEGORY, "BRAF V600E mutation status", label="BRAF V600E", recorded_in="tumour_genotype",
        categories=("wild_type", "mutant", "unknown"), unknown_categories=("unknown",), example="unknown",
        codes=(Code(LOINC, "58415-1", "BRAF gene mutations found", answers=MUTATION_ANSWERS),),
    ),
    Feature(
        "n_liver_metastases", Kind.INTEGER, "Number of liver metastases on pre-PVE imaging", label="Number of liver metastases", recorded_in="imaging",
        unit="count", minimum=1, maximum=100, example=5, monotone=1,
        source="> 4 metastases: OR 4.7 for PVE failure (Arch Med Sci 2013, n=38)",
    ),
    Feature(
        "largest_metastasis_cm", Kind.NUMBER, "Diameter of the largest liver metastasis", label="Largest liver metastasis", recorded_in="imaging",
        unit="cm", minimum=0.2, maximum=30, example=3.8, monotone=1,
        codes=(Code(LOINC, "33728-7", "Size.maximum dimension in Tumor", "cm"),),
    ),
    Feature("bilobar_disease", Kind.BOOLEAN, "Metastases in both liver lobes", label="Bilobar disease", recorded_in="imaging", example=True),
    Feature("extrahepatic_disease", Kind.BOOLEAN, "Extrahepatic disease at the PVE decision (part of GAME)", label="Extrahepatic disease", recorded_in="imaging",
            example=False),
    Feature(
        "cea_ng_ml", Kind.NUMBER, "Serum carcinoembryonic antigen before PVE (ug/L is the same number)", label="CEA", recorded_in="laboratory",
        unit="ng/mL", minimum=0, maximum=100000, example=12.5,
        codes=(Code(LOINC, "2039-6", "Carcinoembryonic Ag [Mass/volume] in Serum or Plasma", "ng/mL"),
               Code(LOINC, "83085-1", "Carcinoembryonic Ag [Mass/volume] in Serum or Plasma by Immunoassay",
                    "ng/mL")),
    ),
    Feature(
        "chemo_cycles_pre_pve", Kind.INTEGER, "Cycles of systemic chemotherapy before PVE", label="Chemotherapy cycles before PVE", recorded_in="treatment_plan",
        unit="cycles", minimum=0, maximum=60, example=6,
        source="Pommier 2014; Passot 2016: > 6 cycles linked to two-stage failure",
    ),
    Feature(
        "chemo_response", Kind.CATEGORY, "Best radiological response to chemotherapy before PVE (RECIST 1.1)", label="Response to chemotherapy", recorded_in="imaging",
        categories=("complete", "partial", "stable", "progressive"), ordered=True, example="partial", monotone=1,
        source="Pommier 2014; Giuliante 2014",
    ),
    Feature("bevacizumab_pre_pve", Kind.BOOLEAN, "Bevacizumab given before PVE", label="Bevacizumab before PVE", recorded_in="treatment_plan", example=False,
            source="Simoneau 2012: about 53%, no effect"),
    Feature("bridging_chemo_planned", Kind.BOOLEAN, "Chemotherapy planned between PVE and surgery", label="Bridging chemotherapy planned", recorded_in="treatment_plan",
            example=False),
    Feature(
        "sflr_percent", Kind.NUMBER, "Standardized future liver remnant before PVE", label="Standardized future liver remnant", recorded_in="imaging",
        unit="%", minimum=5, maximum=80, example=28.0, source="median 33% (18-54%), Surgery 2018",
    ),
    Feature(
        "planned_interval_weeks", Kind.NUMBER, "Planned interval from PVE to surgery", label="Planned PVE-to-surgery interval", recorded_in="treatment_plan",
        unit="weeks", minimum=1, maximum=26, example=5.0,
    ),
    Feature(
        "embolic_agent", Kind.CATEGORY, "Embolic agent planned for PVE", label="Embolic agent", recorded_in="treatment_plan",
        categories=("nbca", "particles_coils", "other"), example="nbca",
    ),
    Feature(
        "bilirubin_mg_dl", Kind.NUMBER, "Total serum bilirubin", label="Total bilirubin", recorded_in="laboratory", unit="mg/dL", minimum=0.05, maximum=30,
        example=0.6,
        codes=(Code(LOINC, "1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "mg/dL",
                    molar_mass=BILIRUBIN_G_MOL),
               Code(LOINC, "14631-6", "Bilirubin.total [Moles/volume] in Serum or Plasma", "umol/L",
                    molar_mass=BILIRUBIN_G_MOL)),
    ),
    Feature(
        "albumin_g_dl", Kind.NUMBER, "Serum albumin", label="Albumin", recorded_in="laboratory", unit="g/dL", minimum=1, maximum=7, example=4.1,
        codes=(Code(LOINC, "1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL"),),
    ),
    Feature(
        "inr", Kind.NUMBER, "International normalized ratio", label="INR", recorded_in="laboratory", unit="ratio", minimum=0.5, maximum=10,
        example=1.0, codes=(Code(LOINC, "6301-6", "INR in Platelet poor plasma by Coagulation assay", "{INR}"),),
    ),
    Feature(
        "platelets_10e9_l", Kind.NUMBER, "Platelet count", label="Platelets", recorded_in="laboratory", unit="10^9/L", minimum=5, maximum=2000,
        example=240,
        codes=(Code(LOINC, "777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL"),
               Code(LOINC, "26515-7", "Platelets [#/volume] in Blood", "10*3/uL")),
    ),
    # Coarse forms: what registries built around the clinical scores keep instead of the value
    # (domain brief, "What real cohorts look like"). Each derives from the fine feature(s).
    Feature(
        "multiple_liver_metastases", Kind.BOOLEAN, "More than one liver metastasis (coarse form of the count)", label="More than one liver metastasis",
        derivation=threshold("n_liver_metastases", ">", 1), monotone=1, example=True,
        source="Fong, Ann Surg 1999: more than one tumour (Fong CRS item)",
    ),
    Feature(
        "more_than_4_liver_metastases", Kind.BOOLEAN, "More than 4 liver metastases (coarse form of the count)", label="More than 4 liver metastases",
        derivation=threshold("n_liver_metastases", ">", 4), monotone=1, example=True,
        source="> 4 metastases: OR 4.7 for PVE failure (Arch Med Sci 2013, n=38)",
    ),
    Feature(
        "largest_metastasis_over_5cm", Kind.BOOLEAN, "Largest liver metastasis larger than 5 cm (coarse form)", label="Largest metastasis over 5 cm",
        derivation=threshold("largest_metastasis_cm", ">", 5), monotone=1, example=False,
        source="Fong, Ann Surg 1999 (Fong CRS item); Brudvik, Ann Surg 2019 (m-CRS item)",
    ),
    Feature(
        "cea_over_200", Kind.BOOLEAN, "CEA above 200 ng/mL (coarse form)", label="CEA over 200 ng/mL",
        derivation=threshold("cea_ng_ml", ">", 200), example=False,
        source="Fong, Ann Surg 1999 (Fong CRS item)",
    ),
    Feature(
        "cea_20_or_more", Kind.BOOLEAN, "CEA 20 ng/mL or more (coarse form)", label="CEA 20 ng/mL or more",
        derivation=threshold("cea_ng_ml", ">=", 20), example=False,
        source="Margonis, Br J Surg 2018 (GAME item)",
    ),
    Feature(
        "disease_free_interval_under_12_months", Kind.BOOLEAN,
        "Less than 12 months from primary to liver metastases (coarse form)", label="Disease-free interval under 12 months",
        derivation=threshold("disease_free_interval_months", "<", 12), example=True,
        source="Fong, Ann Surg 1999 (Fong CRS item)",
    ),
    Feature(
        "tumour_burden_band", Kind.CATEGORY,
        "Tumour Burden Score band: sqrt(largest cm^2 + count^2) under 3, 3 to 8, 9 or more (coarse form)", label="Tumour Burden Score band",
        categories=TBS_BANDS, ordered=True, monotone=1, example="3_to_8",
        derivation=Derivation(("n_liver_metastases", "largest_metastasis_cm"),
                              "TBS = sqrt(largest_metastasis_cm^2 + n_liver_metastases^2): < 3, 3-8, >= 9",
                              tbs_band),
        source="Sasaki, Ann Surg 2018; GAME bands, Margonis, Br J Surg 2018",
    ),
    # Known only after PVE: never inputs of the pre-PVE model (leakage).
    Feature(
        "degree_hypertrophy_pp", Kind.NUMBER, "Degree of FLR hypertrophy after PVE", label="Degree of FLR hypertrophy", recorded_in="imaging", unit="percentage points",
        minimum=-20, maximum=60, timing=Timing.POST_PVE, source="Shindoh, JACS 2013: DH >= 7.5",
    ),
    Feature(
        "kinetic_growth_rate_pct_week", Kind.NUMBER, "Kinetic growth rate of the FLR after PVE", label="Kinetic growth rate of the FLR", recorded_in="imaging",
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


def example_record(names: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
    """A made-up patient from the contract's examples (documentation and MLflow input examples:
    never a real patient's row); default: every fine pre-PVE feature. The coarse examples agree
    with the fine ones (a test checks it through `derive_coarse`)."""
    chosen = fine_feature_names() if names is None else names
    return {f.name: f.example for f in FEATURES if f.name in chosen and f.example is not None}


