"""The preprocessing job (in this test process's Spark session): outputs, stats, idempotence, refusals."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recdp.ids import FIRST_VALUE_ID
from recdp.jobs.preprocess import (
    MAX_SPLIT_SETTING,
    PreprocessError,
    balanced_split_bytes,
    process_day,
    spark_bytes,
)
from recdp.rawread import PartitionEmptyError, PartitionMissingError, read_partition
from recdp.shards import read_shards
from recdp.validate import ValidationFailed, validate_partition
from recdp.vocab import VocabularyStore
from tests.conftest import DAY, make_day, raw_file, real_rows_as_tsv, small_spec

pytestmark = pytest.mark.spark


def digest(directory: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.suffix in (".f32", ".i32"):
            sha.update(path.read_bytes())
    return sha.hexdigest()


def test_processed_outputs_stats_and_shards_agree(spark, criteo, data_root):
    make_day(criteo, data_root)
    validate_partition(criteo, data_root, DAY)
    stats = process_day(spark, criteo, data_root, DAY)
    out = data_root.processed("criteo", DAY)
    assert (out / "_SUCCESS").is_file()
    assert json.loads((out / "stats.json").read_text()) == json.loads(json.dumps(stats))
    assert stats["rows"] == stats["rows_read"] == 3000 and stats["bad_rows"] == 0
    assert sum(s["rows"] for s in stats["splits"].values()) == 3000
    assert 0.15 < stats["positive_rate"] < 0.35
    assert stats["vocab_version"] == 1
    for split, split_stats in stats["splits"].items():
        shards = read_shards(out / "shards" / split)
        assert len(shards) == split_stats["rows"] > 0
        assert shards.dense.shape == (len(shards), 13) and shards.cat.shape == (len(shards), 26)
        assert shards.dense.min() >= 0.0  # filled, clipped, log1p
        assert set(np.unique(shards.label)) <= {0.0, 1.0}
        sizes = np.array([shards.header.table_sizes[c] for c in criteo.categorical])
        assert (shards.cat >= 0).all() and (shards.cat < sizes).all()
    table = pq.read_table(out / "parquet")
    assert table.num_rows == 3000 and set(table["split"].to_pylist()) == {"train", "valid", "test"}
    c1 = stats["categorical"]["C1"]
    assert c1["vocab_size"] > FIRST_VALUE_ID and 0.9 < c1["coverage"] <= 1.0
    i12 = stats["dense"]["I12"]
    assert i12["missing_fraction"] > 0.6 and i12["mean"] >= 0


def test_rerun_is_idempotent(spark, criteo, data_root):
    make_day(criteo, data_root)
    validate_partition(criteo, data_root, DAY)
    first = process_day(spark, criteo, data_root, DAY)
    before = digest(data_root.processed("criteo", DAY))
    later = DAY + dt.timedelta(days=1)
    make_day(criteo, data_root, day=later)
    validate_partition(criteo, data_root, later)
    assert process_day(spark, criteo, data_root, later)["vocab_version"] == 2
    again = process_day(spark, criteo, data_root, DAY)
    assert again["vocab_version"] == first["vocab_version"] == 1
    assert digest(data_root.processed("criteo", DAY)) == before
    assert not list(data_root.processed("criteo", DAY).parent.glob(".staging-*"))


def test_same_value_gets_same_id_on_two_days(spark, criteo, data_root):
    later = DAY + dt.timedelta(days=1)
    for day in (DAY, later):
        make_day(criteo, data_root, day=day, seed=3)
        validate_partition(criteo, data_root, day)
        process_day(spark, criteo, data_root, day)
    store = VocabularyStore(data_root.vocab("criteo"), criteo.categorical, "bigint")
    mapping = {r["value"]: r["id"] for r in store.latest().load(spark, "bigint").where("column = 'C3'").collect()}
    raw = {day: Counter(read_partition(criteo, data_root.raw("criteo", day)).table["C3"].to_pylist())
           for day in (DAY, later)}
    processed = {day: Counter(pq.read_table(data_root.processed("criteo", day) / "parquet")["C3"].to_pylist())
                 for day in (DAY, later)}
    shared = [v for v, n in raw[DAY].most_common(30)
              if v is not None and n >= criteo.preprocess.freq_threshold and v in raw[later]]
    assert len(shared) >= 10
    for value in shared:
        value_id = mapping[int(value, 16)]
        assert processed[DAY][value_id] == raw[DAY][value]
        assert processed[later][value_id] == raw[later][value]


def test_refuses_unvalidated_and_quarantined_partitions(spark, criteo, data_root):
    make_day(criteo, data_root)
    with pytest.raises(PreprocessError, match="no validation report"):
        process_day(spark, criteo, data_root, DAY)
    path = raw_file(criteo, data_root)
    path.write_text(path.read_text().replace("\n0\t", "\n2\t", 3))
    with pytest.raises(ValidationFailed):
        validate_partition(criteo, data_root, DAY)
    with pytest.raises(PreprocessError, match="failed validation"):
        process_day(spark, criteo, data_root, DAY)
    assert not data_root.processed("criteo", DAY).exists()
    assert not data_root.vocab("criteo").exists()


def test_a_failed_attempt_of_the_job_records_its_cost_too(spark, criteo, data_root):
    from recdp.jobs.preprocess import main

    make_day(criteo, data_root)
    with pytest.raises(PreprocessError, match="no validation report"):
        main(["--dataset", "criteo", "--day", DAY.isoformat(), "--data", str(data_root.root),
              "--cost-run", "manual__failed", "--cost-attempt", "1"], spark=spark)
    [record] = data_root.costs("criteo", DAY, "manual__failed").glob("preprocess*.json")
    assert record.name == "preprocess.try1.json"
    cost = json.loads(record.read_text())
    assert cost["stage"] == "preprocess" and cost["cpu_seconds"] >= 0 and "driver" in cost["parts"], cost


def test_too_many_malformed_rows_leave_no_output(spark, criteo, data_root):
    make_day(criteo, data_root)
    path = raw_file(criteo, data_root)
    lines = path.read_text().splitlines()
    path.write_text("".join((line[:40] if i % 10 == 0 else line) + "\n" for i, line in enumerate(lines)))
    with pytest.raises(PreprocessError, match="malformed rows exceed"):
        process_day(spark, criteo, data_root, DAY, require_validation=False)
    assert not data_root.processed("criteo", DAY).parent.exists() or not any(
        data_root.processed("criteo", DAY).parent.iterdir())


def test_missing_and_empty_partitions(spark, criteo, data_root):
    with pytest.raises(PartitionMissingError):
        process_day(spark, criteo, data_root, DAY, require_validation=False)
    empty = data_root.raw("criteo", DAY) / "part-00000.tsv"
    empty.parent.mkdir(parents=True)
    empty.write_text("")
    with pytest.raises(PartitionEmptyError):
        process_day(spark, criteo, data_root, DAY, require_validation=False)


def test_real_criteo_rows(spark, criteo, data_root):
    real_rows_as_tsv(data_root)
    validate_partition(criteo, data_root, DAY)
    stats = process_day(spark, criteo, data_root, DAY)
    assert stats["rows"] == 200 and abs(stats["positive_rate"] - 49 / 200) < 1e-9
    # freq_threshold 2: a value seen once in 200 rows is out of vocabulary, so coverage is below 1.
    assert stats["categorical"]["C3"]["coverage"] < 0.5 < stats["categorical"]["C1"]["coverage"]


def test_second_spec_shape_end_to_end(spark, data_root):
    spec = small_spec("shop_clicks")
    make_day(spec, data_root, rows=1500)
    validate_partition(spec, data_root, DAY)
    stats = process_day(spark, spec, data_root, DAY)
    shards = read_shards(data_root.processed("shop_clicks", DAY) / "shards" / "train")
    assert shards.header.dense_columns == ["price_cents", "item_age_days", "views_7d"]
    assert shards.cat.shape[1] == 5 and stats["rows"] == 1500
    assert abs(stats["splits"]["train"]["rows"] / 1500 - 0.7) < 0.05


def test_a_day_counted_in_spark_gives_what_a_small_day_counted_on_the_driver_gives(spark, criteo, data_root,
                                                                                    monkeypatch):
    """Days above SMALL_DAY_BYTES are counted by a Spark aggregation and their vocabulary resolved by a Spark
    anti-join; smaller days on the driver. The same day through both paths: the same bytes and stats."""
    import shutil

    import recdp.jobs.preprocess as job

    make_day(criteo, data_root, rows=4000)
    with open(raw_file(criteo, data_root), "a") as raw:
        raw.write("".join(f"bad line {n}\n" for n in range(7)))
    validate_partition(criteo, data_root, DAY)
    outputs = {}
    for path, limit in (("driver", job.SMALL_DAY_BYTES), ("spark", 0)):
        monkeypatch.setattr(job, "SMALL_DAY_BYTES", limit)
        shutil.rmtree(data_root.processed("criteo", DAY), ignore_errors=True)
        shutil.rmtree(data_root.vocab("criteo"), ignore_errors=True)
        stats = process_day(spark, criteo, data_root, DAY)
        stats.pop("seconds")
        outputs[path] = (digest(data_root.processed("criteo", DAY) / "shards"), stats)
    assert outputs["driver"] == outputs["spark"]
    assert outputs["spark"][1]["bad_rows"] == 7 and outputs["spark"][1]["rows"] == 4000
    assert outputs["spark"][1]["vocab_version"] == 1


def test_a_day_is_cut_into_equal_splits_per_task_slot_and_its_output_does_not_depend_on_them(spark, criteo,
                                                                                               data_root):
    make_day(criteo, data_root)
    validate_partition(criteo, data_root, DAY)
    processed = data_root.processed("criteo", DAY)
    one_split = process_day(spark, criteo, data_root, DAY)
    assert len(list((processed / "parquet").glob("part-*.parquet"))) == 1  # a small day stays one split
    one_split_digest = digest(processed)
    shutil.rmtree(processed)
    shutil.rmtree(data_root.vocab("criteo"))

    raw_bytes = raw_file(criteo, data_root).stat().st_size
    spark.conf.set(MAX_SPLIT_SETTING, "100k")
    try:
        many = process_day(spark, criteo, data_root, DAY)
        assert spark.conf.get(MAX_SPLIT_SETTING) == "100k"  # the session's own setting is back
    finally:
        spark.conf.unset(MAX_SPLIT_SETTING)
    slots = spark.sparkContext.defaultParallelism
    splits = len(list((processed / "parquet").glob("part-*.parquet")))
    assert splits == balanced_split_count(raw_bytes, slots, 100 << 10) and splits % slots == 0 and splits > slots
    # Splits are consecutive byte ranges written at offsets in their order: the same shards, ids and stats.
    assert digest(processed) == one_split_digest
    assert {k: v for k, v in many.items() if k not in ("seconds", "dense")} == {
        k: v for k, v in one_split.items() if k not in ("seconds", "dense")}
    for column, summary in one_split["dense"].items():  # sums taken in another order: the last bits differ
        numbers = {k: v for k, v in summary.items() if k != "transform"}
        assert {k: many["dense"][column][k] for k in numbers} == pytest.approx(numbers, rel=1e-9)


def test_a_small_day_runs_each_pass_as_one_task_whatever_its_files(spark, criteo, data_root, monkeypatch):
    """ONE_TASK_BYTES: one split (and one reduce task) instead of one per slot or file, and the same output."""
    import recdp.jobs.preprocess as job

    make_day(criteo, data_root, rows=4000)
    first = raw_file(criteo, data_root)
    lines = first.read_text().splitlines(keepends=True)
    first.write_text("".join(lines[:2000]))
    (first.parent / first.name.replace("00000", "00001")).write_text("".join(lines[2000:]))
    validate_partition(criteo, data_root, DAY)
    monkeypatch.setattr(job, "SMALL_DAY_BYTES", 0)  # its counts are summed by reduce tasks, as a larger day's
    processed = data_root.processed("criteo", DAY)
    outputs = {}
    for arm in ("one task", "per slot and file"):
        if arm != "one task":
            monkeypatch.setattr(job, "ONE_TASK_BYTES", 0)
            shutil.rmtree(processed)
            shutil.rmtree(data_root.vocab("criteo"))
        stats = process_day(spark, criteo, data_root, DAY)
        assert spark.conf.get("spark.sql.files.minPartitionNum", None) is None  # the session's settings are back
        parts = len(list((processed / "parquet").glob("part-*.parquet")))
        outputs[arm] = (parts, digest(processed), {k: v for k, v in stats.items() if k not in ("seconds", "dense")})
    assert outputs["one task"][0] == 1 and outputs["per slot and file"][0] == 2
    assert outputs["one task"][1:] == outputs["per slot and file"][1:]


def balanced_split_count(raw_bytes: int, slots: int, max_split_bytes: int) -> int:
    size = balanced_split_bytes(raw_bytes, slots, max_split_bytes)
    return -(-raw_bytes // size)


@pytest.mark.parametrize(("raw_bytes", "slots", "expected"), [
    (465 << 20, 2, 465 << 18),          # 4 equal splits, not 128 + 128 + 128 + 81 MB
    (465 << 20, 1, -(-(465 << 20) // 4)),  # one slot: the same 4 splits
    (465 << 20, 64, -(-(465 << 20) // 64)),  # a cluster: one split per slot
    (100 << 20, 2, 50 << 20),           # below the maximum, one per slot
    (1 << 20, 2, 4 << 20),              # a small day: one split (Spark's 4 MB floor)
])
def test_balanced_split_bytes(raw_bytes, slots, expected):
    size = balanced_split_bytes(raw_bytes, slots, 128 << 20)
    assert size == expected
    assert size <= 128 << 20


@pytest.mark.parametrize(("setting", "expected"), [
    ("128MB", 128 << 20), ("64m", 64 << 20), ("134217728b", 134217728), ("1048576", 1 << 20), ("1g", 1 << 30),
    (" 100k ", 100 << 10)])
def test_spark_bytes(setting, expected):
    assert spark_bytes(setting) == expected


@pytest.mark.parametrize("setting", ["", "12.5MB", "MB", "10 zb", "-5m"])
def test_spark_bytes_refuses_what_is_not_a_size(setting):
    with pytest.raises(ValueError, match="not a Spark size"):
        spark_bytes(setting)
