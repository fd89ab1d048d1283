"""`pverisk`: thin typer commands, each over one plain function that tests call directly."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

# Offline by rule: no telemetry from anything this program runs.
for _var in ("BENTOML_DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
    os.environ.setdefault(_var, "true")
# MLflow draws a progress bar for every artifact download (model import, the gate's lookups):
# on local files they finish at once and only bury the output.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# The model's environment is stated in full at training (training/pipeline.py: conda_env), so
# MLflow's uv-project detection has nothing to infer and would only announce itself.
os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")

from feature_store.settings import default_bentoml_home  # noqa: E402

# The local BentoML store lives in the project (git-ignored), never in the user's home.
os.environ.setdefault("BENTOML_HOME", str(default_bentoml_home()))

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

app = typer.Typer(
    help="PVE progression risk (research use only): simulate, import, train, promote and serve.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)

from pverisk.features_cli import app as features_app  # noqa: E402

app.add_typer(features_app, name="features")


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                    transient=False)


def _print_problems(problems: list, title: str, more_hint: str, limit: int = 200) -> None:  # type: ignore[type-arg]
    """Every problem as a rich table (row, column, value, rule) on stderr."""
    table = Table(title=title)
    for col in ("row", "column", "value", "rule"):
        table.add_column(col)
    for p in problems[:limit]:
        table.add_row("-" if p.row is None else str(p.row), p.column, p.value or "", p.rule)
    err.print(table)
    if len(problems) > limit:
        err.print(f"... and {len(problems) - limit} more ({more_hint})")


@app.command()
def simulate(
    patients: int = typer.Option(2000, "--patients", "-n", min=1, help="Number of simulated patients."),
    seed: int = typer.Option(0, help="Random seed (same seed, same cohort)."),
    out: Optional[Path] = typer.Option(None, help="Parquet file to write (default: data/simulated/cohort.parquet)."),
    csv: bool = typer.Option(False, "--csv", help="Also write a CSV next to the Parquet file."),
) -> None:
    """Simulate a literature-grounded PVE cohort (SIMULATED data, labelled so)."""
    from feature_store.settings import DataSettings
    from feature_store.simulate import dataset_name, simulate_cohort, summarise, write_cohort

    target = out or DataSettings().default_cohort
    with _progress() as progress:
        progress.add_task(f"simulating {patients:,} patients", total=None)
        t0 = time.perf_counter()
        df = simulate_cohort(patients, seed)
        written = write_cohort(df, target, csv=csv)
        elapsed = time.perf_counter() - t0
    table = Table(title=f"{dataset_name(patients, seed)} (SIMULATED)")
    table.add_column("summary")
    table.add_column("value", justify="right")
    for k, v in summarise(df).items():
        table.add_row(k, f"{v:,.0f}" if k == "patients" else f"{v:.3f}")
    console.print(table)
    console.print(f"wrote {', '.join(map(str, written))} in {elapsed:.2f} s")


@app.command("import-cohort")
def import_cohort_cmd(
    source: Path = typer.Option(..., exists=True, dir_okay=False, help="CSV, TSV, Parquet or Excel export."),
    mapping: Path = typer.Option(..., exists=True, dir_okay=False, help="Mapping YAML (see feature_store/mapping_example.yaml)."),
    out: Path = typer.Option(..., help="Validated Parquet to write (nothing is written if any row is invalid)."),
    report: Optional[Path] = typer.Option(None, help="Write a machine-readable JSON report of every problem."),
    drop_invalid: bool = typer.Option(False, "--drop-invalid", help="Write the valid rows, report the dropped ones."),
    max_drop: float = typer.Option(0.10, "--max-drop", min=0.0, max=1.0,
                                   help="With --drop-invalid: refuse to drop more than this share of rows."),
) -> None:
    """Import a real cohort: map columns and units onto the contract and validate every row."""
    from feature_store import contract as c
    from feature_store.import_cohort import import_cohort
    from feature_store.mapping import MappingError

    try:
        result = import_cohort(source, mapping, out, drop_invalid=drop_invalid, max_drop=max_drop, report=report)
    except MappingError as exc:
        err.print(f"[red]mapping file {mapping} is wrong:[/red]")
        for problem in exc.problems:
            err.print(f"  - {problem}")
        err.print("nothing written")
        raise typer.Exit(2) from None
    if result.problems:
        _print_problems(result.problems, f"{len(result.problems)} problem(s) in {source.name}", "see --report")
    if result.dropped_split:
        table = Table(title="dropped rows by group (beside each group's share of the file)")
        for col in ("column", "level", "dropped", "share of dropped", "share of all"):
            table.add_column(col)
        for r in result.dropped_split:
            table.add_row(r["column"], r["level"], str(r["dropped"]), f"{r['share_of_dropped']:.0%}",
                          f"{r['share_of_all']:.0%}")
        err.print(table)
    for w in result.warnings:
        err.print(f"[yellow]warning: {w}[/yellow]")
    summary = Table(title=f"import summary: {source.name}")
    summary.add_column("what")
    summary.add_column("value")
    summary.add_row("features recorded", ", ".join(result.features) or "-")
    summary.add_row("not collected (mapping)", ", ".join(result.not_collected) or "-")
    summary.add_row("not mapped (treated as not collected)", ", ".join(result.unmapped) or "-")
    summary.add_row("recorded scores", ", ".join(result.recorded_scores) or "-")
    summary.add_row("study design", ", ".join(
        f"{k}: {' to '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in result.study_design.items())
                    or "not stated (add a `study` block to the mapping)")
    console.print(summary)
    if result.ok:
        console.print(f"wrote {result.written}: {len(result.cohort)} of {result.rows_in} rows"
                      + (f", dropped {len(result.dropped_rows)} of {result.rows_in} rows {result.dropped_rows}"
                         if result.dropped_rows else ""))
        if c.OUTCOME not in result.cohort:
            console.print("[yellow]no outcome mapped: patients to score (pverisk score --data "
                          f"{result.written}), not a cohort to train on[/yellow]")
        return
    err.print(f"[red]nothing written to {out}: {result.reason}[/red]")
    raise typer.Exit(1)


@app.command("data-dictionary")
def data_dictionary(
    out: Optional[Path] = typer.Option(None, help="Write here instead of printing."),
) -> None:
    """Print (or write) the Markdown data dictionary generated from the feature contract."""
    from feature_store.dictionary import data_dictionary_markdown

    text = data_dictionary_markdown()
    if out:
        out.write_text(text)
        console.print(f"wrote {out}")
    else:
        print(text)


@app.command()
def contract() -> None:
    """Print the feature contract as JSON."""
    from feature_store.dictionary import contract_summary

    print(json.dumps(contract_summary(), indent=2))


@app.command()
def train(
    data: Optional[Path] = typer.Option(None, help="Validated cohort (Parquet/CSV). Default: simulate one."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Separate evaluation cohort."),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="Hyperparameter configurations to try."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", min=1, help="Tuning time budget (s)."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    features: Optional[str] = typer.Option(None, help="Comma-separated contract features (default: every feature "
                                           "the cohort recorded, less those mostly missing or constant)."),
    data_kind: Optional[str] = typer.Option(None, "--data-kind", help="simulated or real (default: detected)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
    entities: Optional[Path] = typer.Option(None, "--entities", exists=True, dir_okay=False,
                                            help="Entity table (patient_id, pve_decision_date, progression): the "
                                            "features come from the feature store as of each PVE decision."),
) -> None:
    """Train, evaluate, log to MLflow and register a version: champion only if it clears the bar (AUROC lower
    95% bound above 0.5, calibration slope in range) and beats the champion on patients neither saw."""
    if entities is not None:
        from pverisk.features_cli import point_in_time_cohort

        data = point_in_time_cohort(entities)
    result = _train(data, eval_data, trials, time_budget, seed, features, data_kind, tracking_uri)
    _print_training(result)


def _train(data, eval_data, trials, time_budget, seed, features, data_kind, tracking_uri):  # type: ignore[no-untyped-def]
    from feature_store.contract import LeakageError
    from feature_store.settings import DataSettings
    from feature_store.simulate import simulate_cohort, write_cohort
    from feature_store.validate import CohortValidationError
    from training.pipeline import run_training
    from training.settings import TrackingSettings, TrainSettings

    overrides = {k: v for k, v in {"trials": trials, "time_budget_s": time_budget, "seed": seed}.items()
                 if v is not None}
    settings = TrainSettings(**overrides)
    tracking = TrackingSettings(**({"tracking_uri": tracking_uri} if tracking_uri else {}))
    if data is None:
        data = DataSettings().default_cohort
        if not data.exists():
            write_cohort(simulate_cohort(2000, settings.seed), data)
    names = [f.strip() for f in features.split(",")] if features else None
    with _progress() as progress:
        task = progress.add_task("training", total=None)
        try:
            return run_training(data, settings=settings, tracking=tracking, eval_data=eval_data, features=names,
                                data_kind=data_kind, progress=lambda m: progress.update(task, description=m))
        except CohortValidationError as exc:
            _print_problems(exc.problems, f"{len(exc.problems)} problem(s): nothing was written to MLflow",
                            "fix the file, or import it with --drop-invalid")
            raise typer.Exit(1) from None
        except (LeakageError, ValueError) as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None


def _print_training(result) -> None:  # type: ignore[no-untyped-def]
    m = result.metrics
    table = Table(title=f"{result.registered_model} v{result.version} -> {result.alias}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("AUROC (95% CI)", f"{m['auroc']:.3f} ({m['auroc_ci_low']:.3f}-{m['auroc_ci_high']:.3f})")
    table.add_row("average precision", f"{m['average_precision']:.3f}")
    table.add_row("Brier", f"{m['brier']:.4f}")
    table.add_row("calibration slope / intercept", f"{m['calibration_slope']:.2f} / {m['calibration_intercept']:.2f}")
    if "optimism_corrected_auroc" in m:
        table.add_row("optimism-corrected AUROC (Harrell bootstrap)", f"{m['optimism_corrected_auroc']:.3f}")
        table.add_row("optimism-corrected calibration slope", f"{m['optimism_corrected_calibration_slope']:.2f}")
    for name, b in result.baselines.items():
        if b.get("auroc") is not None:
            table.add_row(f"baseline {name} AUROC", f"{b['auroc']:.3f}")
    if result.oracle:
        table.add_row("oracle AUROC (true probability)", f"{result.oracle['auroc']:.3f}")
    table.add_row("wall time", f"{result.seconds:.1f} s")
    console.print(table)
    console.print(f"inputs ({len(result.features)}): {', '.join(result.features)}; required in requests: "
                  f"{', '.join(result.required) or 'none'}")
    for skipped in result.skipped:
        console.print(f"not used: {skipped['feature']} ({skipped['reason']})")
    if result.question_note:
        console.print(f"[bold yellow]{result.question_note}[/bold yellow]")
    console.print(f"gate: {result.alias}: {result.gate_reason}")
    for w in result.warnings:
        if w != result.question_note:
            console.print(f"[yellow]warning: {w}[/yellow]")
    console.print(f"look: uv run mlflow ui --backend-store-uri {_tracking_uri()}  (run {result.run_id})")


@app.command()
def promote(
    version: str = typer.Argument(..., help="Registered model version."),
    alias: str = typer.Option("champion", help="Alias to move (champion, challenger, ...)."),
    reason: str = typer.Option(..., help="Why (recorded as a version tag)."),
    by: Optional[str] = typer.Option(None, help="Who decides (default: the current user)."),
) -> None:
    """A human promotion decision, recorded with who/why/when tags."""
    from mlflow.exceptions import MlflowException

    from training.tracking import configure_tracking
    from training.registry import promote as do_promote
    from training.settings import TrackingSettings

    tracking = TrackingSettings()
    client = configure_tracking(tracking)
    try:
        tags = client.get_model_version(tracking.registered_model, version).tags
        if alias == "champion" and tags.get("gate_decision") == "candidate":
            err.print(f"[yellow]warning: v{version} did not clear the gate ({tags.get('gate_reason', '')}); "
                      "it becomes champion on your decision, recorded with your reason[/yellow]")
        record = do_promote(client, tracking.registered_model, version, alias, reason, by)
    except MlflowException as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from None
    console.print(f"{tracking.registered_model} v{version} is now '{alias}' ({record})")


@app.command()
def models(
    service_url: Optional[str] = typer.Option(None, "--service-url", help="A running service: mark the version "
                                              "it serves (GET /v1/model)."),
) -> None:
    """List registered versions with their aliases, metrics and gate decisions (and which one a service serves)."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
    from mlflow.tracking import MlflowClient

    from training.registry import describe
    from training.settings import TrackingSettings

    tracking = TrackingSettings()
    name, uri = tracking.registered_model, tracking.tracking_uri
    try:
        rows = describe(MlflowClient(uri), name)
    except MlflowException as exc:
        if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            console.print(f"no registered model {name!r} yet in {uri}: train one with `pverisk train`")
            return
        err.print(f"[red]cannot read the model registry at {uri}:[/red] {exc.message}")
        raise typer.Exit(1) from None
    except Exception as exc:  # unreachable server, unreadable database, ...: never an empty table
        first = (str(exc).splitlines() or [""])[0]  # the first line says what; the rest is SQL or a stack
        err.print(f"[red]cannot read the model registry at {uri}:[/red] {type(exc).__name__}: {first}")
        raise typer.Exit(1) from None
    serving = _serving_version(service_url) if service_url else None
    table = Table(title=name)
    for col in ("version", "aliases", "data", "AUROC", "Brier", "gate", *(["serving"] if service_url else [])):
        table.add_column(col)
    for r in rows:
        # rich renders only strings: MLflow gives versions as int (SQLite) or str (REST)
        gate = f"{r.get('gate_decision') or '-'}: {r['gate_reason'] or ''}"  # rich wraps; a cut reason hides why
        mark = ["yes" if serving is not None and str(r["version"]) == serving else ""] if service_url else []
        table.add_row(str(r["version"]), ",".join(map(str, r["aliases"])), str(r["data_kind"] or ""),
                      str(r["auroc"] or ""), str(r.get("brier") or ""), gate, *mark)
    console.print(table)
    if service_url:
        console.print(f"{service_url} serves v{serving}" if serving else f"[yellow]{service_url}: not answering "
                      "GET /v1/model[/yellow]")


