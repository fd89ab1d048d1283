"""Before anything touches MLflow: validate the cohort(s), choose the inputs, state the warnings and
split for evaluation. Every bad row is reported here, so a file that fails writes nothing."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from feature_store import contract as c
from feature_store.coarse import derive_coarse
from feature_store.encoding import encode
from feature_store.study import question_note
from training.data import Cohort, FeatureChoice, choose_features, load_cohort, patient_keys
from training.settings import TrainSettings


class SmallSampleWarning(UserWarning):
    pass


@dataclass
class Plan:
    """A validated cohort, the model's inputs and the evaluation design, ready to train on."""

    cohort: Cohort
    eval_cohort: Cohort | None
    choice: FeatureChoice
    notes: list[str]  # warnings for the card (small sample, events per parameter, question)
    note: str | None  # the study question differs from the intended one
    columns: list[str]  # model-matrix columns
    epv: float  # events per candidate predictor parameter
    design: str  # how the evaluation was done, in words
    train_frame: pd.DataFrame
    eval_frame: pd.DataFrame
    X_train: pd.DataFrame
    y_train: np.ndarray
    X_eval: pd.DataFrame
    y_eval: np.ndarray
    train_keys: list[str]
    eval_keys: list[str]
    # evaluated by cross-validating the whole pipeline (a small cohort without an evaluation file)
    cross_validated: bool

    @property
    def features(self) -> list[str]:
        return self.choice.features



def prepare(data: Path, settings: TrainSettings, eval_data: Path | None = None, features: list[str] | None = None,
            data_kind: str | None = None) -> Plan:
    """Raises CohortValidationError with every bad row, LeakageError or ValueError: nothing is written."""
    requested = list(features) if features is not None else None
    if requested is not None:
        c.check_no_leakage(requested)  # before anything else: post-PVE inputs are refused
    cohort = load_cohort(data, requested, kind=data_kind)  # raises with every bad row before MLflow
    eval_cohort = load_cohort(eval_data, requested, kind=data_kind) if eval_data else None
    choice = choose_features(cohort.frame, requested, settings, cohort.not_collected)
    _fill_coarse(choice.features, [cohort] + ([eval_cohort] if eval_cohort is not None else []))
    notes, note = _warnings(cohort, settings)
    if eval_cohort is not None:
        notes += _evaluation_warnings(eval_cohort, settings)
    columns = c.model_columns(choice.features)
    epv = cohort.events / len(columns)
    if epv < settings.epv_warning:
        notes.append(f"{epv:.1f} events per candidate predictor parameter ({cohort.events} events, {len(columns)} "
                     f"model-matrix columns), below {settings.epv_warning:g}: a high risk of overfitting "
                     "(Peduzzi 1996; Riley 2020 recommends a sample size calculation)")
    train_frame, eval_frame, design = _split(cohort, eval_cohort, settings)
    return Plan(cohort, eval_cohort, choice, notes, note, columns, epv, design, train_frame, eval_frame,
                encode(train_frame, choice.features), train_frame[c.OUTCOME].to_numpy(int),
                encode(eval_frame, choice.features), eval_frame[c.OUTCOME].to_numpy(int),
                patient_keys(train_frame), patient_keys(eval_frame),
                cross_validated=eval_cohort is None and cohort.n < settings.small_cohort)


def _fill_coarse(features: list[str], cohorts: list[Cohort]) -> None:
    """A coarse input is filled from its fine form wherever the cohort recorded that (the contract's rule)."""
    coarse = [f for f in features if c.BY_NAME[f].coarse]
    if not coarse:
        return
    for cohort in cohorts:
        filled, _ = derive_coarse(cohort.frame, coarse)
        for name in coarse:
            cohort.frame[name] = pd.array(filled[name], dtype=c.cohort_dtypes()[name])


def _warnings(cohort: Cohort, settings: TrainSettings) -> tuple[list[str], str | None]:
    """The small-sample warning (also raised as a Python warning) and the study-question note."""
    notes: list[str] = []
    if cohort.n < settings.small_sample_warning:
        msg = (f"small sample: {cohort.n} patients, {cohort.events} events; estimates are unstable and "
               "confidence intervals wide")
        warnings.warn(msg, SmallSampleWarning, stacklevel=4)  # at the caller of run_training
        notes.append(msg)
    note = question_note(cohort.design)
    if note:
        notes.append(note)
    return notes, note


def _evaluation_warnings(eval_cohort: Cohort, settings: TrainSettings) -> list[str]:
    """The evaluation cohort's own small-sample warning (also a Python warning): its figures are the ones
    quoted, so its size matters more than the training cohort's."""
    if eval_cohort.n >= settings.small_sample_warning and min(eval_cohort.events, eval_cohort.n - eval_cohort.events) \
            >= settings.evaluation_min_events:
        return []
    msg = (f"small evaluation cohort: {eval_cohort.name} has {eval_cohort.n} patients and {eval_cohort.events} events; "
           f"its AUROC and calibration are imprecise (at least {settings.evaluation_min_events} events and as many "
           "non-events are needed for a calibration slope worth reading: Riley 2021)")
    warnings.warn(msg, SmallSampleWarning, stacklevel=4)
    return [msg]


def evaluation_label(cohort: Cohort, eval_cohort: Cohort) -> str:
    """How a separate evaluation file relates to the training cohort, from their stated designs: external
    only when it comes from another site; the same site is a temporal (or split) validation; unstated,
    it is not shown to be external."""
    train_site = cohort.design.site if cohort.design else None
    eval_site = eval_cohort.design.site if eval_cohort.design else None
    what = f"{eval_cohort.name} ({eval_cohort.n} patients, {eval_cohort.events} events)"
    if train_site and eval_site and train_site.strip().lower() != eval_site.strip().lower():
        return f"external evaluation file {what}: another site ({eval_site}) than the training cohort ({train_site})"
    if train_site and eval_site:
        return (f"separate evaluation file {what} from the same site as the training cohort ({train_site}): a "
                "temporal or split validation, not an external one")
    return (f"separate evaluation file {what}; the site of the {'evaluation' if not eval_site else 'training'} "
            "cohort is not stated, so it is not shown to be external")


def _split(cohort: Cohort, eval_cohort: Cohort | None, settings: TrainSettings
           ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    frame = cohort.frame
    if eval_cohort is not None:
        return frame, eval_cohort.frame, evaluation_label(cohort, eval_cohort)
    if cohort.n >= settings.small_cohort:
        train_frame, eval_frame = train_test_split(frame, test_size=settings.test_size,
                                                   stratify=frame[c.OUTCOME].to_numpy(int),
                                                   random_state=settings.seed)
        return train_frame, eval_frame, (f"stratified held-out split ({settings.test_size:.0%}, "
                                         f"{len(eval_frame)} patients)")
    return frame, frame, (f"{settings.cv_folds}-fold cross-validation of the whole pipeline (small cohort, "
                          f"{cohort.n} patients)")

