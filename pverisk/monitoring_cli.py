"""`pverisk outcomes`, `drift-report`: what happened to the patients scored, and how live inputs drift."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from pverisk.app import app, console, err, stored_risk


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
                   else summary_from_file(data, stored_risk(model_tag)))  # type: ignore[arg-type]
    except Exception as exc:  # unreachable service, a model without a reference: say which, no traceback
        err.print(f"[red]cannot build the report: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}[/red]")
        raise typer.Exit(1) from None
    result = write_report(summary, out, with_evidently=evidently)
    flagged = ", ".join(f"{k} (PSI {v:.2f})" for k, v in result["flagged"].items()) or "none"
    console.print(f"{summary['patients']:.0f} patients; drifted inputs: {flagged}")
    console.print(f"wrote {result['report']}" + (f" and {result['evidently_report']} (Evidently "
                                                f"{result['evidently_version']})" if result["evidently_report"] else ""))
