"""Bounded-memory summaries of a column, filled batch by batch: memory is fixed whatever the day's rows.

- `LogHistogram`: counts of log1p(max(value, 0)) on a fixed grid of GRID_STEPS bins per unit, so that
  quantile edges snapped to the grid split any later day's values exactly (a value is below edge m/STEPS
  exactly when its grid bin is below m).
- `HeavyHitters`: the Misra-Gries summary (mergeable, as Agarwal et al. 2012 show), over Arrow: at most
  `capacity` values with counts, each count short of the true one by at most rows / (capacity + 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

GRID_STEPS = 128  # bins per unit of log1p(value): 1/128 is finer than log1p(n+1) - log1p(n) up to n ~ 127
GRID_TOP = 32.0  # log1p(value) beyond this (value > 7.9e13) shares the last bin
GRID_BINS = int(GRID_TOP * GRID_STEPS)
MISSING_KEY = "__missing__"


def log_values(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """log1p(max(value, 0)) of the present values, and how many were missing."""
    numbers = pc.drop_null(values).to_numpy()
    numbers = numbers[~np.isnan(numbers)] if numbers.dtype.kind == "f" else numbers
    return np.log1p(np.clip(numbers, 0, None)), len(values) - numbers.size


def log_bins(logs: np.ndarray) -> np.ndarray:
    """A batch's counts on the grid."""
    return np.bincount(np.minimum((logs * GRID_STEPS).astype(np.int64), GRID_BINS - 1), minlength=GRID_BINS)


@dataclass
class LogHistogram:
    counts: np.ndarray = field(default_factory=lambda: np.zeros(GRID_BINS, np.int64))
    missing: int = 0
    log_sum: float = 0.0

    def add(self, counts: np.ndarray, missing: int, log_sum: float) -> None:
        self.counts += counts
        self.missing += missing
        self.log_sum += log_sum

    def update(self, values: pa.Array | pa.ChunkedArray) -> None:
        logs, missing = log_values(values)
        self.add(log_bins(logs), missing, float(logs.sum()))

    @property
    def present(self) -> int:
        return int(self.counts.sum())

    def quantile_edges(self, bins: int) -> list[float]:
        """Inner edges that split the present values into about `bins` equal shares: each edge is the lower
        boundary of the grid bin where its quantile falls, so ties stay together on the upper side."""
        present = self.present
        if present == 0:
            return []
        cumulative = np.cumsum(self.counts)
        targets = np.linspace(0, 1, bins + 1)[1:-1] * present
        indices = np.searchsorted(cumulative, targets, side="left")
        return sorted({float(i) / GRID_STEPS for i in indices})

    def shares(self, edges: list[float]) -> list[float]:
        """Shares of all rows below, between and above `edges` (grid edges), then the missing share."""
        boundaries = np.round(np.asarray(edges, np.float64) * GRID_STEPS).astype(np.int64)
        cumulative = np.concatenate([[0], np.cumsum(self.counts)])
        cuts = np.concatenate([[0], np.clip(boundaries, 0, GRID_BINS), [GRID_BINS]])
        counts = np.diff(cumulative[cuts])
        total = max(self.present + self.missing, 1)
        return [float(c) / total for c in counts] + [self.missing / total]

    def mean(self) -> float:
        return self.log_sum / self.present if self.present else 0.0


def counts_on_edges(edges: np.ndarray, logs: np.ndarray) -> np.ndarray:
    """Counts of log values below, between and above `edges`, exact whatever the edges are."""
    return np.bincount(np.searchsorted(edges, logs, side="right"), minlength=len(edges) + 1)


def shares_with_missing(counts: np.ndarray, missing: int) -> list[float]:
    total = max(int(counts.sum()) + missing, 1)
    return [float(c) / total for c in counts] + [missing / total]


def _decrement(table: pa.Table, capacity: int) -> pa.Table:
    """Misra-Gries's step: subtract the (capacity+1)-th largest count from all, keep what stays positive."""
    if table.num_rows <= capacity:
        return table
    counts = table["count"].to_numpy()
    cut = np.partition(counts, counts.size - capacity - 1)[counts.size - capacity - 1]
    kept = table.filter(pc.greater(table["count"], cut))
    return kept.set_column(1, "count", pc.subtract(kept["count"], cut))


def heavy_hitters_of(values: pa.Array | pa.ChunkedArray, capacity: int) -> pa.Table:
    """A batch's Misra-Gries summary (columns value: string, count: int64); missing values count as
    MISSING_KEY."""
    counted = pc.value_counts(pc.cast(values, pa.string()).fill_null(MISSING_KEY))
    table = pa.table({"value": counted.field("values"), "count": pc.cast(counted.field("counts"), pa.int64())})
    return _decrement(table, capacity)


@dataclass
class HeavyHitters:
    capacity: int
    rows: int = 0
    _table: pa.Table | None = None  # columns value, count

    def add(self, summary: pa.Table, rows: int) -> None:
        """Merges a batch's summary (`heavy_hitters_of`) of `rows` rows."""
        self.rows += rows
        if self._table is not None:
            summary = pa.concat_tables([self._table, summary]).group_by("value").aggregate(
                [("count", "sum")]).rename_columns(["value", "count"])
        self._table = _decrement(summary, self.capacity)

    def update(self, values: pa.Array | pa.ChunkedArray) -> None:
        self.add(heavy_hitters_of(values, self.capacity), len(values))

    def top(self, keep: int) -> dict[str, float]:
        """The `keep` most frequent values with their shares of all rows, most frequent first (ties by value)."""
        if self._table is None or self.rows == 0:
            return {}
        ranked = self._table.sort_by([("count", "descending"), ("value", "ascending")]).slice(0, keep)
        return {value: count / self.rows
                for value, count in zip(ranked["value"].to_pylist(), ranked["count"].to_pylist(), strict=True)}
