"""Simulated PVE cohort, literature-grounded (parameters in `simulation_parameters`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from feature_store import contract as c
from feature_store import simulation_parameters as sp

SIMULATED_DATASET_PREFIX = "simulated-pve-cohort"


def dataset_name(n: int, seed: int) -> str:
    """Every simulated dataset says so in its name."""
    return f"{SIMULATED_DATASET_PREFIX}-n{n}-seed{seed}"


def _choice(rng: np.random.Generator, shares: dict[str, sp.P], n: int) -> np.ndarray:
    labels = list(shares)
    probs = np.array([shares[k].value for k in labels])
    return np.array(labels, dtype=object)[rng.choice(len(labels), size=n, p=probs / probs.sum())]


def _with_missing(rng: np.random.Generator, values: np.ndarray, share: float) -> np.ndarray:
    out = values.astype("float64") if values.dtype.kind in "fiub" else values.astype(object)
    mask = rng.random(len(values)) < share
    out[mask] = np.nan if out.dtype.kind == "f" else None
    return out


def linear_predictor(df: pd.DataFrame) -> np.ndarray:
    """Log-odds of progression from the true (complete) covariates."""
    lo = np.log
    n_mets = df["_n_mets"].to_numpy(float)
    right = df["primary_side"].to_numpy() == "right_colon"
    ras_mut = df["_ras_true"].to_numpy() == "mutant"
    braf_mut = df["_braf_true"].to_numpy() == "mutant"
    bridging = df["bridging_chemo_planned"].to_numpy(bool)
    response = df["_response_true"].to_numpy()
    eta = np.full(len(df), sp.INTERCEPT.value)
    eta += lo(sp.OR_RIGHT_SIDED.value) * right
    eta += lo(sp.OR_MORE_THAN_4_METS.value) * (n_mets > sp.METS_THRESHOLD.value)  # threshold effect
    eta += lo(sp.OR_PER_EXTRA_MET.value) * np.clip(n_mets - sp.METS_THRESHOLD.value, 0, None)
    for level, orr in sp.OR_RESPONSE.items():
        eta += lo(orr.value) * (response == level)
    eta += lo(sp.OR_MORE_THAN_6_CYCLES.value) * (df["chemo_cycles_pre_pve"].to_numpy(float) > 6)
    eta += lo(sp.OR_RAS_MUTANT.value) * ras_mut
    eta += lo(sp.OR_RAS_MUTANT_NO_BRIDGING.value) * (ras_mut & ~bridging)  # interaction
    eta += lo(sp.OR_BRAF_MUTANT.value) * braf_mut
    eta += lo(sp.OR_BRIDGING.value) * bridging
    eta += lo(sp.OR_PER_10_PCT_LOWER_SFLR.value) * (sp.SFLR_MEAN.value - df["sflr_percent"].to_numpy(float)) / 10
    eta += lo(sp.OR_PER_WEEK_LONGER_WAIT.value) * (df["planned_interval_weeks"].to_numpy(float) - 4.0)
    eta += lo(sp.OR_EXTRAHEPATIC.value) * df["extrahepatic_disease"].to_numpy(bool)
    eta += lo(sp.OR_BILOBAR.value) * df["bilobar_disease"].to_numpy(bool)
    eta += lo(sp.OR_PER_CM_LARGEST.value) * (df["largest_metastasis_cm"].to_numpy(float) - 4.0)
    eta += lo(sp.OR_PER_LOG10_CEA.value) * (np.log10(df["_cea_true"].to_numpy(float)) - 1.0)
    return eta


@dataclass(frozen=True)
class CaseMix:
    """How one centre's patients differ from the literature's average (`pverisk simulate --centres`)."""

    age_shift: float = 0.0
    burden_scale: float = 1.0  # multiplies the median number and size of metastases
    chemo_cycles_mean: float = sp.CHEMO_CYCLES_MEAN.value
    bridging_share: float = sp.BRIDGING_SHARE.value
    intercept_shift: float = 0.0  # the centre's own log-odds of progression, beyond its case mix


AVERAGE = CaseMix()


def simulate_cohort(n: int, seed: int = 0, mix: CaseMix = AVERAGE) -> pd.DataFrame:
    """Simulate `n` PVE candidates with the contract's columns, outcome and oracle probability.

    Deterministic for a given seed.  Post-PVE columns are included (for re-staging
    work and leakage tests); the pre-PVE model never uses them.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(index=pd.RangeIndex(n))
    df[c.PATIENT_ID] = [f"SIM-{seed}-{i:07d}" for i in range(n)]
    # One random stream, drawn in a fixed order: each step below draws exactly what it always did, in turn,
    # so a seed gives the same cohort whatever the steps are called.
    decision = pd.Timestamp(sp.DECISION_DATE_START) + pd.to_timedelta(
        rng.integers(0, sp.DECISION_DATE_DAYS, n), unit="D"
    )
    _draw_patient(df, rng, n, mix)
    _draw_genotype(df, rng, n)
    _draw_liver_disease(df, rng, n, mix)
    _draw_treatment(df, rng, n, mix)
    _draw_labs(df, rng, n)
    y = _draw_outcome(df, rng, n, mix)
    _draw_post_pve(df, rng, n)
    _draw_reason_and_dates(df, rng, n, y, decision)
    df = df.drop(columns=[col for col in df.columns if col.startswith("_")])
    return conform(df)


