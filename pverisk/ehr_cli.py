"""`pverisk ehr-coverage`: which of a model's inputs a standard EHR chart (HL7 mCODE, US Core) carries."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from pverisk.app import app, console, err


def model_features(model_tag: Optional[str], service_url: Optional[str], features: Optional[str]) -> list[str]:
    """The inputs to list: given by name, a running service's (GET /v1/model), or a stored model's (the local
    BentoML store; default the newest imported champion). Reads the model's metadata, not the model."""
    if features:
        from feature_store import contract as c

        names = [f.strip() for f in features.split(",") if f.strip()]
        c.check_no_leakage(names)
        return names
    if service_url:
        import httpx

        key = os.environ.get("PVERISK_SERVE_API_KEY")
        r = httpx.get(f"{service_url.rstrip('/')}/v1/model", headers={"X-API-Key": key} if key else {}, timeout=30)
        r.raise_for_status()
        return list(r.json()["features"])
    import bentoml

    from model_runtime.scoring import served_inputs
    from serving.import_model import newest_champion_tag

    return list(served_inputs(bentoml.models.get(model_tag or newest_champion_tag()).path_of("mlflow_model")).features)


def coverage_table(cov: dict[str, Any]) -> Table:
    table = Table(title=f"EHR coverage: {cov['standard_inputs']} of {cov['total_inputs']} inputs "
                        f"({100 * cov['standard_share']:.0f}%) in a standard mCODE / US Core chart")
    for col in ("input", "label", "standard chart", "where (profile: what is read)", "local code"):
        table.add_column(col, overflow="fold")
    for e in cov["inputs"]:
        where = "\n".join(dict.fromkeys(f"{r['profile']}: {r['reads']}" for r in e["carried_by"])) or e.get("why_local", "")
        table.add_row(e["feature"], e["label"], "yes" if e["standard"] else "no (local code)", escape(where),
                      e["local_code"] or "-")
    return table


@app.command("ehr-coverage")
def ehr_coverage(
    model_tag: Optional[str] = typer.Option(None, "--model-tag", help="Stored model (default: newest champion)."),
    service_url: Optional[str] = typer.Option(None, "--service-url", help="Or: the model a running service serves."),
    features: Optional[str] = typer.Option(None, "--features", help="Or: comma-separated contract features (what a "
                                           "model trained on them would get from EHRs)."),
    as_json: bool = typer.Option(False, "--json", help="The listing as JSON (as in GET /v1/model's ehr_coverage)."),
) -> None:
    """Which of the model's inputs a standard chart (HL7 mCODE STU3/STU4, US Core, genomics reporting) carries, with
    the profile and codes read, which need the project's local code, and the share a standard chart fills."""
    from feature_store.coverage import coverage

    try:
        names = model_features(model_tag, service_url, features)
    except Exception as exc:  # no model, service down, unknown feature: one line, no traceback
        err.print(f"[red]cannot list coverage: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}[/red]")
        raise typer.Exit(1) from None
    cov = coverage(names)
    if as_json:
        print(json.dumps(cov, indent=2))
        return
    console.print(coverage_table(cov))
    if cov["local_only"]:
        console.print("Train on the inputs a standard chart carries: uv run pverisk train --data cohort.parquet "
                      f"--features {','.join(e['feature'] for e in cov['inputs'] if e['standard'])}", soft_wrap=True)
