"""The Grafana dashboard (monitoring/prometheus/grafana-dashboard.json) as data: its panels' PromQL, queried
against a real Prometheus, and a plain HTML snapshot of the answers.

The snapshot is NOT Grafana: it draws each panel's query results (instant values as numbers or
bars, time series as line charts) on a page laid out by the panels' grid positions, so the README
can show what the dashboard's queries return without running a Grafana server. The test of the
dashboard uses `panel_targets` so it follows whatever the dashboard asks.

    uv run python -m monitoring.dashboard --prometheus http://127.0.0.1:9090 --out build/dashboard.html
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx


DASHBOARD = Path(__file__).resolve().parent / "prometheus" / "grafana-dashboard.json"


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def panel_targets(dashboard: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(panel title, panel type, PromQL, legend format) for every target of every panel."""
    return [(p["title"], p["type"], t["expr"], t.get("legendFormat", "")) for p in dashboard["panels"]
            for t in p.get("targets", [])]


def query(prometheus: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """Instant query; raises on a PromQL or HTTP error (a panel that cannot be evaluated)."""
    params = {"query": expr, **({"time": str(at)} if at else {})}
    r = httpx.get(f"{prometheus}/api/v1/query", params=params, timeout=30)
    body = r.json()
    if r.status_code != 200 or body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body.get('error', r.text[:200])}")
    return body["data"]["result"]


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    r = httpx.get(f"{prometheus}/api/v1/query_range",
                  params={"query": expr, "start": start, "end": end, "step": step}, timeout=30)
    body = r.json()
    if r.status_code != 200 or body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body.get('error', r.text[:200])}")
    return body["data"]["result"]


def legend(fmt: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt) or json.dumps(labels)


def _value(v: str) -> float:
    return float(v)