def _draw_patient(df: pd.DataFrame, rng: np.random.Generator, n: int, mix: CaseMix) -> None:
    """Age, sex, the primary tumour and when the metastases appeared."""
    df["age_years"] = np.clip(rng.normal(sp.AGE_MEAN.value + mix.age_shift, sp.AGE_SD.value, n), 30, 88).round(0)
    df["sex"] = np.where(rng.random(n) < sp.MALE_SHARE.value, "male", "female")
    u = rng.random(n)
    df["primary_side"] = np.where(
        u < sp.RIGHT_SIDED_SHARE.value,
        "right_colon",
        np.where(u < sp.RIGHT_SIDED_SHARE.value + sp.RECTUM_SHARE.value, "rectum", "left_colon"),
    )
    df["node_positive_primary"] = rng.random(n) < sp.NODE_POSITIVE_SHARE.value
    sync = rng.random(n) < sp.SYNCHRONOUS_SHARE.value
    df["synchronous_metastases"] = sync
    dfi = np.exp(rng.normal(np.log(sp.DFI_MEDIAN_MONTHS_METACHRONOUS.value), sp.DFI_LOG_SD.value, n))
    df["disease_free_interval_months"] = np.where(sync, 0.0, np.clip(dfi, 3.0, 200.0).round(1))


def _draw_genotype(df: pd.DataFrame, rng: np.random.Generator, n: int) -> None:
    """RAS and BRAF: the true status (drives the outcome) and the recorded one (sometimes unknown)."""
    ras_true = np.where(rng.random(n) < sp.RAS_MUTANT_SHARE.value, "mutant", "wild_type").astype(object)
    braf_true = np.where(rng.random(n) < sp.BRAF_MUTANT_SHARE.value, "mutant", "wild_type").astype(object)
    df["_ras_true"], df["_braf_true"] = ras_true, braf_true
    df["ras_status"] = np.where(rng.random(n) < sp.RAS_UNKNOWN_SHARE.value, "unknown", ras_true)
    df["braf_v600e"] = np.where(rng.random(n) < sp.BRAF_UNKNOWN_SHARE.value, "unknown", braf_true)


def _draw_liver_disease(df: pd.DataFrame, rng: np.random.Generator, n: int, mix: CaseMix) -> None:
    """Number and size of the metastases, bilobar and extrahepatic disease, CEA."""
    # Negative binomial with mean ~ median*1.15, shifted to start at 1.
    mu = sp.METS_MEDIAN.value * mix.burden_scale * 1.15 - 1
    k = sp.METS_DISPERSION.value
    n_mets = 1 + rng.negative_binomial(k, k / (k + mu), n)
    n_mets = np.clip(n_mets, 1, sp.METS_MAX.value)
    df["_n_mets"] = n_mets
    df["n_liver_metastases"] = n_mets.astype("float64")
    largest = np.exp(rng.normal(np.log(sp.LARGEST_MEDIAN_CM.value * mix.burden_scale), sp.LARGEST_LOG_SD.value, n))
    df["largest_metastasis_cm"] = np.clip(largest, 0.5, 20).round(1)
    bilobar_p = np.clip(sp.BILOBAR_BASE_SHARE.value + 0.04 * (n_mets - sp.METS_MEDIAN.value), 0.05, 0.98)
    df["bilobar_disease"] = rng.random(n) < bilobar_p
    df["extrahepatic_disease"] = rng.random(n) < sp.EXTRAHEPATIC_SHARE.value
    cea = np.clip(np.exp(rng.normal(np.log(sp.CEA_MEDIAN.value), sp.CEA_LOG_SD.value, n)), 0.5, 50000).round(1)
    df["_cea_true"] = cea
    df["cea_ng_ml"] = _with_missing(rng, cea, sp.CEA_MISSING_SHARE.value)


