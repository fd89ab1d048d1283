"""`pverisk`: thin typer commands, each over one plain function that tests call directly. One module per
command group; importing them registers their commands on the app."""

from __future__ import annotations

from pverisk.app import app
from pverisk.features_cli import app as features_app
from pverisk.federated_cli import app as federated_app

app.add_typer(features_app, name="features")
app.add_typer(federated_app, name="federated")

from pverisk import cohort_cli, training_cli, validate_cli, monitoring_cli, serving_cli, ehr_cli, demo  # noqa: E402,F401,I001  (they register)

if __name__ == "__main__":
    app()