def _serving_version(url: str) -> str | None:
    """The registered version a running service serves (GET /v1/model), None if it does not answer."""
    import httpx

    key = os.environ.get("PVERISK_SERVE_API_KEY")
    try:
        r = httpx.get(f"{url.rstrip('/')}/v1/model", headers={"X-API-Key": key} if key else {}, timeout=10)
        return str(r.json()["model"]["version"]) if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError):
        return None


@app.command()
def outcomes(
    data: Path = typer.Option(..., exists=True, dir_okay=False, help="CSV or Parquet with columns prediction_id "
                              "and outcome (true/false, 1/0)."),
    service_url: str = typer.Option("http://127.0.0.1:3000", "--service-url", help="The service that answered."),
) -> None:
    """Record observed outcomes by prediction id (no patient identifier); prints the live performance."""
    from monitoring.outcomes_upload import post_outcomes

    try:
        result = post_outcomes(data, service_url, os.environ.get("PVERISK_SERVE_API_KEY"))
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"recorded {result['recorded']} outcome(s); unknown prediction ids: "
                  f"{len(result['unknown_prediction_ids'])}")
    table = Table(title="live performance (most recent predictions with an outcome)")
    for col in ("version", "alias", "n", "events", "AUROC", "calibration-in-the-large", "Brier"):
        table.add_column(col)
    for version, p in result["performance"].items():
        table.add_row(version, p["alias"], f"{p['n']:.0f}", f"{p['events']:.0f}",
                      *(("-" if p[k] is None else f"{p[k]:.3f}") for k in ("auroc", "calibration_in_the_large", "brier")))
    console.print(table)