def _draw_treatment(df: pd.DataFrame, rng: np.random.Generator, n: int, mix: CaseMix) -> None:
    """Chemotherapy before PVE and its response, bridging, the future liver remnant and the PVE plan."""
    df["chemo_cycles_pre_pve"] = np.clip(rng.poisson(mix.chemo_cycles_mean, n), 0, 40).astype("float64")
    response = _choice(rng, sp.RESPONSE_SHARES, n)
    df["_response_true"] = response
    df["chemo_response"] = _with_missing(rng, response, sp.RESPONSE_MISSING_SHARE.value)
    df["bevacizumab_pre_pve"] = rng.random(n) < sp.BEVACIZUMAB_SHARE.value
    df["bridging_chemo_planned"] = rng.random(n) < mix.bridging_share
    df["sflr_percent"] = np.clip(rng.normal(sp.SFLR_MEAN.value, sp.SFLR_SD.value, n), 12, 60).round(1)
    df["planned_interval_weeks"] = rng.uniform(sp.INTERVAL_MIN_WEEKS.value, sp.INTERVAL_MAX_WEEKS.value, n).round(1)
    df["embolic_agent"] = _choice(rng, sp.EMBOLIC_SHARES, n)


def _draw_labs(df: pd.DataFrame, rng: np.random.Generator, n: int) -> None:
    """Pre-procedural bloods, each missing for a share of patients."""
    miss = sp.LAB_MISSING_SHARE.value
    df["bilirubin_mg_dl"] = _with_missing(
        rng, np.clip(np.exp(rng.normal(np.log(sp.BILIRUBIN_MEDIAN.value), 0.35, n)), 0.1, 5).round(2), miss
    )
    df["albumin_g_dl"] = _with_missing(rng, np.clip(rng.normal(sp.ALBUMIN_MEAN.value, 0.4, n), 2, 5.5).round(1), miss)
    df["inr"] = _with_missing(rng, np.clip(rng.normal(sp.INR_MEAN.value, 0.08, n), 0.8, 2).round(2), miss)
    df["platelets_10e9_l"] = _with_missing(
        rng, np.clip(rng.normal(sp.PLATELETS_MEAN.value, 70, n), 40, 700).round(0), miss
    )


def _draw_outcome(df: pd.DataFrame, rng: np.random.Generator, n: int, mix: CaseMix) -> np.ndarray:
    """The oracle probability from the true covariates and the progression it gives; returns the outcome."""
    eta = linear_predictor(df) + mix.intercept_shift
    p = 1.0 / (1.0 + np.exp(-eta))
    y = rng.random(n) < p
    df[c.TRUE_PROBABILITY] = p
    df[c.OUTCOME] = y
    return y


def _draw_post_pve(df: pd.DataFrame, rng: np.random.Generator, n: int) -> None:
    """Post-PVE measurements (not inputs of the pre-PVE model)."""
    dh = rng.normal(sp.DH_MEAN.value, sp.DH_SD.value, n)
    df["degree_hypertrophy_pp"] = np.clip(dh, -5, 40).round(1)
    weeks_to_volumetry = rng.uniform(3, 5, n)
    df["kinetic_growth_rate_pct_week"] = (df["degree_hypertrophy_pp"] / weeks_to_volumetry).round(2)


