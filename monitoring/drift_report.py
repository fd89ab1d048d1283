"""`pverisk drift-report`: an HTML report of a window of patients against the model's training
reference, per input, with plots.

The window is either a running service's rolling window (`GET /v1/monitoring`: aggregate bins
only) or a file of patients binned here with the model's reference bins (nothing but the counts
leaves this function). Two files are written: our report (summary, the service's own drift flags
and thresholds, a bar chart per input and the score distribution) and Evidently's report computed
on the same bins (Evidently compares rows; it is given one row per patient holding the bin label,
never a value, so its PSI is over exactly our bins).
"""

from __future__ import annotations

import base64
import html
import io
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from feature_store import contract as c
from feature_store.encoding import encode_array
from monitoring import profile as pr

if TYPE_CHECKING:
    from model_runtime.scoring import RiskModel

NOTICE = "Research use only: not a medical device, not for clinical decisions."


def summary_from_service(url: str, api_key: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    import httpx

    headers = {"X-API-Key": api_key} if api_key else {}
    r = httpx.get(f"{url.rstrip('/')}/v1/monitoring", headers=headers, timeout=timeout)
    r.raise_for_status()
    out = r.json()
    out["window_source"] = f"rolling window of the service at {url} (last {out['window_seconds']:g} s)"
    return out


def summary_from_file(data: Path, risk: "RiskModel", thresholds: pr.DriftThresholds | None = None
                      ) -> dict[str, Any]:
    """A file of patients (Parquet/CSV, contract columns) as the window, scored and binned with a
    loaded model (the command line loads it from the BentoML store)."""
    import pandas as pd

    from monitoring.monitor import bands_of, probabilities
    from monitoring.settings import MonitorSettings

    identity = risk.identity
    profile = risk.metadata.get("reference_profile")
    if not profile:
        raise ValueError(f"{identity.bento_tag} carries no reference profile (trained before monitoring); re-train it")
    frame = pd.read_parquet(data) if str(data).endswith(".parquet") else pd.read_csv(data)
    columns = {k: frame[k].to_numpy(dtype=object) for k in frame.columns if k in c.BY_NAME}
    derived, _ = risk.derive(columns)
    X = encode_array(derived, risk.features)
    p = probabilities(risk, X)
    settings = MonitorSettings()
    t = thresholds or pr.DriftThresholds(settings.psi_threshold, settings.missing_share_threshold,
                                         settings.drift_min_patients)
    out = pr.compare(profile, pr.Binner(profile).counts(X), pr.score_counts(p), t)
    bands = np.bincount(bands_of(p, risk.band_low_below, risk.band_high_from), minlength=3)
    return {"model": {"model_name": identity.name, "model_version": identity.version, "alias": identity.alias,
                      "data_kind": identity.data_kind},
            "patients": float(len(frame)), "window_source": f"file {Path(data).name} ({len(frame)} patients)",
            "risk_bands": dict(zip(("low", "intermediate", "high"), bands.tolist())), **out}


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _shares(counts: list[float]) -> np.ndarray:
    a = np.asarray(counts, dtype=float)
    return a / a.sum() if a.sum() else a


def _bars(labels: list[str], ref: list[float], cur: list[float], title: str, flagged: bool) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 2.4))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, _shares(ref), 0.4, label="training reference", color="#9aa5b1")
    ax.bar(x + 0.2, _shares(cur), 0.4, label="window", color="#c0392b" if flagged else "#2e86de")
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def _score_plot(summary: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.4))
    grid = np.arange(pr.SCORE_FINE_BINS) / pr.SCORE_FINE_BINS
    ref = summary.get("reference_score_fine_counts")
    if ref:
        ax.step(grid, _shares(ref), where="post", label="held-out training scores", color="#7f8c8d")
    ax.step(grid, _shares(summary["score_fine_counts"]), where="post", label="window", color="#2e86de")
    ax.set_xlabel("risk", fontsize=8)
    ax.set_ylabel("share per 0.01", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def _fmt(v: Any, pattern: str = "{:.3f}") -> str:
    return "-" if v is None or (isinstance(v, float) and v != v) else pattern.format(v)


def render_html(summary: dict[str, Any], evidently_file: str | None = None,
                evidently_psi: dict[str, float] | None = None) -> str:
    """Our report: header, the flagged inputs first, a table and a plot per input, the score."""
    m = summary["model"]
    t = summary["thresholds"]
    feats = sorted(summary["features"].items(), key=lambda kv: (-kv[1]["drift"], -(kv[1]["psi"] or 0)))
    flagged = [n for n, d in feats if d["drift"]]
    rows = []
    for name, d in feats:
        ev = "" if evidently_psi is None else f"<td>{_fmt(evidently_psi.get(name))}</td>"
        rows.append(f"<tr class='{'drift' if d['drift'] else ''}'><td>{html.escape(name)}</td><td>{_fmt(d['psi'])}</td>{ev}"
                    f"<td>{_fmt(d['missing_share'], '{:.1%}')}</td><td>{_fmt(d['reference_missing_share'], '{:.1%}')}</td>"
                    f"<td>{'DRIFT' if d['drift'] else 'ok'}</td></tr>")
    figures = []
    for name, d in feats:
        title = f"{name}  PSI {_fmt(d['psi'], '{:.2f}')}"
        src = _bars(d["bins"], d["reference_counts"], d["window_counts"], title, bool(d["drift"]))
        figures.append(f"<figure><img alt='{html.escape(name)}' src='{src}'></figure>")
    plots = "".join(figures)
    ev_head = "" if evidently_psi is None else "<th>PSI (Evidently)</th>"
    ev_link = (f"<p>Evidently's report on the same bins: <a href='{html.escape(evidently_file)}'>"
               f"{html.escape(evidently_file)}</a></p>") if evidently_file else ""
    q = summary.get("score_quantiles", {})
    bands = summary.get("risk_bands", {})
    ref = summary.get("reference", {})
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Drift report: {html.escape(m['model_name'])} v{html.escape(str(m['model_version']))}</title>
<style>body{{font-family:system-ui,sans-serif;margin:16px 24px;color:#222}} .notice{{background:#fff3cd;padding:6px 10px;border:1px solid #e0c36a}}
table{{border-collapse:collapse;font-size:13px}} td,th{{border-bottom:1px solid #ddd;padding:3px 10px;text-align:left}} tr.drift td{{background:#fdecea;font-weight:600}}
.grid{{display:flex;flex-wrap:wrap;gap:4px}} figure{{margin:0}} .kv span{{margin-right:18px}}</style></head><body>
<h1>Input drift: {html.escape(m['model_name'])} v{html.escape(str(m['model_version']))} ({html.escape(str(m.get('alias', '')))})</h1>
<p class="notice">{NOTICE} Model data kind: <b>{html.escape(str(m.get('data_kind', '?')))}</b>. Aggregates only: bin counts, no patient's values or identifiers.</p>
<p class="kv"><span>window: {html.escape(summary.get('window_source', ''))}</span><span>patients: {summary['patients']:.0f}</span>
<span>reference: {html.escape(str(ref.get('dataset_name', '?')))}, {html.escape(str(ref.get('inputs', '')))}</span><span>generated {when}</span></p>
<p class="kv"><span>thresholds: PSI &gt; {t['psi']:g} or missing share moved by &gt; {t['missing_share_change']:.0%}, with at least {t['min_patients']} patients</span></p>
<h2>{len(flagged)} of {len(feats)} inputs drifted{': ' + html.escape(', '.join(flagged)) if flagged else ''}</h2>
<table><tr><th>input</th><th>PSI</th>{ev_head}<th>missing (window)</th><th>missing (reference)</th><th>flag</th></tr>{''.join(rows)}</table>
{ev_link}
<h2>Risk score</h2>
<p class="kv"><span>PSI {_fmt(summary.get('score_psi'))}</span>{''.join(f'<span>q{k} {_fmt(v, "{:.2f}")}</span>' for k, v in q.items())}
{''.join(f'<span>{html.escape(k)}: {v:.0f}</span>' for k, v in bands.items())}</p>
<img alt="score distribution" src="{_score_plot(summary)}">
<h2>Per input: share of patients per bin</h2><div class="grid">{plots}</div>
</body></html>"""


def evidently_report(summary: dict[str, Any], out: Path) -> tuple[dict[str, float], str]:
    """Evidently's drift report on the binned window and reference (one row per patient holding its
    bin label); its PSI per input, and its version."""
    os.environ.setdefault("DO_NOT_TRACK", "true")  # Evidently's telemetry stays off
    import evidently
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    feats = summary["features"]

    def expand(key: str) -> pd.DataFrame:
        cols = {}
        for name, d in feats.items():
            cols[name] = np.repeat(np.asarray(d["bins"], dtype=object), np.asarray(d[key], dtype=int))
        n = min(len(v) for v in cols.values())  # every input has one bin per patient
        return pd.DataFrame({k: v[:n] for k, v in cols.items()})

    cur, ref = expand("window_counts"), expand("reference_counts")
    definition = DataDefinition(categorical_columns=list(feats))
    threshold = summary["thresholds"]["psi"]
    report = Report([ValueDrift(column=name, method="psi", threshold=threshold) for name in feats])
    snapshot = report.run(Dataset.from_pandas(cur, data_definition=definition),
                          Dataset.from_pandas(ref, data_definition=definition))
    snapshot.save_html(str(out))
    values = {}
    for metric in snapshot.dict()["metrics"]:
        values[metric["config"]["column"]] = float(metric["value"])
    return values, evidently.__version__


def write_report(summary: dict[str, Any], out: Path, with_evidently: bool = True) -> dict[str, Any]:
    """Write the report (and Evidently's beside it); returns what was written and flagged."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ev_path, ev_psi, ev_version = None, None, None
    if with_evidently and summary["patients"] > 0 and summary["features"]:
        ev_path = out.with_name(out.stem + "-evidently.html")
        ev_psi, ev_version = evidently_report(summary, ev_path)
    out.write_text(render_html(summary, ev_path.name if ev_path else None, ev_psi))
    flagged = {n: d["psi"] for n, d in summary["features"].items() if d["drift"]}
    return {"report": out, "evidently_report": ev_path, "evidently_version": ev_version, "flagged": flagged,
            "evidently_psi": ev_psi}