def _fmt(x: float, unit: str | None) -> str:
    if x != x:
        return "NaN"
    if unit == "percentunit":
        return f"{x:.0%}"
    if unit == "s":
        return f"{x * 1000:.1f} ms"
    if unit == "reqps":
        return f"{x:.2f}/s"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def _line_chart(series: list[tuple[str, list[tuple[float, float]]]], unit: str | None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 2.1))
    t0 = min((pts[0][0] for _, pts in series if pts), default=0)
    for name, pts in series[:8]:
        ax.plot([(t - t0) / 60 for t, _ in pts], [v for _, v in pts], label=name[:48], lw=1.4)
    ax.set_xlabel("minutes", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    if series:
        ax.legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return f"<img alt='chart' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>"


def _bars(rows: list[tuple[str, float]], unit: str | None, red_from: float | None) -> str:
    top = max((abs(v) for _, v in rows if v == v), default=1.0) or 1.0
    out = []
    for name, v in rows:
        width = 0 if v != v else max(1.0, 100 * abs(v) / top)
        color = "#c0392b" if red_from is not None and v == v and v >= red_from else "#2e86de"
        out.append(f"<div class='bar'><span class='lab'>{html.escape(name)}</span><span class='track'>"
                   f"<span style='width:{width:.0f}%;background:{color}'></span></span>"
                   f"<span class='val'>{_fmt(v, unit)}</span></div>")
    return "".join(out)


def render_html(dashboard: dict[str, Any], prometheus: str, minutes: float = 15.0) -> str:
    """One page: every panel at its grid position, drawn from its queries' answers now."""
    end = time.time()
    start = end - minutes * 60
    cells = []
    for p in dashboard["panels"]:
        body = _panel_body(p, prometheus, start, end, minutes)
        g = p["gridPos"]
        cells.append(f"<section style='grid-column:{g['x'] + 1} / span {g['w']};grid-row:{g['y'] + 1} / span {g['h']}'>"
                     f"<h3>{html.escape(p['title'])}</h3><div class='body'>{body}</div></section>")
    return _page(dashboard, prometheus, cells, end, minutes)


def _panel_body(p: dict[str, Any], prometheus: str, start: float, end: float, minutes: float) -> str:
    """One panel drawn: a line chart over the window, else its instant answers as stats, a table or bars."""
    unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
    steps = p.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    red_from = next((s["value"] for s in steps if s.get("color") == "red"), None)
    if p["type"] == "timeseries":
        series = []
        for t in p["targets"]:
            for s in query_range(prometheus, t["expr"], start, end, max(5.0, minutes * 60 / 120)):
                series.append((legend(t.get("legendFormat", ""), s["metric"]),
                               [(float(a), _value(b)) for a, b in s["values"]]))
        return _line_chart(series, unit)
    rows = []
    for t in p["targets"]:
        for s in query(prometheus, t["expr"], end):
            rows.append((legend(t.get("legendFormat", ""), s["metric"]), _value(s["value"][1])))
    if p["type"] == "stat":
        return "".join(f"<div class='stat'><b>{_fmt(v, unit) if not name or p['options'].get('textMode') != 'name' else ''}"
                       f"</b> <span>{html.escape(name)}</span></div>" for name, v in rows)
    if p["type"] == "table":
        return _table_body(p, rows, prometheus, end)
    # bargauge, barchart, piechart: bars (a snapshot, not Grafana's drawing)
    if p["type"] == "barchart":
        rows = sorted(rows, key=lambda r: r[0])
        rows = [r for r in rows if r[1] > 0] or rows[:10]
    else:
        rows = sorted(rows, key=lambda r: -r[1] if r[1] == r[1] else 0)
    return _bars(rows, unit, red_from)


def _table_body(p: dict[str, Any], rows: list[tuple[str, float]], prometheus: str, end: float) -> str:
    """One row per series name, one column per query (each query asked again for its own column)."""
    names = sorted({n for n, _ in rows})
    cols = [t.get("expr", "") for t in p["targets"]]
    per: dict[str, list[str]] = {n: [] for n in names}
    for t in p["targets"]:
        got = {legend(t.get("legendFormat", ""), s["metric"]): _value(s["value"][1])
               for s in query(prometheus, t["expr"], end)}
        for n in names:
            per[n].append(_fmt(got.get(n, float("nan")), None))
    short = [re.sub(r"^max by \(feature\) \((\w+)\)$", r"\1", e) for e in cols]
    head = "".join(f"<th>{html.escape(e)}</th>" for e in short)
    return ("<table><tr><th></th>" + head + "</tr>" + "".join(
        f"<tr><td>{html.escape(n)}</td>" + "".join(f"<td>{v}</td>" for v in per[n]) + "</tr>"
        for n in names) + "</table>")


def _page(dashboard: dict[str, Any], prometheus: str, cells: list[str], end: float, minutes: float) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(end))
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(dashboard['title'])}</title>
<style>body{{font-family:system-ui,sans-serif;background:#111217;color:#ccccdc;margin:10px}}
.grid{{display:grid;grid-template-columns:repeat(24,1fr);grid-auto-rows:30px;gap:6px}}
section{{background:#181b1f;border:1px solid #2c3235;border-radius:3px;padding:4px 8px;overflow:hidden}}
h1{{font-size:17px;margin:4px 0}} h3{{font-size:12px;margin:2px 0 4px;color:#e0e0e0}} .note{{font-size:11px;color:#9fa7b3}}
.stat b{{font-size:22px;color:#73bf69}} .stat span{{font-size:12px}} img{{max-width:100%}}
.bar{{display:flex;align-items:center;font-size:10px;height:14px}} .lab{{width:38%;overflow:hidden;white-space:nowrap}}
.track{{flex:1;background:#22252b;height:9px;margin:0 4px}} .track span{{display:block;height:9px}} .val{{width:54px;text-align:right}}
table{{font-size:10px;border-collapse:collapse}} td,th{{padding:0 6px;border-bottom:1px solid #2c3235;text-align:left}}</style></head><body>
<h1>{html.escape(dashboard['title'])}</h1>
<p class="note">Snapshot of monitoring/prometheus/grafana-dashboard.json: each panel's PromQL answered by a real Prometheus ({html.escape(prometheus)}) at {stamp}, last {minutes:g} min; drawn by monitoring/dashboard.py, not by Grafana. Research use only.</p>
<div class="grid">{''.join(cells)}</div></body></html>"""


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus that scrapes the service")
    parser.add_argument("--out", type=Path, default=Path("build/dashboard.html"), help="HTML page to write")
    parser.add_argument("--minutes", type=float, default=15.0, help="time range of each panel's query")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render_html(load(), args.prometheus, args.minutes))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
