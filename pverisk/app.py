"""The `pverisk` Typer app, its consoles and the helpers every command group shares. Importing it sets
the environment the commands run in: offline (no telemetry) and the project's own BentoML store."""

from __future__ import annotations

import os

# Offline by rule: no telemetry from anything this program runs.
for _var in ("BENTOML_DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
    os.environ.setdefault(_var, "true")
# MLflow draws a progress bar for every artifact download (model import, the gate's lookups):
# on local files they finish at once and only bury the output.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# The model's environment is stated in full at training (training/tracking.py: conda_env), so
# MLflow's uv-project detection has nothing to infer and would only announce itself.
os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")

from feature_store.settings import default_bentoml_home  # noqa: E402

# The local BentoML store lives in the project (git-ignored), never in the user's home.
os.environ.setdefault("BENTOML_HOME", str(default_bentoml_home()))

from typing import Any  # noqa: E402

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


def progress_bar() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                    transient=False)


def print_problems(problems: list, title: str, more_hint: str, limit: int = 200) -> None:  # type: ignore[type-arg]
    """Every problem as a rich table (row, column, value, rule) on stderr."""
    table = Table(title=title)
    for col in ("row", "column", "value", "rule"):
        table.add_column(col)
    for p in problems[:limit]:
        source = getattr(p, "source", None)  # an import's own column and value, as exported
        table.add_row("-" if p.row is None else str(p.row), p.column + (f"\n(export: {source})" if source else ""),
                      p.value or "", p.rule)
    err.print(table)
    if len(problems) > limit:
        err.print(f"... and {len(problems) - limit} more ({more_hint})")


def tracking_uri() -> str:
    from feature_store.settings import TrackingSettings

    return TrackingSettings().tracking_uri


def stored_risk(model_tag: str | None) -> Any:
    """A model of the local BentoML store ready to score (default: the newest imported champion)."""
    from serving.import_model import newest_champion_tag
    from serving.settings import ServingSettings
    from serving.stored import load_risk

    return load_risk(model_tag or newest_champion_tag(), ServingSettings())