@app.command("drift-report")
def drift_report(
    out: Path = typer.Option(Path("build/drift/drift-report.html"), help="HTML file to write (Evidently's beside it)."),
    service_url: Optional[str] = typer.Option(None, "--service-url", help="Report a running service's rolling window."),
    data: Optional[Path] = typer.Option(None, "--data", exists=True, dir_okay=False,
                                        help="Or: a file of patients (Parquet/CSV) as the window."),
    model_tag: Optional[str] = typer.Option(None, "--model-tag", help="With --data: the imported model whose "
                                            "reference to compare with (default: newest champion)."),
    evidently: bool = typer.Option(True, help="Also write Evidently's report on the same bins."),
) -> None:
    """HTML report of a window of patients against the model's training reference: per input PSI, missing
    shares, drift flags and plots (aggregates only)."""
    from monitoring.drift_report import summary_from_file, summary_from_service, write_report

    if (service_url is None) == (data is None):
        err.print("[red]give either --service-url or --data[/red]")
        raise typer.Exit(2)
    try:
        summary = (summary_from_service(service_url, os.environ.get("PVERISK_SERVE_API_KEY")) if service_url
                   else summary_from_file(data, _stored_risk(model_tag)))  # type: ignore[arg-type]
    except Exception as exc:  # unreachable service, a model without a reference: say which, no traceback
        err.print(f"[red]cannot build the report: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}[/red]")
        raise typer.Exit(1) from None
    result = write_report(summary, out, with_evidently=evidently)
    flagged = ", ".join(f"{k} (PSI {v:.2f})" for k, v in result["flagged"].items()) or "none"
    console.print(f"{summary['patients']:.0f} patients; drifted inputs: {flagged}")
    console.print(f"wrote {result['report']}" + (f" and {result['evidently_report']} (Evidently "
                                                f"{result['evidently_version']})" if result["evidently_report"] else ""))


