"""Flower's simulation engine (Ray backend) over site files: each file a virtual SuperNode running the same
ClientApp as a hospital's SuperNode, with its own validated cache; the same ServerApp. For simulated centres
(`pverisk federated simulate`, the benchmark and the ten-site test); real hospitals run `federated site`."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from training.federated_site import prepare_site


def simulate_federation(files: list[Path], config: dict[str, Any], register: bool = False,
                        tracking_uri: str | None = None, work_dir: Path | None = None) -> dict[str, Any]:
    """Run the federated training over `files` in Flower's simulation engine; returns the run's record."""
    import json

    for var, value in (("RAY_USAGE_STATS_ENABLED", "0"), ("FLWR_TELEMETRY_ENABLED", "0"),
                       ("FLWR_DISABLE_UPDATE_CHECK", "1")):
        os.environ.setdefault(var, value)  # offline: before Ray or Flower start
    from flwr.simulation import run_simulation

    from feature_store.settings import TrackingSettings
    from training.federated_client import make_client_app
    from training.federated_server import make_server_app

    if len(files) < 2:
        raise ValueError(f"{len(files)} site files: a federation needs at least two")
    folder = Path(work_dir or tempfile.mkdtemp(prefix="pverisk-fedsim-"))
    try:
        caches = []
        for path in files:
            cache = folder / path.stem
            prepare_site(path, path.stem, cache)
            caches.append(str(cache))
        result = folder / "result.json"
        run_config = {**config, "result-file": str(result), "min-sites": config.get("min-sites", 2),
                      "tracking-uri": (tracking_uri or TrackingSettings().tracking_uri) if register else ""}
        run_simulation(make_server_app(run_config), make_client_app(caches), num_supernodes=len(caches),
                       backend_config={"client_resources": {"num_cpus": 1},
                                       "init_args": {"num_cpus": min(os.cpu_count() or 2, 4),
                                                     "include_dashboard": False, "log_to_driver": False}})
        if not result.exists():
            raise RuntimeError("the simulated federation did not finish (see Flower's log above)")
        record = json.loads(result.read_text())
        if "error" in record:
            raise RuntimeError(f"the federated run stopped: {record['error']}")
        return record
    finally:
        if work_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
