"""`pverisk federated superlink | site | train | simulate`: federated training on Flower (run from the
`federated` extra's environment: `make install-federated`, then `.venv-federated/bin/pverisk federated ...`)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from pverisk.app import console, err, print_problems

app = typer.Typer(help="Federated training on Flower: a SuperLink at the coordinator, a SuperNode per hospital; only "
                       "model updates and aggregate figures leave a site.", no_args_is_help=True)

INSECURE = typer.Option(False, "--insecure", help="No TLS (loopback or a trusted network only).")
CERTS = typer.Option(None, "--certificates", help="Folder with ca.crt (and, at the SuperLink, server.pem, server.key).")


def _fail(exc: Exception, code: int = 1) -> None:
    err.print(f"[red]{exc}[/red]")
    raise typer.Exit(code)


@app.command()
def superlink(
    host: str = typer.Option("127.0.0.1", help="Interface (0.0.0.0 for sites on other machines)."),
    port: int = typer.Option(9093, help="Flower's HTTP port (sites, `federated train` and the ServerApp use it)."),
    insecure: bool = INSECURE,
    certificates: Optional[Path] = CERTS,
    home: Optional[Path] = typer.Option(None, help="Flower's home for this SuperLink (default: a temporary folder)."),
) -> None:
    """Run the coordinator's Flower SuperLink (the ServerApp runs beside it when `federated train` submits one)."""
    from training.federated_launch import FlowerMissing, flower_env, run_foreground, superlink_command

    folder = home or Path(tempfile.mkdtemp(prefix="pverisk-superlink-"))
    try:
        cmd = superlink_command(host, port, insecure, certificates, None)
    except (FlowerMissing, ValueError) as exc:
        _fail(exc, 2)
    console.print(f"SuperLink on {host}:{port} (research use only)")
    raise typer.Exit(run_foreground(cmd, flower_env(folder), None if home else folder))


@app.command()
def site(
    data: Path = typer.Option(..., exists=True, dir_okay=False, help="This hospital's cohort (Parquet/CSV)."),
    superlink_address: str = typer.Option(..., "--superlink", help="The coordinator's SuperLink, HOST:PORT."),
    name: Optional[str] = typer.Option(None, help="The site's name in the run (default: its study design's site, "
                                       "else the file name)."),
    runtime_port: int = typer.Option(9094, "--runtime-port", help="Local port of the SuperNode's runtime API "
                                     "(one per SuperNode on a machine)."),
    work_dir: Optional[Path] = typer.Option(None, help="Where the site keeps its validated cache (default: a "
                                            "temporary folder, removed at the end)."),
    insecure: bool = INSECURE,
    certificates: Optional[Path] = CERTS,
) -> None:
    """Join a federated run as one hospital: the file is validated here with `pverisk train`'s rules (problems
    are listed here, and the site then refuses every training request, so the run names it); rows never leave."""
    from feature_store.study import design_from_metadata, read_cohort_metadata
    from training.federated_launch import FlowerMissing, flower_env, run_foreground, site_work_dir, supernode_command
    from training.federated_site import prepare_site

    design = design_from_metadata(read_cohort_metadata(data))
    site_name = name or (design.site if design and design.site else data.stem)
    folder, temporary = site_work_dir(work_dir)
    try:
        cmd = supernode_command(superlink_address, site_name, folder / "cache", runtime_port, insecure, certificates)
    except (FlowerMissing, ValueError) as exc:
        _fail(exc, 2)
    summary = _prepare(data, site_name, folder / "cache", prepare_site)
    if summary["status"] == "ok":
        console.print(f"site {site_name}: {summary['n']} patients, {summary['events']} events; held out for its own "
                      f"evaluation: {summary['splits']['test']['n']}. Joining {superlink_address}.")
    raise typer.Exit(run_foreground(cmd, flower_env(folder / "flower"), folder if temporary else None))


def _prepare(data: Path, site_name: str, cache: Path, prepare: Any) -> dict[str, Any]:
    from feature_store.validate import CohortValidationError
    from training.data import load_cohort

    summary = prepare(data, site_name, cache)
    if summary["status"] != "ok":
        try:
            load_cohort(data)
        except CohortValidationError as exc:  # every problem, here, as `pverisk train` lists them
            print_problems(exc.problems, f"{len(exc.problems)} problem(s) in {data.name}: this site refuses to train",
                           "fix the file")
        except ValueError as exc:
            err.print(f"[red]{exc}[/red]")
        err.print(f"[red]site {site_name} joins only to tell the run it refuses (counts and columns, never rows or "
                  "values)[/red]")
    return summary