@app.command()
def score(
    data: Path = typer.Option(..., exists=True, dir_okay=False, help="Cohort Parquet (contract columns; patient_id kept)."),
    out: Path = typer.Option(..., help="Parquet to write: one row per patient, the notice and model in its metadata."),
    model_tag: Optional[str] = typer.Option(None, help="BentoML model tag (default: as `pverisk serve` picks it)."),
    explain: bool = typer.Option(True, "--explain/--no-explain", help="Clinical scores, contributions, top factors."),
    partial: bool = typer.Option(False, "--partial", help="Score the valid rows; write the invalid ones with their "
                                 "problems and no probability (default: nothing written if any row is invalid)."),
) -> None:
    """Score a cohort file offline with the service's own validation and scoring code (research use only)."""
    from rich.progress import BarColumn, MofNCompleteColumn, TaskProgressColumn

    from serving.lean_import import xgboost_without_sklearn

    xgboost_without_sklearn()  # 2-3 s less start-up; this process only scores (never trains)
    from serving.import_model import ModelNotFound
    from serving.score_file import UnreadableFile, score_file
    from feature_store.validate import Problem

    progress = Progress(SpinnerColumn(), TextColumn("scoring"), BarColumn(), MofNCompleteColumn(),
                        TaskProgressColumn(), TimeElapsedColumn(), console=err)
    with progress:
        task = progress.add_task("scoring", total=None)
        try:
            result = score_file(data, out, model_tag, explain=explain, partial=partial,
                                progress=lambda done, total: progress.update(task, completed=done, total=total))
        except (ModelNotFound, UnreadableFile) as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
    problems = [Problem(None, p["field"], None, p["problem"]) for p in result.column_problems]
    problems += [Problem(i, p["field"], None, p["problem"]) for i, ps in sorted(result.invalid.items()) for p in ps]
    if problems:  # rows as the output's `row` column numbers them (0-based position in the file)
        _print_problems(problems, f"{len(problems)} problem(s) in {len(result.invalid) or result.rows_in} of "
                        f"{result.rows_in} rows of {data.name} (row: 0-based position in the file, as in the "
                        "output's `row` column)", "fix the file")
    for col in result.post_decision_columns:
        err.print(f"[yellow]warning: column {col!r} is recorded after the PVE decision; not used (a prediction "
                  "at the decision cannot know it)[/yellow]")
    for col in result.ignored_columns:
        err.print(f"[yellow]warning: column {col!r} is not in the feature contract; ignored[/yellow]")
    if result.unused_inputs:
        err.print(f"[yellow]note: given but not used by this model: {', '.join(result.unused_inputs)}[/yellow]")
    if result.written is None:
        err.print(f"[red]nothing written to {out}: invalid rows (fix them, or --partial to score the valid ones)[/red]")
        raise typer.Exit(1)
    model = result.model
    console.print(f"scored {result.scored:,} of {result.rows_in:,} patients in {result.seconds:.2f} s "
                  f"({result.rate:,.0f} patients/s; {result.total_seconds:.2f} s with reading the model and the "
                  f"file) with {model['name']} v{model['version']} ({model['data_kind']} "
                  f"data); wrote {result.written}")
    if model.get("data_kind") == "simulated":
        console.print("[yellow]this model was trained on SIMULATED data: research use only[/yellow]")


