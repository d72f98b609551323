"""Persistent vocabularies: ids never change, versions append, reruns reuse their version."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from recdp.ids import MISSING_ID, OOV_ID
from recdp.vocab import VocabularyStore

pytestmark = pytest.mark.spark

DAY_A, DAY_B = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
PARTITION_A = [("x", "p"), ("x", "p"), ("y", "p"), ("y", None), ("z", "q")]
PARTITION_B = [("x", "q"), ("w", "q"), ("w", "r"), ("y", "r"), ("v", None)]


def frame(spark, rows):
    return spark.createDataFrame(rows, "c string, d string")


def ids(spark, store: VocabularyStore, version: int) -> dict[tuple[str, str], int]:
    rows = store.version(version).load(spark, "string").collect()
    return {(r["column"], r["value"]): r["id"] for r in rows}


@pytest.mark.parametrize("order", [(DAY_A, DAY_B), (DAY_B, DAY_A)], ids=["a-then-b", "b-then-a"])
def test_shared_values_keep_one_id_in_either_order(spark, tmp_path, order):
    store = VocabularyStore(tmp_path / "vocab", ["c", "d"])
    partitions = {DAY_A: PARTITION_A, DAY_B: PARTITION_B}
    first, second = order
    v1 = store.resolve(spark, frame(spark, partitions[first]), first, freq_threshold=1)
    before = ids(spark, store, v1.version)
    v2 = store.resolve(spark, frame(spark, partitions[second]), second, freq_threshold=1)
    after = ids(spark, store, v2.version)
    assert v2.version == v1.version + 1
    for key, value in before.items():
        assert after[key] == value  # append-only: the first day's ids are untouched
    for column in ("c", "d"):
        column_ids = sorted(i for (c, _), i in after.items() if c == column)
        assert column_ids == list(range(2, 2 + len(column_ids)))  # contiguous, after 0 and 1
        assert v2.table_sizes[column] == 2 + len(column_ids)
    # Both days' values are in the vocabulary the second day maps with, so shared values ("x", "y", "q")
    # get the same id in both days' outputs.
    for key in [("c", "x"), ("c", "y"), ("d", "q")]:
        assert key in after


def test_frequency_threshold_and_deterministic_order(spark, tmp_path):
    store = VocabularyStore(tmp_path / "vocab", ["c", "d"])
    version = store.resolve(spark, frame(spark, PARTITION_A), DAY_A, freq_threshold=2)
    assert ids(spark, store, version.version) == {("c", "x"): 2, ("c", "y"): 3, ("d", "p"): 2}


def test_rerun_reuses_the_version_it_made(spark, tmp_path):
    store = VocabularyStore(tmp_path / "vocab", ["c", "d"])
    v1 = store.resolve(spark, frame(spark, PARTITION_A), DAY_A, freq_threshold=1)
    v2 = store.resolve(spark, frame(spark, PARTITION_B), DAY_B, freq_threshold=1)
    rerun = store.resolve(spark, frame(spark, PARTITION_A), DAY_A, freq_threshold=1)
    assert rerun.version == v1.version < v2.version
    assert store.latest().version == v2.version


def test_day_without_new_values_makes_no_version(spark, tmp_path):
    store = VocabularyStore(tmp_path / "vocab", ["c", "d"])
    v1 = store.resolve(spark, frame(spark, PARTITION_A), DAY_A, freq_threshold=1)
    same = store.resolve(spark, frame(spark, PARTITION_A[:2]), DAY_B, freq_threshold=1)
    assert same.version == v1.version
    assert sorted(p.name for p in (tmp_path / "vocab").glob("v*")) == ["v00001"]


def test_a_ten_million_value_column_and_snapshots_that_stand_for_older_versions(spark, tmp_path):
    """Counting and id assignment at Criteo's largest cardinality (10M distinct values in one column). A
    version's vocabulary is read from the newest snapshot, restricted to its ids, so pruned snapshots lose
    nothing, and a day reads one file per column however long the history."""
    store = VocabularyStore(tmp_path / "vocab", ["c"], "bigint")
    wide = spark.range(10_000_000).selectExpr("id * 7 as c")  # 10M distinct values, each seen once
    first = store.resolve(spark, wide, DAY_A, freq_threshold=1)
    assert first.table_sizes == {"c": 10_000_002}
    column = first.column_table("c")
    assert column.num_rows == 10_000_000
    ids = np.sort(column["id"].to_numpy())
    assert ids[0] == 2 and ids[-1] == 10_000_001 and len(np.unique(ids)) == 10_000_000
    lookup = first.lookup("c")
    found = lookup.ids(pa.array([0, 7, 69_999_993, 5, None], pa.int64())).tolist()
    assert min(found[:3]) >= 2 and len(set(found[:3])) == 3 and found[3:] == [OOV_ID, MISSING_ID]
    # Four more days, each with one new value: older snapshots are pruned, every version still resolves.
    versions = [first]
    for offset in range(1, 5):
        day = DAY_A + dt.timedelta(days=offset)
        frame = spark.createDataFrame([(-offset,)], "c bigint")
        versions.append(store.resolve(spark, frame, day, freq_threshold=1))
    assert [v.version for v in versions] == [1, 2, 3, 4, 5]
    assert sorted(p.parent.name for p in (tmp_path / "vocab").glob("v*/snapshot")) == ["v00003", "v00004", "v00005"]
    for version in versions:
        table = store.version(version.version).column_table("c")
        assert table.num_rows == 10_000_000 + version.version - 1
        assert table["id"].to_numpy().max() == version.table_sizes["c"] - 1


def test_small_days_resolved_on_the_driver_get_the_ids_spark_gives(spark, tmp_path):
    """A small day's counts are resolved on the driver (no Spark job); the ids are the same either way."""
    from recdp.vocab import count_values

    results = {}
    for where in ("spark", "driver"):
        store = VocabularyStore(tmp_path / where, ["c", "d"])
        for day, rows in ((DAY_A, PARTITION_A), (DAY_B, PARTITION_B), (DAY_B + dt.timedelta(days=1), PARTITION_A)):
            counts = count_values(frame(spark, rows), ["c", "d"])
            store.resolve_counts(spark, counts if where == "spark" else counts.toArrow(), day, freq_threshold=1)
        results[where] = (store.latest().version, ids(spark, store, store.latest().version))
    assert results["driver"] == results["spark"] and results["spark"][0] == 2
