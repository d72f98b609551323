"""Partition profiles and drift between two of them, from bounded sketches filled batch by batch.

Dense columns: population stability index (PSI) over the previous day's quantile bins of log1p(value),
with "missing" as a bin of its own, so a change in the missing rate counts as drift too. A profile's edges
are quantiles of a fixed fine log grid (recdp.sketch.LogHistogram); the new day is binned exactly on the
baseline's edges while it streams.
Categorical columns: the two measures of TensorFlow Data Validation's drift comparator, over the union of both
days' top-k values (missing included): the L-infinity distance between value shares (one value's share
moving), and the Jensen-Shannon divergence (base 2, 0 to 1) of the shares with the rest of the rows as one
more bucket (many values moving at once: new popular ids that take over the old ones' traffic move no single
share far, but most of the mass). Top values come from a Misra-Gries summary of HEAVY_HITTERS values a
column: a share is at most 1 / (HEAVY_HITTERS + 1) short.

Memory is fixed per column whatever the day's rows: no list of values is ever held.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from recdp.sketch import (
    MISSING_KEY,
    HeavyHitters,
    LogHistogram,
    counts_on_edges,
    heavy_hitters_of,
    log_bins,
    log_values,
    shares_with_missing,
)
from recdp.spec import DatasetSpec

__all__ = ["MISSING_KEY", "DriftResult", "DriftTracker", "PartitionProfile", "js_top_k", "linf_top_k", "psi"]

EPSILON = 1e-4
HEAVY_HITTERS = 2048


@dataclass
class DenseProfile:
    edges: list[float]  # inner bin edges over log1p(clip(value, 0))
    shares: list[float]  # shares of rows per bin, then the missing share last
    mean: float
    missing_fraction: float


@dataclass
class CategoricalProfile:
    top: dict[str, float]  # value -> share of all rows (missing as MISSING_KEY)


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
            # Profiles written before the sketches also held an exact distinct count.
            categorical={k: CategoricalProfile(top=v["top"]) for k, v in document["categorical"].items()},
        )


def psi(expected: list[float], actual: list[float]) -> float:
    e = np.clip(np.asarray(expected), EPSILON, None)
    a = np.clip(np.asarray(actual), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _head(shares: dict[str, float], top_k: int) -> list[str]:
    return [k for k, _ in sorted(shares.items(), key=lambda item: (-item[1], item[0]))[:top_k]]


def linf_top_k(previous: dict[str, float], current: dict[str, float], top_k: int) -> float:
    keys = set(_head(previous, top_k)) | set(_head(current, top_k))
    return max((abs(previous.get(k, 0.0) - current.get(k, 0.0)) for k in keys), default=0.0)


def js_top_k(previous: dict[str, float], current: dict[str, float], top_k: int) -> float:
    """Jensen-Shannon divergence (base 2) between the shares of the union of both top-k, plus the rest."""
    keys = sorted(set(_head(previous, top_k)) | set(_head(current, top_k)))
    p = np.array([previous.get(k, 0.0) for k in keys])
    q = np.array([current.get(k, 0.0) for k in keys])
    p, q = np.append(p, max(0.0, 1.0 - p.sum())), np.append(q, max(0.0, 1.0 - q.sum()))
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        held = a > 0
        return float(np.sum(a[held] * np.log2(a[held] / m[held])))

    return min(1.0, max(0.0, 0.5 * kl(p) + 0.5 * kl(q)))


@dataclass
class DriftResult:
    column: str
    kind: str  # "dense_psi", "categorical_linf" or "categorical_js"
    value: float
    threshold: float  # the soft maximum: beyond it, a finding for the retraining policy
    hard_threshold: float  # beyond it, the day is quarantined until an operator accepts it

    @property
    def drifted(self) -> bool:
        return self.value > self.threshold

    @property
    def beyond_hard_limit(self) -> bool:
        return self.value > self.hard_threshold

    @property
    def severity(self) -> str:
        return "hard" if self.beyond_hard_limit else "soft" if self.drifted else "none"


@dataclass
class BatchDrift:
    """One batch's share of the sketches."""

    rows: int
    histograms: dict[str, tuple[np.ndarray, int, float]]  # grid counts, missing, sum of log values
    on_baseline_edges: dict[str, np.ndarray]
    top_values: dict[str, pa.Table]