@app.command("import-model")
def import_model_cmd(
    alias: str = typer.Option("champion", help="Registry alias to resolve to a concrete version."),
) -> None:
    """Import the model behind an MLflow alias into the local BentoML store (idempotent)."""
    from serving.import_model import ModelNotFound, import_model

    try:
        model = import_model(alias)
    except ModelNotFound as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    labels = model.info.labels
    console.print(f"imported {model.tag} (MLflow {labels['registered_model']} v{labels['version']}, "
                  f"alias {labels['alias']}, data {labels['data_kind']}) into {os.environ['BENTOML_HOME']}")


def _serve_command(host: str, port: int) -> list[str]:
    import sys

    return [sys.executable, "-m", "bentoml", "serve", "serving.service:PVERisk", "--host", host, "--port", str(port)]


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(3000, help="Port."),
    model_tag: Optional[str] = typer.Option(None, help="Pinned BentoML model tag (default: newest champion)."),
) -> None:
    """Serve the model over HTTP (BentoML): /v1/predict, /v1/predict/batch, /v1/model, /docs."""
    from feature_store.settings import project_root

    if model_tag:
        os.environ["PVERISK_SERVE_MODEL_TAG"] = model_tag
    cmd = _serve_command(host, port)
    console.print(f"serving on http://{host}:{port} (docs at /docs) - research use only")
    os.chdir(project_root())
    os.execv(cmd[0], cmd)


