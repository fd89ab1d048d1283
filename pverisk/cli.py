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


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                    transient=False)


@app.command()
def simulate(
    patients: int = typer.Option(2000, "--patients", "-n", min=1, help="Number of simulated patients."),
    seed: int = typer.Option(0, help="Random seed (same seed, same cohort)."),
    out: Optional[Path] = typer.Option(None, help="Parquet file to write (default: data/simulated/cohort.parquet)."),
    csv: bool = typer.Option(False, "--csv", help="Also write a CSV next to the Parquet file."),
) -> None:
    """Simulate a literature-grounded PVE cohort (SIMULATED data, labelled so)."""
    from feature_store.paths import DataSettings
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
) -> None:
    """Import a real cohort: map columns and units onto the contract and validate every row."""
    from pydantic import ValidationError

    from feature_store.import_cohort import import_cohort

    try:
        result = import_cohort(source, mapping, out, drop_invalid=drop_invalid, report=report)
    except (ValidationError, ValueError) as exc:
        err.print(f"[red]mapping file {mapping} is invalid:[/red] {exc}")
        raise typer.Exit(2) from None
    if result.problems:
        table = Table(title=f"{len(result.problems)} problem(s) in {source.name}")
        for col in ("row", "column", "value", "rule"):
            table.add_column(col)
        for p in result.problems[:200]:
            table.add_row("-" if p.row is None else str(p.row), p.column, p.value or "", p.rule)
        err.print(table)
        if len(result.problems) > 200:
            err.print(f"... and {len(result.problems) - 200} more (see --report)")
    if result.ok:
        console.print(f"wrote {result.written}: {len(result.cohort)} of {result.rows_in} rows"
                      + (f", dropped rows {result.dropped_rows}" if result.dropped_rows else ""))
        return
    err.print(f"[red]nothing written to {out}[/red]" + ("" if drop_invalid else " (use --drop-invalid to keep valid rows)"))
    raise typer.Exit(1)


@app.command("data-dictionary")
def data_dictionary(
    out: Optional[Path] = typer.Option(None, help="Write here instead of printing."),
) -> None:
    """Print (or write) the Markdown data dictionary generated from the feature contract."""
    from feature_store.contract import data_dictionary_markdown

    text = data_dictionary_markdown()
    if out:
        out.write_text(text)
        console.print(f"wrote {out}")
    else:
        print(text)


@app.command()
def contract() -> None:
    """Print the feature contract as JSON."""
    from feature_store.contract import contract_summary

    print(json.dumps(contract_summary(), indent=2))


@app.command()
def demo(
    patients: int = typer.Option(2000, help="Simulated cohort size."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """The main job on embedded defaults: simulate a cohort (SIMULATED data) and summarise it."""
    simulate(patients=patients, seed=seed, out=None, csv=False)


if __name__ == "__main__":
    app()
