"""`pverisk validate`: a registered model carried to a new centre, and updated for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from pverisk.app import app, console, err, print_problems, progress_bar


@app.command()
def validate(
    data: Path = typer.Option(..., exists=True, dir_okay=False, help="The new centre's cohort (Parquet/CSV, with outcomes)."),
    model_version: Optional[str] = typer.Option(None, "--model-version", help="Registered version to validate."),
    alias: Optional[str] = typer.Option(None, "--alias", help="Or the alias of one (default: champion)."),
    centre: Optional[str] = typer.Option(None, "--centre", help="The centre's name (default: the site its study design "
                                         "states, else the file's name)."),
    register: bool = typer.Option(True, "--register/--no-register", help="Register the updated model as a new version "
                                  "tagged with the centre (gated; alias centre-<name> when eligible)."),
) -> None:
    """Validate a registered model at a new centre (discrimination, calibration, decision curve, with intervals),
    choose its update by closed testing (original, recalibration in the large, logistic recalibration, refit)
    and register the updated model for that centre."""
    from feature_store.validate import CohortValidationError
    from training.validation import validate_centre

    if model_version and alias:
        err.print("[red]give --model-version or --alias, not both[/red]")
        raise typer.Exit(2)
    with progress_bar() as progress:
        task = progress.add_task("validating", total=None)
        try:
            result = validate_centre(data, version=model_version, alias=alias, centre=centre, register=register,
                                     progress=lambda m: progress.update(task, description=m))
        except CohortValidationError as exc:
            print_problems(exc.problems, f"{len(exc.problems)} problem(s): nothing was written to MLflow", "fix the file")
            raise typer.Exit(1) from None
        except (LookupError, ValueError) as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    print_validation(result)


def _ci(d: dict[str, Any], k: str, lo: str, hi: str, nd: int = 3) -> str:
    if d.get(k) is None or d[k] != d[k]:
        return d.get("slope_note") if k == "slope" and d.get("slope_note") else "-"
    return f"{d[k]:.{nd}f} ({d[lo]:.{nd}f} to {d[hi]:.{nd}f})" if d.get(lo) is not None else f"{d[k]:.{nd}f}"


def print_validation(result: Any) -> None:
    b, a = result.before, result.after
    console.print(f"[bold]{result.centre}[/bold]: {result.n} patients, {result.events} events; model version "
                  f"{result.parent_version}")
    design = result.study_design or {}
    console.print("study design: " + ("; ".join(f"{k}: {v}" for k, v in design.items() if k in (
        "site", "population", "outcome", "progression_definition", "horizon_months", "prediction_time", "date_range"))
        or "not stated by the cohort"))
    for w in result.warnings:
        console.print(f"[bold yellow]warning: {w}[/bold yellow]")
    if "too_small" in b.get("row", {}):
        console.print(f"[yellow]no AUROC or calibration figure: {b['row']['too_small']}[/yellow]")
    table = Table(title=f"version {result.parent_version} at {result.centre}")
    for col in ("", "AUROC (95% CI)", "calibration-in-the-large (95% CI)", "calibration slope (95% CI)", "Brier"):
        table.add_column(col)
    table.add_row("as trained", _ci(b, "auroc", "auroc_ci_low", "auroc_ci_high"), _ci(b, "citl", "citl_ci_low",
                  "citl_ci_high", 2), _ci(b, "slope", "slope_ci_low", "slope_ci_high", 2), f"{b['brier']:.4f}")
    if a:
        table.add_row(f"updated: {result.closed.chosen} (cross-validated)", _ci(a, "auroc", "auroc_ci_low",
                      "auroc_ci_high"), f"{a['citl']:.2f}", _ci(a, "slope", "", "", 2), f"{a['brier']:.4f}")
    console.print(table)
    tests = Table(title="closed testing (Vergouwe et al. 2017)")
    for col in ("simpler method", "against", "LR", "df", "p"):
        tests.add_column(col)
    for t in result.closed.tests:
        tests.add_row(t["simpler"], t["against"], f"{t['lr']:.2f}", str(t["df"]), f"{t['p']:.3f}")
    console.print(tests)
    console.print(f"updating method: [bold]{result.closed.chosen}[/bold]: {result.closed.reason}")
    if result.version:
        console.print(f"registered version {result.version} -> {result.alias}: {result.gate_reason}")