@app.command()
def demo(
    patients: int = typer.Option(2000, help="Simulated cohort size."),
    seed: int = typer.Option(0, help="Random seed."),
    port: int = typer.Option(3000, help="Port for the service (127.0.0.1)."),
    keep_serving: bool = typer.Option(True, help="Keep the service running until Ctrl-C."),
) -> None:
    """The main job on embedded defaults: simulate (SIMULATED data), train, register, import, serve, predict."""
    import json as _json
    import subprocess

    import httpx

    from feature_store.contract import example_record
    from feature_store.settings import DataSettings, project_root
    from serving.import_model import import_model

    cohort = DataSettings().default_cohort
    simulate(patients=patients, seed=seed, out=cohort, csv=False)
    result = _train(cohort, None, None, None, seed, None, None, None)
    _print_training(result)
    # Serve the version just trained, whatever the gate made of it: the demo shows the pipeline,
    # and the response names the alias (a candidate is never served by default otherwise).
    model = import_model(result.alias)
    os.environ["PVERISK_SERVE_MODEL_TAG"] = str(model.tag)
    if result.alias != "champion":
        console.print(f"[yellow]v{result.version} is a {result.alias}, not the champion ({result.gate_reason}); "
                      "the demo serves it anyway so you can try the service[/yellow]")
    console.print(f"imported {result.alias} v{result.version} as {model.tag}; starting the service on "
                  f"http://127.0.0.1:{port}")
    from pverisk.features_cli import demo_store

    patient_id = demo_store(cohort)  # the simulated cohort, by patient id, from the online feature store
    os.environ["PVERISK_SERVE_FEATURE_STORE_WARM"] = "true"
    proc = subprocess.Popen(_serve_command("127.0.0.1", port), cwd=project_root())
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        while True:
            if proc.poll() is not None:
                err.print("[red]the service exited; see its output above[/red]")
                raise typer.Exit(1)
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - t0 > 120:
                err.print("[red]the service did not become ready in 120 s[/red]")
                raise typer.Exit(1)
            time.sleep(0.2)
        body = _json.dumps(example_record())
        answer = httpx.post(f"{base}/v1/predict", content=body, headers={"content-type": "application/json"}).json()
        print("\n# ready-to-paste request:")
        print(f"curl -s -X POST {base}/v1/predict -H 'content-type: application/json' -d '{body}'")
        print("\n# its answer:")
        print(_json.dumps(answer, indent=2))
        by_id = _json.dumps({"patient_id": patient_id})
        print("\n# by patient id (a SIMULATED patient's values from the online feature store):")
        print(f"curl -s -X POST {base}/v1/predict -H 'content-type: application/json' -d '{by_id}'")
        found = httpx.post(f"{base}/v1/predict", content=by_id, headers={"content-type": "application/json"},
                           timeout=120)
        if found.status_code == 200:
            store = found.json()["feature_store"]
            print(f"# answer by patient id: probability {found.json()['probability']:.3f}, {len(store['from_store'])} values "
                  f"from the feature store ({store['feature_service']})")
        else:
            print(f"# answer by patient id: HTTP {found.status_code}: {found.json().get('error')}")
        # the calculator first: it is where a new user (a clinician) starts
        console.print(f"\n[bold]Risk calculator: {base}/[/bold]")
        console.print(f"model card: {base}/model   API docs: {base}/docs   model JSON: {base}/v1/model   "
                      f"metrics: {base}/metrics", soft_wrap=True)
        console.print(f"MLflow: uv run mlflow ui --backend-store-uri {_tracking_uri()}")
        if keep_serving:
            console.print("serving until Ctrl-C (research use only)")
            proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)


def _stored_risk(model_tag: str | None):  # type: ignore[no-untyped-def]
    from serving.import_model import newest_champion_tag
    from serving.settings import ServingSettings
    from serving.stored import load_risk

    return load_risk(model_tag or newest_champion_tag(), ServingSettings())


def _tracking_uri() -> str:
    from feature_store.settings import TrackingSettings

    return TrackingSettings().tracking_uri


if __name__ == "__main__":
    app()