def _draw_reason_and_dates(df: pd.DataFrame, rng: np.random.Generator, n: int, y: np.ndarray,
                           decision: pd.DatetimeIndex) -> None:
    """Why resection was not done (progression, else another reason or none), the decision and outcome dates."""
    reason = np.full(n, "none", dtype=object)
    reason[y] = "progression"
    u = rng.random(n)
    edge = 0.0
    for label, share in sp.OTHER_REASON_SHARES.items():
        reason[~y & (u >= edge) & (u < edge + share.value)] = label
        edge += share.value
    df[c.NON_RESECTION_REASON] = reason
    df[c.PROGRESSION_DEFINITION] = "RECIST 1.1"
    df[c.EVENT_TIMESTAMP] = decision
    jitter = rng.integers(-5, 6, n)
    df[c.OUTCOME_DATE] = decision + pd.to_timedelta(
        (df["planned_interval_weeks"].to_numpy() * 7).round().astype(int) + 14 + jitter, unit="D"
    )


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Cast a cohort table to the contract dtypes and column order."""
    out = pd.DataFrame(index=df.index)
    out[c.PATIENT_ID] = df[c.PATIENT_ID].astype("string")
    for name, dtype in c.cohort_dtypes(None).items():
        if name in df:
            out[name] = df[name].astype(dtype)
    for col in (c.EVENT_TIMESTAMP, c.OUTCOME_DATE, *[x for x in df.columns if str(x).startswith(c.RECORDED_AT_PREFIX)]):
        if col in df:
            out[col] = pd.to_datetime(df[col])
    if c.OUTCOME in df:
        out[c.OUTCOME] = df[c.OUTCOME].astype("bool")
    for col in (c.NON_RESECTION_REASON, c.PROGRESSION_DEFINITION):
        if col in df:
            out[col] = df[col].astype("string")
    if c.TRUE_PROBABILITY in df:
        out[c.TRUE_PROBABILITY] = df[c.TRUE_PROBABILITY].astype("float64")
    if c.CENTRE in df:
        out[c.CENTRE] = df[c.CENTRE].astype("string")
    for col in df.columns:
        if str(col).startswith(c.RECORDED_SCORE_PREFIX):
            out[col] = df[col].astype("float64")
    return out


def write_cohort(df: pd.DataFrame, out: Path, csv: bool = False) -> list[Path]:
    """Write Parquet (and CSV on request); returns the paths written."""
    from feature_store.study import SIMULATED_DESIGN, write_with_design

    out = Path(out)
    write_with_design(df, out, SIMULATED_DESIGN, {"simulated": True})
    written = [out]
    if csv:
        csv_path = out.with_suffix(".csv")
        df.to_csv(csv_path, index=False)
        written.append(csv_path)
    return written


def summarise(df: pd.DataFrame) -> dict[str, float]:
    """A few numbers to eyeball a cohort with."""
    out = {
        "patients": float(len(df)),
        "progression_rate": float(df[c.OUTCOME].mean()),
        "not_resected_rate": float((df[c.NON_RESECTION_REASON] != "none").mean()),
        "right_sided_share": float((df["primary_side"] == "right_colon").mean()),
        "median_n_metastases": float(df["n_liver_metastases"].median()),
        "median_largest_cm": float(df["largest_metastasis_cm"].median()),
        "median_sflr_percent": float(df["sflr_percent"].median()),
        "cea_missing_share": float(df["cea_ng_ml"].isna().mean()),
        "ras_unknown_share": float((df["ras_status"] == "unknown").mean()),
    }
    if c.TRUE_PROBABILITY in df:
        out["mean_true_probability"] = float(df[c.TRUE_PROBABILITY].mean())
    return out


# Days before the PVE decision each kind of record is made (simulated): (low, high) of a uniform draw.
RECORD_LEAD_DAYS = {
    "clinical_record": (0, 28),     # reviewed at the tumour board that decides on PVE
    "tumour_genotype": (60, 900),   # tested once, at the diagnosis of metastatic disease
    "imaging": (3, 42),             # restaging scan and volumetry planning the PVE
    "laboratory": (1, 21),          # pre-procedural bloods
    "treatment_plan": (0, 14),      # set at the same tumour board
}
# Share of patients whose latest labs are older than the laboratory TTL (real charts have them).
STALE_LAB_SHARE = 0.05


def simulate_record_dates(df: pd.DataFrame, seed: int = 0, stale_lab_share: float = STALE_LAB_SHARE) -> pd.DataFrame:
    """The cohort with one simulated record date per source (recorded_at__<group>), before each
    patient's PVE decision: what the feature store ingests as dated events. A share of patients get
    labs older than the laboratory TTL, so point-in-time training sees them missing. Its own random
    stream: the cohort's values are unchanged."""
    rng = np.random.default_rng([seed, 10])
    out = df.copy()
    decision = pd.to_datetime(out[c.EVENT_TIMESTAMP])
    for group, (lo, hi) in RECORD_LEAD_DAYS.items():
        lead = rng.integers(lo, hi + 1, len(out))
        if group == "laboratory":
            ttl = c.SOURCE_GROUPS[group].ttl_days or 0
            stale = rng.random(len(out)) < stale_lab_share
            lead = np.where(stale, rng.integers(ttl + 1, ttl + 200, len(out)), lead)
        out[c.recorded_at_column(group)] = decision - pd.to_timedelta(lead, unit="D")
    return out