@app.command()
def train(
    superlink_address: str = typer.Option("127.0.0.1:9093", "--superlink", help="The SuperLink, HOST:PORT."),
    rounds: int = typer.Option(40, min=1, help="Federated rounds."),
    strategy: str = typer.Option("cyclic", help="Flower's FedXgbCyclic (cyclic, chosen by measurement: see "
                                 "BENCHMARKS.md) or FedXgbBagging (bagging)."),
    local_rounds: int = typer.Option(0, "--local-rounds", min=0, help="Cyclic: trees a site adds in its turn "
                                     "(0: the measured default, 5)."),
    learning_rate: float = typer.Option(0.0, "--learning-rate", min=0.0, max=1.0, help="Per round, shared by the "
                                        "sites by their numbers of patients (0: the measured default, 0.02 cyclic, "
                                        "0.3 bagging)."),
    min_sites: int = typer.Option(2, "--min-sites", min=1, help="Sites with valid files needed to train."),
    expected_sites: int = typer.Option(0, "--expected-sites", min=0, help="Wait for this many sites to connect "
                                       "(default: --min-sites)."),
    wait_for_sites: float = typer.Option(120.0, "--wait-for-sites", help="Seconds to wait for sites to connect."),
    round_timeout: float = typer.Option(300.0, "--round-timeout", help="Seconds a round waits for a site before it "
                                        "goes on without it (the site is named as dropped out)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default as train)."),
    insecure: bool = INSECURE,
    certificates: Optional[Path] = CERTS,
) -> None:
    """Train with the connected sites (Flower's ServerApp runs beside the SuperLink), then log, gate and register
    the federated model in MLflow like any other version."""
    from feature_store.settings import TrackingSettings
    from training.federated_launch import FlowerMissing, flower_env, run_command, run_foreground

    folder = Path(tempfile.mkdtemp(prefix="pverisk-federated-run-"))
    result_file = folder / "result.json"
    tracking = TrackingSettings(**({"tracking_uri": tracking_uri} if tracking_uri else {}))
    config = {"rounds": rounds, "strategy": strategy, "local-rounds": local_rounds, "learning-rate": learning_rate,
              "min-sites": min_sites, "expected-sites": expected_sites, "wait-for-sites-s": wait_for_sites, "round-timeout-s": round_timeout,
              "tracking-uri": tracking.tracking_uri, "result-file": str(result_file),
              "artifact-root": str(tracking.artifact_root or "")}
    try:
        cmd = run_command(superlink_address, config, folder / "flower", insecure, certificates)
    except (FlowerMissing, ValueError) as exc:
        _fail(exc, 2)
    code = run_foreground(cmd, flower_env(folder / "flower"))
    if code != 0 or not result_file.exists():
        _fail(RuntimeError(f"the federated run did not finish (flwr run exited {code}); see Flower's log above"))
    record = json.loads(result_file.read_text())
    if "error" in record:
        _fail(RuntimeError(f"the federated run stopped: {record['error']}"))
    print_federated(record)


@app.command()
def simulate(
    site_dir: Path = typer.Option(..., exists=True, file_okay=False, help="One cohort file per site (*.parquet)."),
    rounds: int = typer.Option(40, min=1),
    strategy: str = typer.Option("cyclic", help="cyclic or bagging"),
    local_rounds: int = typer.Option(0, "--local-rounds", min=0, help="0: 5 cyclic, 1 bagging"),
    learning_rate: float = typer.Option(0.0, "--learning-rate", min=0.0, max=1.0, help="0: 0.02 cyclic, 0.3 bagging"),
    register: bool = typer.Option(True, "--register/--no-register", help="Log and register in MLflow."),
) -> None:
    """Flower's simulation engine: every site of a folder as a virtual SuperNode in this process (for trying the
    federated model on simulated centres; real sites use `federated site`)."""
    from training.federated_sim import simulate_federation

    try:
        record = simulate_federation(sorted(site_dir.glob("*.parquet")), {
            "rounds": rounds, "strategy": strategy, "local-rounds": local_rounds, "learning-rate": learning_rate},
            register=register)
    except (ImportError, ValueError, RuntimeError) as exc:
        _fail(exc, 1)
    print_federated(record)


def print_federated(record: dict[str, Any]) -> None:
    from pverisk.training_cli import print_centres

    table = Table(title=f"federated run: {record['strategy']}, {record['rounds']} rounds, {record['seconds']} s")
    for col in ("site", "patients", "events", "status"):
        table.add_column(col)
    for s in record["sites"]:
        table.add_row(str(s["site"]), str(s.get("n", "-")), str(s.get("events", "-")), s["status"])
    console.print(table)
    for note in record["notes"]:
        console.print(f"[yellow]{note}[/yellow]")
    if record.get("trees"):
        t = record["trees"]
        console.print(f"trees kept: {t['kept']} of {t['grown']} ({t['rule']}; {t['patients']} patients)")
    console.print("inputs (the union of what the sites recorded): " + ", ".join(
        f"{k} ({len(v)} sites)" for k, v in record["inputs_recorded_by"].items()))
    print_centres(record["site_evaluation"], "each site's held-out patients")
    reg = record.get("registration")
    if reg:
        console.print(f"registered version {reg['version']} -> {reg['alias']}: {reg['gate_reason']} (run {reg['run_id']})")
