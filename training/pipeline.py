"""The training run: validate, split, tune, fit, calibrate, evaluate, log, gate, register.

Validation happens before anything is written to MLflow; registration happens last
and is undone on failure, so a failed run leaves no half-registered model.
"""

from __future__ import annotations

import logging
import subprocess
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.model_selection import StratifiedKFold, train_test_split

from feature_store import contract as c
from feature_store.coarse import derive_coarse
from feature_store.dictionary import contract_summary
from feature_store.encoding import encode, encode_array
from monitoring.profile import build_profile
from feature_store.settings import project_root
from feature_store.scores import compute_scores
from training import evaluate as ev
from training import plots, registry
from feature_store.study import question_note
from training.data import choose_features, design_tags, load_cohort, patient_keys
from training.model_card import RESEARCH_NOTICE, build_card, card_markdown
from training.settings import TrackingSettings, TrainSettings
from training.train import FittedModel, Trial, fit_logistic, fit_model, fold_count, refit_fixed

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


class SmallSampleWarning(UserWarning):
    pass


class TrackingUnavailable(RuntimeError):
    """The tracking server stopped answering during a run."""


def _server_down(uri: str) -> bool:
    """A remote tracking server that does not answer its health check (local stores: never)."""
    if not uri.startswith(("http://", "https://")):
        return False
    import httpx

    try:
        return httpx.get(f"{uri.rstrip('/')}/health", timeout=5).status_code != 200
    except httpx.HTTPError:
        return True


@contextmanager
def _tracking_guard(uri: str, stage: list[str], run_id: list[str]) -> Iterator[None]:
    """Turn a tracking server that stops mid-run into one clear error: where the run was, what was
    and was not registered, what to do. (Without it the user saw MLflow's error from marking the run
    failed, which replaced the first one after minutes of retries.)"""
    try:
        yield
    except registry.RegistrationIncomplete as exc:
        if _server_down(uri):
            raise TrackingUnavailable(f"the MLflow tracking server at {uri} stopped answering while "
                                      f"registering (run {run_id[0] if run_id else '?'}): {exc}") from exc
        raise
    except Exception as exc:
        if not _server_down(uri):
            raise
        first = exc
        while first.__context__ is not None and isinstance(first.__context__, Exception):
            first = first.__context__  # MLflow's failed attempt to mark the run failed hides the cause
        run = f"run {run_id[0]}" if run_id else "before the run started"
        raise TrackingUnavailable(
            f"the MLflow tracking server at {uri} stopped answering during training ({run}, while "
            f"{stage[-1] if stage else 'connecting'}): nothing was registered and no alias moved; the run may "
            f"stay marked RUNNING there. Rerun the training once the server answers again. "
            f"({type(first).__name__}: {str(first)[:300]})") from exc


@dataclass
class TrainingResult:
    run_id: str
    model_uri: str
    registered_model: str
    version: str
    alias: str
    gate_reason: str
    features: list[str]
    required: list[str]
    skipped: list[dict[str, str]]
    question_note: str | None
    metrics: dict[str, float]
    baselines: dict[str, Any]
    oracle: dict[str, float] | None
    card: dict[str, Any]
    seconds: float
    warnings: list[str] = field(default_factory=list)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pinned_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("xgboost", "scikit-learn", "numpy", "pandas", "mlflow")]


def conda_env() -> dict[str, Any]:
    """The model's environment, stated in full: given only pip requirements, MLflow looks up the
    installed pip to write conda.yaml and warns on every run in a venv without pip (uv's)."""
    import platform

    return {"name": "pverisk-model", "channels": ["conda-forge"],
            "dependencies": [f"python={platform.python_version()}", "pip", {"pip": pinned_requirements()}]}


def dataset_source(path: str) -> Any:
    """The cohort file as MLflow's local-file dataset source, stated rather than guessed: MLflow
    registers two resolvers for local paths and warns at every guess. The path itself when no
    local resolver is registered (an MLflow change)."""
    from mlflow.data.dataset_source_registry import get_registered_sources

    local = [s for s in get_registered_sources() if s._get_source_type() == "local"]
    return local[-1]._resolve(path) if local else path


