"""`pverisk features ...`: the Feast feature store (apply, ingest, materialize), thin over
feature_store/feast_repo.py."""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="The Feast feature store: generated definitions, dated records in, online values out.",
                  no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=err)


@app.command("apply")
def apply_cmd() -> None:
    """Write feature_store.yaml and register the entity, one view per source group and one feature
    service per registered model version (all generated from the contract)."""
    from feature_store import contract as c
    from feature_store.feast_repo import groups
    from feature_store.feast_data import apply
    from feature_store.feast_settings import FeastSettings

    settings = FeastSettings()
    with _progress() as progress:
        progress.add_task("applying feature definitions", total=None)
        result = apply(settings)
    table = Table(title=f"feature views ({settings.describe()})")
    for col in ("view", "source", "TTL", "features", "why this TTL"):
        table.add_column(col)
    for group, feats in groups().items():
        g = c.SOURCE_GROUPS[group]
        table.add_row(group, g.title, f"{g.ttl_days} days" if g.ttl_days else "none", str(len(feats)), g.ttl_reason)
    console.print(table)
    console.print(f"feature services: {', '.join(result['services']) or 'none (no registered model yet)'}")
    console.print(f"wrote {result['yaml']}")


def ingest_file(data: Path, simulate_dates: bool | None = None, recent: bool = False) -> dict[str, int]:
    """Ingest a cohort file: simulated cohorts without record dates get simulated ones."""
    import pandas as pd

    from feature_store import contract as c
    from feature_store.feast_repo import RECORDED_AT_PREFIX
    from feature_store.feast_data import apply, ingest, remember_cohort
    from feature_store.feast_settings import FeastSettings
    from feature_store.simulate import simulate_record_dates
    from feature_store.study import read_cohort_metadata
    from feature_store.tables import read_table

    settings = FeastSettings()
    frame = read_table(data)
    simulated = bool(read_cohort_metadata(data).get("simulated")) or c.TRUE_PROBABILITY in frame
    dated = any(str(col).startswith(RECORDED_AT_PREFIX) for col in frame.columns)
    if simulate_dates is None:
        simulate_dates = simulated and not dated
    if simulate_dates:
        err.print("SIMULATED cohort without record dates: simulated ones drawn before each PVE decision "
                  "(labs 1-21 days, imaging 3-42 days, ...; 5% of labs older than their TTL)")
        frame = simulate_record_dates(frame)
    elif not dated:
        err.print(f"no {RECORDED_AT_PREFIX}<source> columns: every record dated at its {c.EVENT_TIMESTAMP}")
    if recent:
        if not simulated:
            raise typer.BadParameter("--recent moves dates: simulated cohorts only")
        # SIMULATED dates only: each patient's dates moved so that the decision is today (a demo's store is
        # fresh for every patient; train point-in-time on a cohort ingested without --recent)
        shift = pd.Timestamp.now().normalize() - pd.to_datetime(frame[c.EVENT_TIMESTAMP])
        for col in [c.EVENT_TIMESTAMP, c.OUTCOME_DATE, *[x for x in frame.columns if str(x).startswith(RECORDED_AT_PREFIX)]]:
            if col in frame:
                frame[col] = pd.to_datetime(frame[col]) + shift
    if not settings.yaml_path.exists():
        apply(settings)
    with _progress() as progress:
        from feature_store.feast_repo import groups

        task = progress.add_task(f"ingesting {len(frame):,} patients", total=len(groups()))
        counts = ingest(frame, settings, on_group=lambda g, n: progress.update(
            task, advance=1, description=f"ingested {g} ({n:,} records)"))
    remember_cohort(read_cohort_metadata(data), settings)
    return counts


@app.command("ingest")
def ingest_cmd(
    data: Path = typer.Option(..., exists=True, dir_okay=False, help="Cohort (Parquet/CSV) with patient_id, "
                              "pve_decision_date and optional recorded_at__<source> dates."),
    recent: bool = typer.Option(False, "--recent", help="SIMULATED cohorts only: move each patient's dates so that "
                                "the PVE decision is today (the demo's online store is then fresh for every patient)."),
) -> None:
    """Write a cohort's dated records (one per patient and source) into the offline store."""
    counts = ingest_file(data, recent=recent)
    table = Table(title=f"records ingested from {data.name}")
    table.add_column("source")
    table.add_column("records", justify="right")
    for group, n in counts.items():
        table.add_row(group, f"{n:,}")
    console.print(table)


def materialize_all(full: bool = False) -> dict[str, float]:
    from feature_store.feast_repo import groups, open_store
    from feature_store.feast_data import materialize
    from feature_store.feast_settings import FeastSettings

    store = open_store(FeastSettings())
    with _progress() as progress:
        task = progress.add_task("materializing", total=len(groups()))
        # Feast prints its own banner per view on stdout: our progress bar says the same, once
        with contextlib.redirect_stdout(io.StringIO()):
            return materialize(store, full=full, on_view=lambda v, s: progress.update(
                task, advance=1, description=f"materialized {v} ({s:.1f} s)"))


@app.command("materialize")
def materialize_cmd(
    full: bool = typer.Option(False, "--full", help="Reload every patient, not only those with records ingested "
                              "since the last run (after emptying or restoring the online store)."),
) -> None:
    """Bring the online store (SQLite or Redis) up to date: each patient's latest values, for the patients
    with records ingested since the last run."""
    from feature_store.feast_settings import FeastSettings

    t0 = time.perf_counter()
    seconds = materialize_all(full)
    console.print(f"materialized {len(seconds)} views into the online store in {time.perf_counter() - t0:.1f} s "
                  f"({FeastSettings().describe()})")


@app.command("training-set")
def training_set_cmd(
    entities: Path = typer.Option(..., exists=True, dir_okay=False, help="patient_id, pve_decision_date, progression."),
    out: Optional[Path] = typer.Option(None, help="Parquet to write (default under data/feast/training/)."),
) -> None:
    """Build the point-in-time training table for an entity file (what `pverisk train --entities` trains on)."""
    from feature_store.feast_data import training_cohort

    with _progress() as progress:
        progress.add_task("point-in-time join", total=None)
        path = training_cohort(entities, out=out)
    console.print(f"wrote {path}")


def point_in_time_cohort(entities: Path) -> Path:
    """`pverisk train --entities`: the training table from Feast's point-in-time join."""
    from feature_store.feast_data import training_cohort

    with _progress() as progress:
        progress.add_task(f"point-in-time join for {entities.name}", total=None)
        try:
            path = training_cohort(entities)
        except ValueError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    err.print(f"training table (features as known at each PVE decision): {path}")
    return path


def demo_store(cohort: Path) -> str:
    """`make demo`: the simulated cohort's records into the store (dates made recent), materialized;
    returns a patient id to look up."""
    from feature_store import contract as c
    from feature_store.feast_data import apply
    from feature_store.feast_settings import FeastSettings
    from feature_store.tables import read_table

    with _progress() as progress:
        progress.add_task("feature store: registering definitions", total=None)
        with contextlib.redirect_stdout(io.StringIO()):
            apply(FeastSettings())
    ingest_file(cohort, recent=True)
    materialize_all()
    return str(read_table(cohort)[c.PATIENT_ID].iloc[0])
