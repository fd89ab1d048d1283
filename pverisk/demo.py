"""`pverisk demo`: the main job on embedded defaults (simulate, train, register, import, serve, predict)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import typer

from pverisk.app import app, console, err, tracking_uri
from pverisk.cohort_cli import simulate
from pverisk.serving_cli import serve_command
from pverisk.training_cli import print_training, run_train


@app.command()
def demo(
    patients: int = typer.Option(2000, help="Simulated cohort size."),
    seed: int = typer.Option(0, help="Random seed."),
    port: int = typer.Option(3000, help="Port for the service (127.0.0.1)."),
    keep_serving: bool = typer.Option(True, help="Keep the service running until Ctrl-C."),
) -> None:
    """The main job on embedded defaults: simulate (SIMULATED data), train, register, import, serve, predict."""
    from feature_store.settings import DataSettings, project_root
    from serving.import_model import import_model

    cohort = DataSettings().default_cohort
    simulate(patients=patients, seed=seed, out=cohort, csv=False, centres=None, site_dir=None)
    result = run_train(cohort, None, None, None, seed, None, None, None)
    print_training(result)
    # Serve the version just trained, whatever the gate made of it: the demo shows the pipeline,
    # and the response names the alias (a candidate is never served by default otherwise).
    model = import_model(result.alias)
    os.environ["PVERISK_SERVE_MODEL_TAG"] = str(model.tag)
    if result.alias != "champion":
        console.print(f"[yellow]v{result.version} is a {result.alias}, not the champion ({result.gate_reason}); "
                      "the demo serves it anyway so you can try the service[/yellow]")
    console.print(f"imported {result.alias} v{result.version} as {model.tag}; starting the service on "
                  f"http://127.0.0.1:{port}")
    from pverisk.features_cli import demo_store

    patient_id = demo_store(cohort)  # the simulated cohort, by patient id, from the online feature store
    os.environ["PVERISK_SERVE_FEATURE_STORE_WARM"] = "true"
    proc = subprocess.Popen(serve_command("127.0.0.1", port), cwd=project_root())
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, base)
        _show_requests(base, patient_id)
        # the calculator first: it is where a new user (a clinician) starts
        console.print(f"\n[bold]Risk calculator: {base}/[/bold]")
        console.print(f"model card: {base}/model   API docs: {base}/docs   model JSON: {base}/v1/model   "
                      f"metrics: {base}/metrics", soft_wrap=True)
        console.print(f"MLflow: uv run mlflow ui --backend-store-uri {tracking_uri()}")
        if keep_serving:
            console.print("serving until Ctrl-C (research use only)")
            proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)


def _wait_ready(proc: "subprocess.Popen[bytes]", base: str, timeout_s: float = 120) -> None:
    """Until the service answers /readyz (or exits, or the time is up: exit 1 saying which)."""
    import httpx

    t0 = time.perf_counter()
    while True:
        if proc.poll() is not None:
            err.print("[red]the service exited; see its output above[/red]")
            raise typer.Exit(1)
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.perf_counter() - t0 > timeout_s:
            err.print(f"[red]the service did not become ready in {timeout_s:.0f} s[/red]")
            raise typer.Exit(1)
        time.sleep(0.2)


def _show_requests(base: str, patient_id: str) -> None:
    """A ready-to-paste request and its answer, and the same by patient id from the feature store."""
    import httpx

    from feature_store.contract import example_record

    body = json.dumps(example_record())
    answer = httpx.post(f"{base}/v1/predict", content=body, headers={"content-type": "application/json"}).json()
    print("\n# ready-to-paste request:")
    print(f"curl -s -X POST {base}/v1/predict -H 'content-type: application/json' -d '{body}'")
    print("\n# its answer:")
    print(json.dumps(answer, indent=2))
    by_id = json.dumps({"patient_id": patient_id})
    print("\n# by patient id (a SIMULATED patient's values from the online feature store):")
    print(f"curl -s -X POST {base}/v1/predict -H 'content-type: application/json' -d '{by_id}'")
    found = httpx.post(f"{base}/v1/predict", content=by_id, headers={"content-type": "application/json"},
                       timeout=120)
    if found.status_code == 200:
        store = found.json()["feature_store"]
        print(f"# answer by patient id: probability {found.json()['probability']:.3f}, {len(store['from_store'])} values "
              f"from the feature store ({store['feature_service']})")
    else:
        print(f"# answer by patient id: HTTP {found.status_code}: {found.json().get('error')}")
