"""The benchmark results interface shared by every `make bench` script.

Each benchmark prints its table and writes `build/bench/<name>.json`:
    {"title": str, "description": str,
     "tables": [{"caption": str, "columns": [str, ...], "rows": [[cell, ...], ...]}],
     "notes": [str, ...]}
`python -m benchmarks.bench_report` renders them all into BENCHMARKS.md. Standard library and rich
only: the simulator and training benchmarks import this without the serving stack.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

Cell = str | int | float | None


def bench_dir() -> Path:
    """build/bench under the project root (PVERISK_BENCH_DIR overrides: the tests write elsewhere)."""
    override = os.environ.get("PVERISK_BENCH_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1] / "build" / "bench"


def table(caption: str, columns: Sequence[str], rows: Sequence[Sequence[Cell]]) -> dict[str, Any]:
    """One table of a result; every row as long as `columns`."""
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"{caption!r}: row {list(row)!r} has {len(row)} cells for {len(columns)} columns")
    return {"caption": caption, "columns": [str(c) for c in columns], "rows": [[_cell(x) for x in r] for r in rows]}


def _cell(x: Any) -> Cell:
    if x is None or isinstance(x, (str, int, float)) and not isinstance(x, bool):
        return x
    if hasattr(x, "item"):  # numpy scalars
        return x.item()
    return str(x)


def write_result(name: str, title: str, description: str, tables: Sequence[dict[str, Any]],
                 notes: Sequence[str] = (), *, show: bool = True) -> Path:
    """Write build/bench/<name>.json (and print the tables with rich unless `show` is false)."""
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"benchmark name {name!r}: letters, digits, - and _ only (it names a file)")
    result = {"title": title, "description": description, "tables": list(tables), "notes": list(notes)}
    out = bench_dir() / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(out)  # a reader never sees half a file
    if show:
        print_result(result)
        print(f"[results written to {out}]")
    return out


def print_result(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"\n[bold]{result['title']}[/bold]\n{result['description']}")
    for t in result["tables"]:
        rt = Table(title=t["caption"], title_justify="left")
        for col in t["columns"]:
            rt.add_column(col)
        for row in t["rows"]:
            rt.add_row(*["" if x is None else str(x) for x in row])
        console.print(rt)
    for note in result["notes"]:
        console.print(f"- {note}", highlight=False)
