"""Every parameter of the simulated PVE cohort, in one reviewable place.

Each value names its source or says "assumption".  These were fixed from the
domain brief (`shared/domain/pve-progression.md`) before any model was trained;
never tune them to make a model look better.  Effects are odds ratios entering
the log-odds of progression.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class P:
    value: float
    source: str


# --- Distributions of the inputs -----------------------------------------------------------
AGE_MEAN = P(61.0, "Hitpass, Cancers 2020 (n=59): mean 61")
AGE_SD = P(9.0, "Hitpass, Cancers 2020: SD 9")
MALE_SHARE = P(0.60, "assumption")
RIGHT_SIDED_SHARE = P(0.30, "assumption (brief: right-sided 25-35%)")
RECTUM_SHARE = P(0.25, "assumption")
NODE_POSITIVE_SHARE = P(0.60, "assumption")
SYNCHRONOUS_SHARE = P(0.70, "ALPPS series (n=23): about 70% synchronous")
DFI_MEDIAN_MONTHS_METACHRONOUS = P(16.0, "assumption")
DFI_LOG_SD = P(0.7, "assumption")
RAS_MUTANT_SHARE = P(0.38, "brief: mutant 35-40% of resected CRLM")
RAS_UNKNOWN_SHARE = P(0.15, "assumption (missingness)")
BRAF_MUTANT_SHARE = P(0.07, "assumption")
BRAF_UNKNOWN_SHARE = P(0.30, "assumption (missingness)")
METS_MEDIAN = P(6.0, "brief: median about 6-7 in two-stage series")
METS_DISPERSION = P(2.0, "assumption (negative binomial shape)")
METS_MAX = P(40.0, "assumption (cap)")
LARGEST_MEDIAN_CM = P(4.0, "brief: median about 4 cm (range 1.4-13)")
LARGEST_LOG_SD = P(0.45, "assumption, matches range 1.4-13 cm")
BILOBAR_BASE_SHARE = P(0.55, "assumption, rises with the number of metastases")
EXTRAHEPATIC_SHARE = P(0.15, "assumption")
CEA_MEDIAN = P(15.0, "assumption (right-skewed)")
CEA_LOG_SD = P(1.6, "assumption")
CEA_MISSING_SHARE = P(0.10, "assumption (missingness)")
CHEMO_CYCLES_MEAN = P(8.0, "Pommier, Ann Surg Oncol 2014: > 6 cycles in 69% (Poisson mean 8 gives 69%)")
RESPONSE_SHARES = {
    "complete": P(0.03, "assumption"),
    "partial": P(0.45, "assumption"),
    "stable": P(0.37, "assumption"),
    "progressive": P(0.15, "assumption"),
}
RESPONSE_MISSING_SHARE = P(0.05, "assumption (missingness)")
BEVACIZUMAB_SHARE = P(0.53, "Simoneau, HPB 2012: about 53%")
BRIDGING_SHARE = P(0.40, "assumption")
SFLR_MEAN = P(33.0, "Surgery 2018 (n=152): median 33%")
SFLR_SD = P(7.5, "assumption, matches range 18-54%")
INTERVAL_MIN_WEEKS = P(3.0, "brief: typical window 3-8 weeks")
INTERVAL_MAX_WEEKS = P(8.0, "brief: typical window 3-8 weeks")
EMBOLIC_SHARES = {"nbca": P(0.50, "assumption"), "particles_coils": P(0.40, "assumption"), "other": P(0.10, "assumption")}
LAB_MISSING_SHARE = P(0.05, "assumption (missingness)")
BILIRUBIN_MEDIAN = P(0.6, "assumption (normal liver)")
ALBUMIN_MEAN = P(4.0, "assumption")
INR_MEAN = P(1.05, "assumption")
PLATELETS_MEAN = P(230.0, "assumption")
DH_MEAN = P(10.0, "assumption; Shindoh 2013 threshold DH >= 7.5")
DH_SD = P(5.0, "assumption")

# --- Effects on the log-odds of progression (odds ratios) -----------------------------------
# Intercept: fixed once so that the base rate is about 25% (Ironside, HPB 2017: 114/450).
# It is the only value set from the simulated data itself (the base rate, not any model).
INTERCEPT = P(-3.10, "set once for a base rate of about 25% (Ironside 2017)")
OR_RIGHT_SIDED = P(2.24, "Hitpass 2020: HR 2.24 (95% CI 1.13-4.47), used as an OR")
OR_RIGHT_SIDED_CI = (1.13, 4.47)
OR_MORE_THAN_4_METS = P(2.0, "Arch Med Sci 2013: OR 4.7 (n=38), shrunk towards 1 (assumption: shrinkage)")
METS_THRESHOLD = P(4.0, "Arch Med Sci 2013: > 4 metastases")
OR_PER_EXTRA_MET = P(1.03, "assumption: mild dose-response beyond the threshold")
OR_RESPONSE = {
    "complete": P(0.5, "assumption"),
    "partial": P(1.0, "reference"),
    "stable": P(1.8, "assumption; Pommier 2014: slow response the only factor for growth"),
    "progressive": P(3.0, "assumption; Giuliante 2014: progression on chemo predicts failure"),
}
OR_MORE_THAN_6_CYCLES = P(1.5, "assumption (magnitude); Passot, JACS 2016 (direction)")
OR_RAS_MUTANT = P(1.25, "assumption: modest risk increase")
OR_RAS_MUTANT_NO_BRIDGING = P(1.6, "assumption: interaction, RAS mutant without bridging chemotherapy")
OR_BRAF_MUTANT = P(1.3, "assumption: modest")
OR_BRIDGING = P(0.7, "assumption: protective")
OR_PER_10_PCT_LOWER_SFLR = P(1.25, "assumption (magnitude); Mueller 2008: smaller FLR in non-resected")
OR_PER_WEEK_LONGER_WAIT = P(1.12, "assumption: longer wait, more progression (per week beyond 4)")
OR_EXTRAHEPATIC = P(1.3, "assumption")
OR_BILOBAR = P(1.2, "assumption")
OR_PER_CM_LARGEST = P(1.03, "assumption: not significant alone (Hitpass 2020)")
OR_PER_LOG10_CEA = P(1.1, "assumption: not significant alone (Hitpass 2020)")
# No effect found in the literature: age, sex, synchronous, bevacizumab (Simoneau 2012), embolic agent.

# --- Outcome bookkeeping -------------------------------------------------------------------
# Ironside 2017: 30% not resected, 84% of those for progression -> ~5% of all for other reasons.
OTHER_REASON_SHARES = {
    "insufficient_flr": P(0.035, "assumption, from Ironside 2017 (16% of 30% not resected)"),
    "complication": P(0.015, "assumption"),
    "other": P(0.015, "assumption"),
}
DECISION_DATE_START = "2015-01-01"
DECISION_DATE_DAYS = 3650


# --- Several centres (`pverisk simulate --centres N`) ------------------------------------------
# Each centre draws its own size, case mix, outcome rate and recorded inputs (feature_store/centres.py).
CENTRE_SIZE_RANGE = (20, 600)  # brief: "published PVE series have 20 to 600 patients per centre"; log-uniform
CENTRE_AGE_SHIFT_SD = P(3.0, "assumption: centres' mean age differs by a few years")
CENTRE_BURDEN_LOG_SD = P(0.25, "assumption: tumour burden (count, size) varies by referral pattern")
CENTRE_CHEMO_CYCLES_RANGE = (4.0, 11.0)  # assumption: centres' habits around Pommier 2014's mean of 8
CENTRE_BRIDGING_RANGE = (0.15, 0.65)  # assumption: bridging chemotherapy is a local habit
CENTRE_INTERCEPT_SD = P(0.35, "assumption: between-centre SD of the log-odds of progression (unexplained "
                              "centre effect: a 25% centre rate spans about 16-36%)")
# Share of centres that do not record an input, or keep the tumour count only as "more than one".
CENTRE_LACKS_RAS = P(0.3, "assumption: older registries lack RAS (domain brief)")
CENTRE_LACKS_SIDEDNESS = P(0.25, "assumption: older registries lack sidedness (domain brief)")
CENTRE_COUNT_AS_FLAG = P(0.25, "assumption: registries built around Fong keep the >1 flag (domain brief)")
CENTRE_LACKS_CEA = P(0.2, "assumption")


def all_parameters() -> dict[str, object]:
    """Every parameter with its source, for logging next to a simulated dataset."""
    out: dict[str, object] = {}
    for name, value in globals().items():
        if isinstance(value, P):
            out[name] = {"value": value.value, "source": value.source}
        elif isinstance(value, dict) and value and all(isinstance(v, P) for v in value.values()):
            out[name] = {k: {"value": v.value, "source": v.source} for k, v in value.items()}
    return out
