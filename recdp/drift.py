"""Partition profiles and drift between two of them.

Dense columns: population stability index (PSI) over the previous day's quantile bins of log1p(value),
with "missing" as a bin of its own, so a change in the missing rate counts as drift too.
Categorical columns: L-infinity distance between value frequencies (missing included) over the union of
both days' top-k values, as TensorFlow Data Validation does for its drift comparator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recdp.spec import DatasetSpec

MISSING_KEY = "__missing__"
EPSILON = 1e-4


@dataclass
class DenseProfile:
    edges: list[float]  # inner bin edges over log1p(clip(value, 0))
    shares: list[float]  # shares of rows per bin, then the missing share last
    mean: float
    missing_fraction: float


@dataclass
class CategoricalProfile:
    top: dict[str, float]  # value -> share of all rows (missing as MISSING_KEY)
    distinct: int


@dataclass
class PartitionProfile:
    rows: int
    dense: dict[str, DenseProfile]
    categorical: dict[str, CategoricalProfile]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict) -> PartitionProfile:
        return cls(
            rows=document["rows"],
            dense={k: DenseProfile(**v) for k, v in document["dense"].items()},
            categorical={k: CategoricalProfile(**v) for k, v in document["categorical"].items()},
        )


def _log_values(column: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    values = column.to_numpy(zero_copy_only=False)
    present = values[~np.isnan(values)]
    return np.log1p(np.clip(present, 0, None)), values.size - present.size


def _dense_shares(log_values: np.ndarray, missing: int, edges: list[float]) -> list[float]:
    counts = np.bincount(np.searchsorted(np.asarray(edges), log_values, side="right"), minlength=len(edges) + 1)
    total = max(log_values.size + missing, 1)
    return [float(c) / total for c in counts] + [missing / total]


def _top_shares(column: pa.ChunkedArray, keep: int) -> tuple[dict[str, float], int]:
    counts = pc.value_counts(column.combine_chunks())
    values = counts.field("values").to_pylist()
    numbers = np.asarray(counts.field("counts").to_numpy(), dtype=np.float64)
    total = max(float(len(column)), 1.0)
    shares = {(MISSING_KEY if v is None else str(v)): n / total for v, n in zip(values, numbers, strict=True)}
    top = dict(sorted(shares.items(), key=lambda item: (-item[1], item[0]))[:keep])
    return top, len(values)


def profile_partition(spec: DatasetSpec, table: pa.Table) -> PartitionProfile:
    """Bins are fixed by this partition's quantiles, so the next partition is compared on the same bins."""
    dense = {}
    for name in spec.dense:
        log_values, missing = _log_values(table[name])
        if log_values.size:
            quantiles = np.quantile(log_values, np.linspace(0, 1, spec.drift.bins + 1)[1:-1])
            edges = sorted({round(float(q), 9) for q in quantiles})
        else:
            edges = []
        dense[name] = DenseProfile(
            edges=edges,
            shares=_dense_shares(log_values, missing, edges),
            mean=float(log_values.mean()) if log_values.size else 0.0,
            missing_fraction=missing / max(table.num_rows, 1),
        )
    # Keep twice top-k so that the next day's top values usually find their previous share here.
    categorical = {}
    for name in spec.categorical:
        top, distinct = _top_shares(table[name], 2 * spec.drift.top_k)
        categorical[name] = CategoricalProfile(top=top, distinct=distinct)
    return PartitionProfile(rows=table.num_rows, dense=dense, categorical=categorical)


def psi(expected: list[float], actual: list[float]) -> float:
    e = np.clip(np.asarray(expected), EPSILON, None)
    a = np.clip(np.asarray(actual), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def linf_top_k(previous: dict[str, float], current: dict[str, float], top_k: int) -> float:
    def head(shares: dict[str, float]) -> list[str]:
        return [k for k, _ in sorted(shares.items(), key=lambda item: (-item[1], item[0]))[:top_k]]

    keys = set(head(previous)) | set(head(current))
    return max((abs(previous.get(k, 0.0) - current.get(k, 0.0)) for k in keys), default=0.0)


@dataclass
class DriftResult:
    column: str
    kind: str  # "dense_psi" or "categorical_linf"
    value: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.value > self.threshold


def compare(spec: DatasetSpec, previous: PartitionProfile, table: pa.Table) -> list[DriftResult]:
    results = []
    for name in spec.dense:
        if name not in previous.dense:
            continue
        baseline = previous.dense[name]
        log_values, missing = _log_values(table[name])
        current = _dense_shares(log_values, missing, baseline.edges)
        results.append(DriftResult(name, "dense_psi", psi(baseline.shares, current), spec.drift.dense_psi_max))
    for name in spec.categorical:
        if name not in previous.categorical:
            continue
        current, _ = _top_shares(table[name], spec.drift.top_k)
        distance = linf_top_k(previous.categorical[name].top, current, spec.drift.top_k)
        results.append(DriftResult(name, "categorical_linf", distance, spec.drift.categorical_linf_max))
    return results
