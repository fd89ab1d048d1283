"""`pverisk score`, `import-model`, `serve`: the model in the local BentoML store, offline and served."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pverisk.app import app, console, err, print_problems


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
            err.print(f"[red]{exc}[/red]{registry_hint() if isinstance(exc, ModelNotFound) else ''}")
            raise typer.Exit(1) from None
    problems = [Problem(None, p["field"], None, p["problem"]) for p in result.column_problems]
    problems += [Problem(i, p["field"], None, p["problem"]) for i, ps in sorted(result.invalid.items()) for p in ps]
    if problems:  # rows as the output's `row` column numbers them (0-based position in the file)
        print_problems(problems, f"{len(problems)} problem(s) in {len(result.invalid) or result.rows_in} of "
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


def registry_hint() -> str:
    """What the MLflow registry holds, for a message about a model that is not in the BentoML store."""
    from mlflow.tracking import MlflowClient

    from feature_store.settings import TrackingSettings
    from serving.import_model import registered_versions

    tracking = TrackingSettings()
    existing = registered_versions(MlflowClient(tracking.tracking_uri), tracking.registered_model)
    if not existing:
        return ""
    return (f" Registered in MLflow: {', '.join(existing)}; import one with `uv run pverisk import-model --version N` "
            "(or --alias NAME).")


@app.command("import-model")
def import_model_cmd(
    alias: Optional[str] = typer.Option(None, help="Registry alias to resolve to a concrete version (default: "
                                        "champion)."),
    version: Optional[str] = typer.Option(None, "--version", help="A registered version by number (instead of an "
                                          "alias)."),
) -> None:
    """Import a registered model (by alias, default champion, or by --version) into the local BentoML store."""
    from serving.import_model import ModelNotFound, import_model

    if alias and version:
        err.print("[red]give --alias or --version, not both[/red]")
        raise typer.Exit(2)
    try:
        model = import_model(alias or ("champion" if version is None else None), version=version)
    except ModelNotFound as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    labels = model.info.labels
    console.print(f"imported {model.tag} (MLflow {labels['registered_model']} v{labels['version']}, "
                  f"alias {labels['alias']}, data {labels['data_kind']}) into {os.environ['BENTOML_HOME']}")
    # the service loads its model once, at start (no model swapped under running requests)
    console.print("a running service keeps the model it started with: restart it (`pverisk serve`) to serve this one")


def serve_command(host: str, port: int) -> list[str]:
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
    from serving.import_model import ModelNotFound, newest_champion_tag
    from serving.model_check import ModelCorrupt, check_stored_model

    if model_tag:
        os.environ["PVERISK_SERVE_MODEL_TAG"] = model_tag
    try:  # here, not in the service: a missing model is a message and exit 1, never a traceback
        check_stored_model(model_tag or os.environ.get("PVERISK_SERVE_MODEL_TAG") or newest_champion_tag())
    except (ModelNotFound, ModelCorrupt) as exc:
        err.print(f"[red]{exc}[/red]{registry_hint()}")
        raise typer.Exit(1) from None
    cmd = serve_command(host, port)
    console.print(f"serving on http://{host}:{port} (docs at /docs) - research use only")
    os.chdir(project_root())
    os.execv(cmd[0], cmd)
