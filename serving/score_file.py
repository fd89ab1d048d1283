"""Offline scoring of a cohort file (`pverisk score`): the service's own validation and scoring
(serving/columnar.py over RiskModel), on a Parquet file, into a Parquet file."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from feature_store import contract as c
from serving.settings import ServingSettings

# Cohort columns that are not inputs and are not reported as unknown (dates, outcome, oracle,
# post-PVE features ...).
KNOWN_OTHER = {c.PATIENT_ID, *c.NON_FEATURE_COLUMNS, *c.feature_names(None)}


class UnreadableFile(ValueError):
    """The input is not a Parquet file we can read: one line for the user, no traceback."""


@dataclass
class ScoreResult:
    rows_in: int
    scored: int
    invalid: dict[int, list[dict[str, str]]] = field(default_factory=dict)  # 0-based row -> problems
    column_problems: list[dict[str, str]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    unused_inputs: list[str] = field(default_factory=list)
    post_decision_columns: list[str] = field(default_factory=list)  # contract features known only after PVE
    written: Path | None = None
    seconds: float = 0.0  # validating, scoring and writing
    total_seconds: float = 0.0  # with loading the model and reading the file
    model: dict[str, str] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.scored / self.seconds if self.seconds else 0.0


def load_risk_model(model_tag: str | None = None, settings: ServingSettings | None = None) -> Any:
    """The RiskModel of a BentoML store model (default: as the service picks it)."""
    from serving.import_model import newest_champion_tag
    from serving.stored import load_risk

    settings = settings or ServingSettings()
    return load_risk(model_tag or settings.model_tag or newest_champion_tag(), settings)


def score_file(data: Path, out: Path, model_tag: str | None = None, explain: bool = True, partial: bool = False,
               chunk_rows: int = 20_000, progress: Callable[[int, int], None] | None = None) -> ScoreResult:
    """Validate every row of `data` and score it. Any invalid row: nothing written unless `partial`
    (then invalid rows are written with their problems and no probability). `progress(done, total)`
    is called after each chunk."""
    import pyarrow.parquet as pq

    from serving.columnar import check_frame, table_columns
    from serving.columnar_answer import arrow_table

    t_start = time.perf_counter()
    accepted = tuple(c.feature_names())
    risk = load_risk_model(model_tag)
    table_in = _read_parquet(data)
    columns = table_columns(table_in.select([n for n in table_in.column_names if n in accepted]))
    n_rows = table_in.num_rows
    t0 = time.perf_counter()
    used = tuple(c.input_names(risk.features))
    ignored = [col for col in table_in.column_names if col not in accepted]
    ids = table_in.column(c.PATIENT_ID) if c.PATIENT_ID in table_in.column_names else None
    checked = check_frame(columns, n_rows, risk, accepted, used, json_types=False)
    post = set(c.feature_names(None)) - set(accepted)
    result = ScoreResult(n_rows, 0, checked.problems, checked.column_problems,
                         [col for col in ignored if col not in KNOWN_OTHER], checked.unused,
                         post_decision_columns=[col for col in ignored if col in post], model=risk.identity.as_dict())
    if checked.invalid and not partial:
        result.seconds, result.total_seconds = time.perf_counter() - t0, time.perf_counter() - t_start
        return result
    valid = checked.valid
    table = _scored_table(risk, checked, chunk_rows, explain, progress, n_rows)
    if partial and checked.invalid:
        table = _with_invalid_rows(table, checked)
    table = _in_row_order(table, ids)
    table = arrow_table({name: table.column(name) for name in table.column_names}, risk, {
        "source": Path(data).name, "rows_in": n_rows, "n_scored": len(valid), "n_invalid": len(checked.invalid),
        "explanations": explain})
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    result.scored = len(valid)
    result.written = out
    result.seconds, result.total_seconds = time.perf_counter() - t0, time.perf_counter() - t_start
    return result


def _read_parquet(data: Path) -> Any:
    """The input table, or UnreadableFile with one line (a CSV given by mistake is the usual case)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(data)
    except (pa.ArrowException, OSError) as exc:
        hint = " (a CSV? convert it to Parquet, e.g. with pandas)" if Path(data).suffix.lower() in (".csv", ".txt") \
            else ""
        raise UnreadableFile(f"{Path(data).name} is not a readable Parquet file{hint}: {str(exc)[:200]}") from None


def _scored_table(risk: Any, checked: Any, chunk_rows: int, explain: bool,
                  progress: Callable[[int, int], None] | None, n_rows: int) -> Any:
    """The valid rows scored chunk by chunk (memory stays bounded on large files), `index` renamed `row`;
    None when no row is valid in a file that has rows."""
    import pyarrow as pa

    from serving.columnar_answer import arrow_columns, result_columns

    valid = checked.valid
    parts = []
    if progress:
        progress(0, len(valid))
    for start in range(0, len(valid), chunk_rows):
        stop = min(start + chunk_rows, len(valid))
        cols = {k: v[start:stop] for k, v in checked.columns.items()}
        scored = risk.score_arrays(cols, stop - start, explain=explain)
        parts.append(arrow_columns(result_columns(scored, risk, valid[start:stop], arrow=True)))
        if progress:
            progress(stop, len(valid))
    table = pa.concat_tables(parts) if parts else None
    if n_rows == 0:  # an export with no patients: an empty answer with its notice, not an error
        table = pa.table({"index": pa.array([], pa.int64()), "probability": pa.array([], pa.float64()),
                          "risk_band": pa.array([], pa.string())})
    if table is not None:
        table = table.rename_columns(["row" if n == "index" else n for n in table.column_names])
    return table


def _with_invalid_rows(table: Any, checked: Any) -> Any:
    """`partial`: the invalid rows added with their problems in one text column and no probability."""
    import pyarrow as pa

    bad = np.array(checked.invalid, dtype=np.int64)
    problems = ["; ".join(f"{p['field']}: {p['problem']}" for p in [*checked.problems.get(int(i), []),
                                                                      *checked.column_problems])
                for i in bad]
    invalid_table = pa.table({"row": bad, "errors": problems})
    return invalid_table if table is None else pa.concat_tables([table, invalid_table], promote_options="default")


def _in_row_order(table: Any, ids: Any) -> Any:
    """Rows back in the file's order, with the patient id first when the file has one."""
    import pyarrow as pa

    assert table is not None
    order = np.argsort(table.column("row").to_numpy())
    table = table.take(pa.array(order))
    if ids is not None:
        table = table.add_column(0, c.PATIENT_ID, ids.take(table.column("row")))
    return table