class DriftTracker:
    """A day's profile and its drift from `baseline`, from the day's well-formed batches in one pass."""

    def __init__(self, spec: DatasetSpec, baseline: PartitionProfile | None) -> None:
        self.spec = spec
        self.baseline = baseline
        self.rows = 0
        self.histograms = {name: LogHistogram() for name in spec.dense}
        self.baseline_edges = {name: np.asarray(baseline.dense[name].edges, np.float64)
                               for name in spec.dense if baseline is not None and name in baseline.dense}
        self.on_baseline_edges = {name: np.zeros(len(edges) + 1, np.int64)
                                  for name, edges in self.baseline_edges.items()}
        self.top_values = {name: HeavyHitters(HEAVY_HITTERS) for name in spec.categorical}

    def measure(self, table: pa.Table) -> BatchDrift:
        """A batch's sketches; reads nothing that `add` changes, so batches can be measured in parallel."""
        histograms, on_edges = {}, {}
        for name in self.histograms:
            logs, missing = log_values(table[name])
            histograms[name] = (log_bins(logs), missing, float(logs.sum()))
            if name in self.baseline_edges:
                on_edges[name] = counts_on_edges(self.baseline_edges[name], logs)
        tops = {name: heavy_hitters_of(table[name], HEAVY_HITTERS) for name in self.top_values}
        return BatchDrift(table.num_rows, histograms, on_edges, tops)

    def add(self, batch: BatchDrift) -> None:
        self.rows += batch.rows
        for name, (counts, missing, log_sum) in batch.histograms.items():
            self.histograms[name].add(counts, missing, log_sum)
        for name, counts in batch.on_baseline_edges.items():
            self.on_baseline_edges[name] += counts
        for name, summary in batch.top_values.items():
            self.top_values[name].add(summary, batch.rows)

    def update(self, table: pa.Table) -> None:
        self.add(self.measure(table))

    def profile(self) -> PartitionProfile:
        """Bins are fixed by this day's quantiles, so the next day is compared on the same bins. Twice top-k
        values are kept, so that the next day's top values usually find their share here."""
        dense = {}
        for name, histogram in self.histograms.items():
            edges = histogram.quantile_edges(self.spec.drift.bins)
            dense[name] = DenseProfile(edges=edges, shares=histogram.shares(edges), mean=histogram.mean(),
                                       missing_fraction=histogram.missing / max(self.rows, 1))
        categorical = {name: CategoricalProfile(top=summary.top(2 * self.spec.drift.top_k))
                       for name, summary in self.top_values.items()}
        return PartitionProfile(rows=self.rows, dense=dense, categorical=categorical)

    def drift(self) -> list[DriftResult]:
        if self.baseline is None:
            return []
        rules = self.spec.drift
        results = []
        for name, counts in self.on_baseline_edges.items():
            current = shares_with_missing(counts, self.histograms[name].missing)
            results.append(DriftResult(name, "dense_psi", psi(self.baseline.dense[name].shares, current),
                                       rules.dense_psi_max, rules.dense_psi_hard_max))
        for name, summary in self.top_values.items():
            if name in self.baseline.categorical:
                before, now = self.baseline.categorical[name].top, summary.top(rules.top_k)
                results.append(DriftResult(name, "categorical_linf", linf_top_k(before, now, rules.top_k),
                                           rules.categorical_linf_max, rules.categorical_linf_hard_max))
                results.append(DriftResult(name, "categorical_js", js_top_k(before, now, rules.top_k),
                                           rules.categorical_js_max, rules.categorical_js_hard_max))
        return results