def configure_tracking(tracking: TrackingSettings) -> MlflowClient:
    """Point MLflow at the configured store and make sure the experiment exists."""
    mlflow.set_tracking_uri(tracking.tracking_uri)
    client = MlflowClient(tracking.tracking_uri)
    if client.get_experiment_by_name(tracking.experiment) is None:
        local = tracking.tracking_uri.startswith("sqlite:") or tracking.tracking_uri.startswith("file:")
        location = None
        if local:
            tracking.artifact_root.mkdir(parents=True, exist_ok=True)
            location = tracking.artifact_root.resolve().as_uri()
        client.create_experiment(tracking.experiment, artifact_location=location)
    mlflow.set_experiment(tracking.experiment)
    return client


def _small_cohort_predictions(X: pd.DataFrame, y: np.ndarray, settings: TrainSettings
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Small cohorts: every patient predicted by a model (tuned and calibrated; and the logistic
    baseline) that never saw them, on the same folds."""
    p_model, p_logreg = np.zeros(len(y)), np.zeros(len(y))
    inner = settings.model_copy(update={"trials": max(2, settings.trials // 2)})
    splitter = StratifiedKFold(fold_count(y, settings.cv_folds), shuffle=True, random_state=settings.seed + 7)
    for tr, te in splitter.split(X, y):
        p_model[te] = fit_model(X.iloc[tr], y[tr], inner).predict(X.iloc[te])
        p_logreg[te] = fit_logistic(X.iloc[tr], y[tr], settings).predict_proba(X.iloc[te])[:, 1]
    return p_model, p_logreg


def _log_figure(fig: plt.Figure, name: str) -> None:
    mlflow.log_figure(fig, f"plots/{name}")
    plt.close(fig)


def _contributions(model: FittedModel, X: pd.DataFrame, max_rows: int = 2000) -> pd.DataFrame:
    sample = X.iloc[:max_rows]
    contribs = model.classifier.get_booster().predict(xgb.DMatrix(sample, missing=np.nan), pred_contribs=True)
    return pd.DataFrame(contribs[:, :-1], columns=model.columns, index=sample.index)


def run_training(
    data: Path,
    *,
    settings: TrainSettings | None = None,
    tracking: TrackingSettings | None = None,
    eval_data: Path | None = None,
    features: list[str] | None = None,
    data_kind: str | None = None,
    progress: Progress = lambda msg: None,
) -> TrainingResult:
    settings = settings or TrainSettings()
    tracking = tracking or TrackingSettings()
    t_start = time.perf_counter()
    requested = list(features) if features is not None else None
    if requested is not None:
        c.check_no_leakage(requested)  # before anything else: post-PVE inputs are refused

    progress("validating data")
    cohort = load_cohort(data, requested, kind=data_kind)  # raises with every bad row before MLflow
    eval_cohort = load_cohort(eval_data, requested, kind=data_kind) if eval_data else None
    choice = choose_features(cohort.frame, requested, settings, cohort.not_collected)
    features = choice.features
    # a coarse input is filled from its fine form wherever the cohort recorded that (the contract's rule)
    coarse = [f for f in features if c.BY_NAME[f].coarse]
    for frame_ in [cohort.frame] + ([eval_cohort.frame] if eval_cohort is not None else []):
        if coarse:
            filled, _ = derive_coarse(frame_, coarse)
            for name in coarse:
                frame_[name] = pd.array(filled[name], dtype=c.cohort_dtypes()[name])
    notes: list[str] = []
    if cohort.n < settings.small_sample_warning:
        msg = (f"small sample: {cohort.n} patients, {cohort.events} events; estimates are unstable and "
               "confidence intervals wide")
        warnings.warn(msg, SmallSampleWarning, stacklevel=2)
        notes.append(msg)
    note = question_note(cohort.design)
    if note:
        notes.append(note)

    columns = c.model_columns(features)
    epv = cohort.events / len(columns)
    if epv < settings.epv_warning:
        notes.append(f"{epv:.1f} events per candidate predictor parameter ({cohort.events} events, {len(columns)} "
                     f"model-matrix columns), below {settings.epv_warning:g}: a high risk of overfitting "
                     "(Peduzzi 1996; Riley 2020 recommends a sample size calculation)")
    frame = cohort.frame
    y_all = frame[c.OUTCOME].to_numpy(int)
    if eval_cohort is not None:
        train_frame, eval_frame = frame, eval_cohort.frame
        design = f"external evaluation file {eval_cohort.name} ({eval_cohort.n} patients)"
    elif cohort.n >= settings.small_cohort:
        train_frame, eval_frame = train_test_split(frame, test_size=settings.test_size, stratify=y_all,
                                                   random_state=settings.seed)
        design = f"stratified held-out split ({settings.test_size:.0%}, {len(eval_frame)} patients)"
    else:
        train_frame, eval_frame = frame, frame
        design = f"{settings.cv_folds}-fold cross-validation of the whole pipeline (small cohort, {cohort.n} patients)"
    X_train = encode(train_frame, features)
    y_train = train_frame[c.OUTCOME].to_numpy(int)
    X_eval = encode(eval_frame, features)
    y_eval = eval_frame[c.OUTCOME].to_numpy(int)
    train_keys = patient_keys(train_frame)
    eval_keys = patient_keys(eval_frame)

    stage: list[str] = []
    run_ids: list[str] = []
    report = progress

    def progress(msg: str) -> None:  # noqa: F811 - the caller's, remembering the stage for errors
        stage.append(msg)
        report(msg)

    with _tracking_guard(tracking.tracking_uri, stage, run_ids):
        return _log_run(cohort, eval_cohort, choice, features, notes, note, columns, epv, design, train_frame,
                        eval_frame, X_train, y_train, X_eval, y_eval, train_keys, eval_keys, settings, tracking,
                        progress, t_start, run_ids)


def _log_run(cohort: Any, eval_cohort: Any, choice: Any, features: list[str], notes: list[str], note: str | None,
             columns: list[str], epv: float, design: str, train_frame: pd.DataFrame, eval_frame: pd.DataFrame,
             X_train: pd.DataFrame, y_train: np.ndarray, X_eval: pd.DataFrame, y_eval: np.ndarray,
             train_keys: list[str], eval_keys: list[str], settings: TrainSettings, tracking: TrackingSettings,
             progress: Progress, t_start: float, run_ids: list[str]) -> TrainingResult:
    """Everything that talks to MLflow: the run, its logs, the gate and the registration."""
    client = configure_tracking(tracking)
    name = tracking.registered_model
    tags = {
        "data_kind": cohort.kind,
        "simulated": str(cohort.simulated).lower(),
        "dataset_name": cohort.name,
        "dataset_digest": cohort.digest,
        "git_commit": git_commit(),
        "feature_contract_version": c.CONTRACT_VERSION,
        "research_use_only": "true",
        "features": ",".join(features)[:5000],
        **design_tags(cohort.design),
        **({"question_note": note[:5000]} if note else {}),
    }
    with mlflow.start_run(run_name=f"train-{cohort.name}", tags=tags) as run:
        run_ids.append(run.info.run_id)
        mlflow.log_params({
            "seed": settings.seed, "trials": settings.trials, "time_budget_s": settings.time_budget_s,
            "cv_folds": settings.cv_folds, "evaluation_design": design, "n_features": len(features),
            "n_train": len(train_frame), "n_eval": len(eval_frame),
        })
        mlflow.log_dict({"features": features, "required": choice.required, "skipped": choice.skipped},
                        "features.json")
        # hashed patient keys (no ids): the gate compares versions only on patients neither saw
        mlflow.log_dict({"dataset_digest": cohort.digest, "keys": sorted(set(train_keys))},
                        registry.TRAINING_KEYS_ARTIFACT)
        for ctx, coh, fr in (("training", cohort, train_frame), ("evaluation", eval_cohort or cohort, eval_frame)):
            ds = mlflow.data.from_pandas(fr.drop(columns=[c.PATIENT_ID]), source=dataset_source(coh.source), name=coh.name,
                                         targets=c.OUTCOME)
            mlflow.log_input(ds, context=ctx, tags={"data_kind": coh.kind, "content_hash": coh.digest})

        progress(f"tuning ({settings.trials} trials)")

        def log_trial(t: Trial) -> None:
            with mlflow.start_run(run_name=f"trial-{t.number}", nested=True):
                mlflow.log_params(t.params)
                mlflow.log_metrics({"cv_auroc": t.cv_auroc, "cv_auroc_sd": t.cv_auroc_sd,
                                    "best_rounds": t.best_rounds, "seconds": t.seconds})
            progress(f"trial {t.number}: CV AUROC {t.cv_auroc:.3f}")

        model = fit_model(X_train, y_train, settings, on_trial=log_trial)
        mlflow.log_params({f"xgb_{k}": v for k, v in model.params.items()})
        mlflow.log_param("calibration", model.calibration["method"])
        mlflow.log_metrics({f"calibration_cv_log_loss_{k}": v for k, v in model.calibration_cv_log_loss.items()})

        progress("evaluating")
        if eval_cohort is None and cohort.n < settings.small_cohort:
            p_eval, p_logreg = _small_cohort_predictions(X_train, y_train, settings)
        else:
            p_eval = model.predict(X_eval)
            p_logreg = fit_logistic(X_train, y_train, settings).predict_proba(X_eval)[:, 1]
        metrics = ev.metrics_with_ci(y_eval, p_eval, settings.n_bootstrap, settings.seed)
        mlflow.log_metrics({f"eval_{k}": v for k, v in metrics.items()})
        optimism = None
        if cohort.events < settings.optimism_below_events:
            progress(f"bootstrap optimism correction ({settings.optimism_bootstrap} samples)")

            def refit(rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
                predict = refit_fixed(X_train.iloc[rows], y_train[rows], model, settings, settings.seed)
                return lambda idx: predict(X_train.iloc[idx])

            optimism = ev.optimism_corrected(refit, len(y_train), y_train, model.predict(X_train),
                                             settings.optimism_bootstrap, settings.seed)
            mlflow.log_metrics(optimism)
            if optimism["optimism_corrected_auroc"] > metrics["auroc"] + 0.05:
                notes.append(
                    f"the bootstrap optimism-corrected AUROC ({optimism['optimism_corrected_auroc']:.3f}) is well "
                    f"above the cross-validated one ({metrics['auroc']:.3f}): Harrell's correction under-corrects "
                    "flexible learners, which memorise the duplicated patients of each bootstrap sample; the "
                    "cross-validated figure is the one to quote")

        logreg = ev.metrics_with_ci(y_eval, p_logreg, settings.n_bootstrap, settings.seed)
        diff = ev.auroc_difference(y_eval, p_eval, p_logreg, settings.n_bootstrap, settings.seed)
        baselines: dict[str, Any] = {"logistic_regression": {
            "n": len(y_eval), "auroc": logreg["auroc"], "auroc_ci_low": logreg["auroc_ci_low"],
            "auroc_ci_high": logreg["auroc_ci_high"], "brier": logreg["brier"],
            "calibration_slope": logreg["calibration_slope"], "model_auroc_same_patients": metrics["auroc"],
            "model_minus_baseline_auroc": diff["difference"], "difference_ci_low": diff["ci_low"],
            "difference_ci_high": diff["ci_high"],
        }}
        scores = compute_scores(eval_frame)
        for s in scores.columns:
            baselines[s] = ev.score_ranker_auroc(y_eval, scores[s].to_numpy(), p_eval)
            if baselines[s]["n"] == 0:
                baselines[s]["skipped"] = "its inputs (or their coarse forms) are not recorded in this cohort"
        for col in cohort.recorded_scores:
            if col in eval_frame:
                baselines[f"{col.removeprefix(c.RECORDED_SCORE_PREFIX)} (recorded)"] = ev.score_ranker_auroc(
                    y_eval, eval_frame[col].to_numpy(float), p_eval)
        for bname, b in baselines.items():
            mlflow.log_metrics({f"baseline_{_metric_name(bname)}_{k}": float(v) for k, v in b.items()
                                if isinstance(v, (int, float)) and v is not None})
        mlflow.log_table(pd.DataFrame([{"model": k, **v} for k, v in baselines.items()]), "baselines.json")

        oracle = None
        if c.TRUE_PROBABILITY in eval_frame and eval_frame[c.TRUE_PROBABILITY].notna().all():
            p_true = eval_frame[c.TRUE_PROBABILITY].to_numpy(float)
            oracle = ev.core_metrics(y_eval, p_true)
            oracle["auroc_gap"] = metrics["auroc"] - oracle["auroc"]
            oracle["brier_gap"] = metrics["brier"] - oracle["brier"]
            mlflow.log_metrics({f"oracle_{k}": v for k, v in oracle.items()})

        subgroups, skipped_subgroups = ev.subgroup_table(eval_frame, y_eval, p_eval)
        mlflow.log_table(subgroups, "subgroups.json")
        dc = {"model": ev.net_benefit(y_eval, p_eval), "logistic regression": ev.net_benefit(y_eval, p_logreg)}
        mlflow.log_table(dc["model"], "decision_curve.json")

        progress("plots and explanations")
        curves = {"XGBoost (calibrated)": p_eval, "logistic regression": p_logreg}
        if oracle:
            curves["oracle (true probability)"] = eval_frame[c.TRUE_PROBABILITY].to_numpy(float)
        _log_figure(plots.roc_figure(y_eval, curves), "roc.png")
        _log_figure(plots.calibration_figure(y_eval, curves), "calibration.png")
        _log_figure(plots.decision_curve_figure(dc), "decision_curve.png")
        _log_figure(plots.shap_summary_figure(_contributions(model, X_eval), X_eval), "shap_summary.png")

        card = build_card(
            model_name=name, cohort=cohort, features=features, params=model.params, calibration=model.calibration,
            evaluation=metrics, baselines=baselines, subgroups=subgroups.to_dict("records"), oracle=oracle,
            evaluation_design=design, n_train=len(train_frame), events_train=int(y_train.sum()), warnings=notes,
            required=choice.required, skipped_features=choice.skipped, skipped_subgroups=skipped_subgroups,
            optimism=optimism, epv=epv, n_columns=len(columns), question_note=note,
        )
        markdown = card_markdown(card)
        mlflow.log_dict(card, "model_card/model_card.json")
        mlflow.log_text(markdown, "model_card/model_card.md")
        mlflow.log_dict(contract_summary(), "feature_contract.json")

        progress("logging the model")
        # The reference the service compares live inputs and scores with: bins of the whole cohort's
        # inputs, and the held-out (or cross-validated) risks; counts only, no patient's values.
        reference = build_profile(encode_array(cohort.frame, features), features, p_eval, source={
            "dataset_name": cohort.name, "data_kind": cohort.kind, "inputs": f"whole cohort ({cohort.n} patients)",
            "scores": f"evaluation predictions ({design})"})
        mlflow.log_dict(reference, "monitoring/reference_profile.json")
        example = encode(pd.DataFrame([c.example_record(features)]), features)
        metadata = {
            "calibration": model.calibration, "features": features, "columns": columns,
            "required": choice.required, "study_design": cohort.design.stated() if cohort.design else None,
            "question_note": note, "reference_profile": reference,
            "feature_contract_version": c.CONTRACT_VERSION, "data_kind": cohort.kind,
            "dataset_name": cohort.name, "registered_model": name, "research_notice": RESEARCH_NOTICE,
            "metrics": {**{k: metrics[k] for k in ("auroc", "auroc_ci_low", "auroc_ci_high", "brier",
                                                    "calibration_slope", "calibration_intercept")},
                        **{k: v for k, v in (optimism or {}).items() if k.startswith("optimism_corrected")}},
        }
        info = mlflow.xgboost.log_model(
            model.classifier, name="model", signature=infer_signature(example, model.predict(example)),
            input_example=example, metadata=metadata, model_format="json",
            # Stated, not inferred: inference loads the model in a subprocess (~10 s here).
            conda_env=conda_env(),
        )

        progress("promotion gate and registration")
        version_tags = {**tags, "run_id": run.info.run_id, "auroc": f"{metrics['auroc']:.4f}",
                        "brier": f"{metrics['brier']:.4f}", "calibration": model.calibration["method"]}
        # under the registration lock: two runs finishing together cannot both become champion
        decision, version = registry.gate_and_register(
            client, name, metrics, eval_frame, p_eval, eval_keys, set(train_keys), settings, info.model_uri,
            info.model_id, run.info.run_id, version_tags, markdown)
        mlflow.set_tags({"registered_version": version, "alias": decision.alias})
    seconds = time.perf_counter() - t_start
    return TrainingResult(run.info.run_id, info.model_uri, name, version, decision.alias, decision.reason, features,
                          choice.required, choice.skipped, note, {**metrics, **(optimism or {})}, baselines, oracle,
                          card, seconds, notes)


def _metric_name(name: str) -> str:
    """MLflow metric names allow letters, digits and _-. /: a recorded score's label has spaces."""
    return "".join(ch if ch.isalnum() or ch in "_-./" else "_" for ch in name).strip("_")

