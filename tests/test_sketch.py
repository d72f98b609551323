"""Bounded drift sketches: fixed memory whatever the rows, within their stated error of the exact figures."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from recdp.drift import HEAVY_HITTERS, DriftTracker, PartitionProfile
from recdp.sketch import GRID_STEPS, HeavyHitters, LogHistogram, log_values
from tests.conftest import small_spec


def _zipf_strings(rng: np.random.Generator, rows: int, distinct: int) -> pa.Array:
    ids = np.minimum(rng.zipf(1.2, rows), distinct)
    values = pa.array([f"{i:08x}" for i in ids])
    return pa.array(values.to_pylist(), pa.string())


def test_heavy_hitters_stay_within_the_misra_gries_bound():
    rng = np.random.default_rng(0)
    capacity = 64
    summary = HeavyHitters(capacity)
    batches = [_zipf_strings(rng, 20_000, 50_000) for _ in range(10)]
    for batch in batches:
        summary.update(batch)
        assert summary._table.num_rows <= capacity  # memory: never more than capacity values
    everything = pa.chunked_array(batches)
    exact = {v: c for v, c in zip(*(x.to_pylist() for x in pa.compute.value_counts(everything).flatten()),
                                   strict=True)}
    rows = len(everything)
    bound = rows / (capacity + 1)
    top = summary.top(10)
    exact_top = sorted(exact, key=lambda v: (-exact[v], v))[:10]
    assert list(top) == exact_top  # Zipf's head is far above the bound
    for value, share in top.items():
        assert exact[value] - bound <= share * rows <= exact[value]


def test_missing_values_are_counted_as_their_own_key():
    summary = HeavyHitters(8)
    summary.update(pa.array(["a", None, None, "b", None]))
    assert summary.top(1) == {"__missing__": 0.6}


def test_log_histogram_edges_split_any_values_exactly():
    rng = np.random.default_rng(1)
    values = np.concatenate([np.zeros(3000), rng.integers(0, 50, 5000), rng.lognormal(3, 2, 5000)])
    column = pa.array(np.where(rng.random(values.size) < 0.1, np.nan, values)).cast(pa.float64())
    column = pa.array(column.to_numpy(zero_copy_only=False), pa.float64(), from_pandas=True)  # NaN -> null
    histogram = LogHistogram()
    for start in range(0, len(column), 1000):
        histogram.update(column[start:start + 1000])
    edges = histogram.quantile_edges(10)
    assert all(abs(e * GRID_STEPS - round(e * GRID_STEPS)) < 1e-9 for e in edges)  # on the grid
    logs, missing = log_values(column)
    exact = np.bincount(np.searchsorted(np.asarray(edges), logs, side="right"), minlength=len(edges) + 1)
    expected = [c / len(column) for c in exact] + [missing / len(column)]
    assert np.allclose(histogram.shares(edges), expected, atol=0)
    # Each edge is within one grid step of the exact quantile it stands for.
    quantiles = np.quantile(logs, np.linspace(0, 1, 11)[1:-1])
    assert all(min(abs(e - q) for e in edges) <= 1 / GRID_STEPS for q in quantiles)


def _criteo_like(rows: int, seed: int) -> pa.Table:
    spec = small_spec("criteo")
    rng = np.random.default_rng(seed)
    columns: dict[str, pa.Array] = {spec.label: pa.array(rng.integers(0, 2, rows))}
    for name in spec.dense:
        columns[name] = pa.array(rng.lognormal(2, 1.5, rows))
    for name in spec.categorical:
        columns[name] = _zipf_strings(rng, rows, 10_000)
    return pa.table(columns)


def test_tracker_in_batches_equals_one_table_and_its_state_is_bounded():
    spec = small_spec("criteo")
    table = _criteo_like(30_000, 2)
    whole = DriftTracker(spec, None)
    whole.update(table)
    streamed = DriftTracker(spec, None)
    for batch in table.to_batches(max_chunksize=3_000):
        streamed.update(pa.Table.from_batches([batch]))
        assert all(s._table.num_rows <= HEAVY_HITTERS for s in streamed.top_values.values())
    a, b = whole.profile(), streamed.profile()
    assert a.rows == b.rows == 30_000
    for name in spec.dense:
        assert a.dense[name].edges == b.dense[name].edges and a.dense[name].shares == b.dense[name].shares
        assert abs(a.dense[name].mean - b.dense[name].mean) < 1e-12  # sums in another order
    for name in spec.categorical:
        assert list(a.categorical[name].top)[:5] == list(b.categorical[name].top)[:5]


def test_drift_is_measured_on_the_baseline_edges():
    spec = small_spec("criteo")
    first = DriftTracker(spec, None)
    first.update(_criteo_like(20_000, 3))
    baseline = PartitionProfile.from_dict(first.profile().to_dict())  # as read back from the report
    same = DriftTracker(spec, baseline)
    same.update(_criteo_like(20_000, 4))
    assert not any(d.drifted for d in same.drift())
    shifted_table = _criteo_like(20_000, 5)
    shifted_table = shifted_table.set_column(1, "I1", pa.compute.multiply(shifted_table["I1"], 100.0))
    shifted = DriftTracker(spec, baseline)
    shifted.update(shifted_table)
    drifted = {(d.kind, d.column) for d in shifted.drift() if d.drifted}
    assert drifted == {("dense_psi", "I1")}


def test_profiles_written_before_the_sketches_still_load():
    old = {"rows": 10, "dense": {"I1": {"edges": [0.5], "shares": [0.5, 0.5, 0.0], "mean": 1.0,
                                        "missing_fraction": 0.0}},
           "categorical": {"C1": {"top": {"a": 1.0}, "distinct": 1}}}
    profile = PartitionProfile.from_dict(old)
    assert profile.categorical["C1"].top == {"a": 1.0}
