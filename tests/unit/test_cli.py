"""The CLI is thin: every subcommand has --help and calls the plain functions."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from feature_store.simulate import simulate_cohort
from pverisk.cli import app

runner = CliRunner()


@pytest.mark.parametrize("cmd", [[], ["simulate"], ["import-cohort"], ["data-dictionary"], ["contract"]])
def test_help(cmd):
    res = runner.invoke(app, [*cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_simulate_writes_parquet_and_csv(tmp_path):
    out = tmp_path / "c.parquet"
    res = runner.invoke(app, ["simulate", "--patients", "300", "--seed", "5", "--out", str(out), "--csv"])
    assert res.exit_code == 0, res.output
    assert "SIMULATED" in res.output
    df = pd.read_parquet(out)
    pd.testing.assert_frame_equal(df, simulate_cohort(300, 5))
    assert out.with_suffix(".csv").exists()
