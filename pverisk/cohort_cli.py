"""`pverisk simulate`, `import-cohort`, `data-dictionary`, `contract`: cohorts and the feature contract."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from pverisk.app import app, console, err, print_problems, progress_bar


@app.command()
def simulate(
    patients: int = typer.Option(2000, "--patients", "-n", min=1, help="Number of simulated patients."),
    seed: int = typer.Option(0, help="Random seed (same seed, same cohort)."),
    out: Optional[Path] = typer.Option(None, help="Parquet file to write (default: data/simulated/cohort.parquet)."),
    csv: bool = typer.Option(False, "--csv", help="Also write a CSV next to the Parquet file."),
    centres: Optional[int] = typer.Option(None, "--centres", min=1, max=200, help="Several centres, each with its own "
                                          "size (20-600; --patients is ignored), case mix, outcome rate and recorded "
                                          "inputs; a `centre` column."),
    site_dir: Optional[Path] = typer.Option(None, "--site-dir", help="With --centres: also one file per centre, as "
                                            "that hospital records it (for `pverisk federated site`)."),
) -> None:
    """Simulate a literature-grounded PVE cohort (SIMULATED data, labelled so), or several centres."""
    from feature_store.settings import DataSettings
    from feature_store.simulate import dataset_name, simulate_cohort, summarise, write_cohort

    target = out or DataSettings().default_cohort
    if centres is not None:
        simulate_centres_cmd(centres, seed, target, site_dir)
        return
    with progress_bar() as progress:
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


def simulate_centres_cmd(k: int, seed: int, target: Path, site_dir: Path | None) -> None:
    from feature_store.centres import simulate_centres, summary, write_centres

    pooled, centres = simulate_centres(k, seed)
    written = write_centres(pooled, centres, target, site_dir)
    table = Table(title=f"{k} SIMULATED centres (seed {seed}): {len(pooled):,} patients")
    rows = summary(pooled, centres)
    for col in rows.columns:
        table.add_column(col)
    for r in rows.itertuples(index=False):
        table.add_row(r.centre, str(r.patients), str(r.events), f"{r.outcome_rate:.1%}", f"{r.mean_age:.1f}",
                      r.not_recorded)
    console.print(table)
    console.print(f"wrote {written[0]}" + (f" and {len(written) - 1} site files in {site_dir}" if site_dir else ""))


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
        print_problems(result.problems, f"{len(result.problems)} problem(s) in {source.name}", "see --report")
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
