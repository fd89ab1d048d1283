"""`pverisk train`, `promote`, `models`: training runs and the model registry."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from pverisk.app import app, console, err, print_problems, progress_bar, tracking_uri


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
    result = run_train(data, eval_data, trials, time_budget, seed, features, data_kind, tracking_uri)
    print_training(result)


def run_train(data, eval_data, trials, time_budget, seed, features, data_kind, tracking_uri):  # type: ignore[no-untyped-def]
    from feature_store.contract import LeakageError
    from feature_store.settings import DataSettings
    from feature_store.simulate import simulate_cohort, write_cohort
    from feature_store.validate import CohortValidationError
    from training.pipeline import run_training
    from training.prepare import SmallSampleWarning
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
    with progress_bar() as progress:
        task = progress.add_task("training", total=None)
        try:
            with warnings.catch_warnings():
                # printed once, as the run's own warnings, after the results (not also as a raw Python warning)
                warnings.simplefilter("ignore", SmallSampleWarning)
                return run_training(data, settings=settings, tracking=tracking, eval_data=eval_data, features=names,
                                    data_kind=data_kind, progress=lambda m: progress.update(task, description=m))
        except CohortValidationError as exc:
            print_problems(exc.problems, f"{len(exc.problems)} problem(s): nothing was written to MLflow",
                            "fix the file, or import it with --drop-invalid")
            raise typer.Exit(1) from None
        except (LeakageError, ValueError) as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None


def print_training(result) -> None:  # type: ignore[no-untyped-def]
    m = result.metrics
    table = Table(title=f"{result.registered_model} v{result.version} -> {result.alias}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("AUROC (95% CI)", f"{m['auroc']:.3f} ({m['auroc_ci_low']:.3f}-{m['auroc_ci_high']:.3f})")
    table.add_row("average precision", f"{m['average_precision']:.3f}")
    table.add_row("Brier", f"{m['brier']:.4f}")
    slope_note = result.card.get("evaluation", {}).get("calibration_slope_note")
    table.add_row("calibration slope / intercept", f"{m['calibration_slope']:.2f} / {m['calibration_intercept']:.2f}"
                  if slope_note is None else f"{slope_note} / {m['calibration_intercept']:.2f}")
    for name, b in result.baselines.items():
        if b.get("auroc") is not None:
            table.add_row(f"baseline {name} AUROC", f"{b['auroc']:.3f}")
    if result.oracle:
        table.add_row("oracle AUROC (true probability)", f"{result.oracle['auroc']:.3f}")
    table.add_row("wall time", f"{result.seconds:.1f} s")
    console.print(table)
    console.print(f"evaluation: {result.card.get('evaluation', {}).get('design', '')}")
    print_optimism(result.optimism)
    print_centres(result.card.get("internal_external_validation"), "internal-external validation (one centre left out "
                  "at a time)")
    bands = result.card.get("risk_bands")
    if bands:
        console.print(f"risk bands: low below {bands['low_below']:.2f}, high from {bands['high_from']:.2f} (training "
                      f"outcome rate {bands['base_rate']:.1%}; {bands['rule']})")
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
    console.print(f"look: uv run mlflow ui --backend-store-uri {tracking_uri()}  (run {result.run_id})")


def print_optimism(opt) -> None:  # type: ignore[no-untyped-def]
    """Harrell's correction in a table of its own: training-cohort figures, not the evaluation."""
    if not opt:
        return
    table = Table(title="internal validation on the training cohort only (Harrell bootstrap)")
    for col in ("metric", "apparent", "optimism-corrected"):
        table.add_column(col)
    table.add_row("AUROC", f"{opt['apparent_auroc']:.3f}", f"{opt['optimism_corrected_auroc']:.3f}")
    def slope(x: float) -> str:
        return "undefined (see the warning below)" if x != x else f"{x:.2f}"

    table.add_row("calibration slope", slope(opt["apparent_calibration_slope"]),
                  slope(opt["optimism_corrected_calibration_slope"]))
    console.print(table)


def print_centres(block, title: str) -> None:  # type: ignore[no-untyped-def]
    """Per-centre figures, the pooled estimates with prediction intervals and the centres too small."""
    if not block:
        return
    table = Table(title=title)
    for col in ("centre", "n", "events", "AUROC (95% CI)", "cal. intercept (95% CI)", "cal. slope (95% CI)"):
        table.add_column(col)

    def ci(r, k, lo, hi, nd=3):  # type: ignore[no-untyped-def]
        return "-" if r.get(k) is None else f"{r[k]:.{nd}f} ({r[lo]:.{nd}f} to {r[hi]:.{nd}f})"

    for r in block["centres"]:
        table.add_row(str(r["centre"]), str(r["n"]), str(r["events"]), ci(r, "auroc", "auroc_ci_low", "auroc_ci_high"),
                      ci(r, "calibration_intercept", "intercept_ci_low", "intercept_ci_high", 2),
                      ci(r, "calibration_slope", "slope_ci_low", "slope_ci_high", 2))
    columns = {"AUROC": 0, "calibration intercept": 1, "calibration slope": 2}
    for name, p in block["pooled"].items():
        if p and p.get("k"):
            # each pooled figure under its own metric's column: estimate (CI), prediction interval, heterogeneity
            cells = ["", "", ""]
            pi = f"PI {p['pi_low']:.3f} to {p['pi_high']:.3f}" if p.get("pi_low") is not None else "PI -"
            cells[columns.get(name, 0)] = (f"{p['estimate']:.3f} ({p['ci_low']:.3f} to {p['ci_high']:.3f}); {pi}; "
                                           f"I2 {p['i2']:.2f}, tau2 {p['tau2']:.4f}")
            table.add_row(f"pooled {name}", "", f"{p['k']} centres", *cells)
    console.print(table)
    for s in block.get("too_small", []):
        console.print(f"[yellow]centre {s['centre']}: no figure ({s['reason']})[/yellow]")
    if block.get("forest_plot"):
        console.print(f"forest plot: {block['forest_plot']}")


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
    serving = serving_version(service_url) if service_url else None
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


def serving_version(url: str) -> str | None:
    """The registered version a running service serves (GET /v1/model), None if it does not answer."""
    import httpx

    key = os.environ.get("PVERISK_SERVE_API_KEY")
    try:
        r = httpx.get(f"{url.rstrip('/')}/v1/model", headers={"X-API-Key": key} if key else {}, timeout=10)
        return str(r.json()["model"]["version"]) if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError):
        return None
