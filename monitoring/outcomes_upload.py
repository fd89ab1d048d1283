"""Plain functions behind the monitoring commands of `pverisk` (outcomes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

CHUNK = 5_000


def read_outcomes(data: Path) -> list[dict[str, Any]]:
    """prediction_id and outcome columns of a CSV or Parquet file; ValueError naming what is wrong."""
    import pandas as pd

    frame = pd.read_parquet(data) if str(data).endswith(".parquet") else pd.read_csv(data, dtype={"prediction_id": str})
    absent = [col for col in ("prediction_id", "outcome") if col not in frame]
    if absent:
        raise ValueError(f"{data.name}: column(s) {', '.join(absent)} missing (need prediction_id, outcome)")
    truth = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
    out, bad = [], []
    for i, (pid, value) in enumerate(zip(frame["prediction_id"], frame["outcome"])):
        v = truth.get(str(value).strip().lower().removesuffix(".0"))
        if v is None or not isinstance(pid, str) or not pid:
            bad.append(i + 2 if str(data).endswith(".csv") else i)
            continue
        out.append({"prediction_id": pid, "outcome": v})
    if bad:
        raise ValueError(f"{data.name}: {len(bad)} row(s) without a prediction id or a true/false outcome "
                         f"(rows {', '.join(map(str, bad[:20]))}{', ...' if len(bad) > 20 else ''}); nothing sent")
    return out


def post_outcomes(data: Path, service_url: str, api_key: str | None = None) -> dict[str, Any]:
    """Send the file's outcomes to POST /v1/outcomes in chunks; the last answer's performance."""
    rows = read_outcomes(data)
    headers = {"X-API-Key": api_key} if api_key else {}
    recorded, unknown, performance = 0, [], {}
    for start in range(0, len(rows), CHUNK):
        r = httpx.post(f"{service_url.rstrip('/')}/v1/outcomes", json={"outcomes": rows[start:start + CHUNK]},
                       headers=headers, timeout=60)
        if r.status_code != 200:
            raise ValueError(f"the service answered {r.status_code}: {r.text[:300]}")
        body = r.json()
        recorded += body["recorded"]
        unknown += body["unknown_prediction_ids"]
        performance = body["performance"]
    return {"recorded": recorded, "unknown_prediction_ids": unknown, "performance": performance}
