"""What the request path hands to the monitor: prediction ids (one per patient; a batch call's share one
prefix), queued jobs, and the time-slotted window of counts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np


def new_prediction_id() -> str:
    return uuid.uuid4().hex


class BatchIds(list):  # type: ignore[type-arg]
    """A batch call's prediction ids, `<batch_id>-<index>`: the outcome store keeps them as one row."""

    batch_id: str
    positions: np.ndarray  # the scored patients' indexes in the request
    size: int  # patients in the request, scored or not


def batch_prediction_ids(index: Sequence[int] | np.ndarray, size: int) -> list[str]:
    """One random id per batch call, each scored patient's index in the request after it (an
    invalid patient skipped leaves a gap, never shifts the others)."""
    base = uuid.uuid4().hex
    positions = np.asarray(index, dtype=np.int64)
    ids = BatchIds(f"{base}-{i}" for i in positions.tolist())
    ids.batch_id, ids.positions, ids.size = base, positions, int(size)
    return ids


@dataclass
class Job:
    columns: Mapping[str, Any]  # request columns (fine and coarse inputs as sent), the scored rows only
    n: int
    probs: Any
    ids: list[str]
    at: float
    X: np.ndarray | None = None  # the champion's model matrix of these rows, when the request path has it


def merge_jobs(jobs: list[Job]) -> dict[str, np.ndarray]:
    """The jobs' columns end to end, as arrays (absent in a job: missing). Values of single-patient
    requests (lists) are gathered into one list per column before one conversion: an interval holds
    hundreds of them, and an array per request and column cost more than the binning."""
    keys = {k for j in jobs for k in j.columns}
    out = {}
    for k in keys:
        parts: list[np.ndarray] = []
        values: list[Any] = []
        for j in jobs:
            col = j.columns.get(k)
            if isinstance(col, np.ndarray):
                if values:
                    parts.append(_objects(values))
                    values = []
                parts.append(col.reshape(-1))
            else:
                values.extend([None] * j.n if col is None else col)
        if values:
            parts.append(_objects(values))
        # a float column stays one: encoding it again as objects cost more than the rest of a batch's monitoring
        out[k] = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return out


def merged_probabilities(jobs: list[Job]) -> np.ndarray:
    return np.concatenate([np.asarray(j.probs, dtype=float).reshape(-1) for j in jobs])


def _objects(values: list[Any]) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


class Window:
    """Counts in time slots; the window is the sum of the slots younger than window_seconds."""

    def __init__(self, size: int, seconds: float, slots: int) -> None:
        self.slot_seconds = seconds / slots
        self.slots = slots
        self.counts = np.zeros((slots, size))
        self.ids = np.full(slots, -1, dtype=np.int64)

    def add(self, counts: np.ndarray, now: float) -> None:
        sid = int(now // self.slot_seconds)
        pos = sid % self.slots
        if self.ids[pos] != sid:
            self.counts[pos] = 0
            self.ids[pos] = sid
        self.counts[pos] += counts

    def total(self, now: float) -> np.ndarray:
        sid = int(now // self.slot_seconds)
        live = self.ids > sid - self.slots
        return self.counts[live].sum(axis=0)
