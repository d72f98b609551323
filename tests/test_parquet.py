"""Parquet partitions (`raw.type: parquet`): columns by name, types checked, the same malformed and
validation rules as delimited text, and the same preprocessing outputs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from recdp.jobs.preprocess import main as preprocess_main
from recdp.rawread import read_partition
from recdp.shards import read_shards
from recdp.spec import DatasetSpec
from recdp.storage import DataRoot
from recdp.validate import REPORT, ValidationFailed, validate_partition
from tests.conftest import DAY, make_day, small_spec


def parquet_spec(name: str = "criteo") -> DatasetSpec:
    spec = small_spec(name)
    return spec.model_copy(update={"raw": spec.raw.model_copy(update={"type": "parquet", "header": False})})


def to_parquet(text_spec: DatasetSpec, root: DataRoot, *, shuffle_columns: bool = True,
               change=None) -> tuple[DataRoot, pa.Table]:
    """The day of `root` (delimited text) rewritten as Parquet in a new root, typed as a data lake holds it:
    label int8, dense int64 (nulls for missing), categorical strings, columns in another order, two files."""
    table = read_partition(text_spec, root.raw(text_spec.name, DAY)).table
    typed = {text_spec.label: pc.cast(table[text_spec.label], pa.int8()),
             **{n: pc.cast(table[n], pa.int64()) for n in text_spec.dense},
             **{n: table[n] for n in text_spec.categorical}}
    names = list(typed)[::-1] if shuffle_columns else list(typed)
    lake = pa.table({n: typed[n] for n in names + []}).append_column("extra_column", pa.repeat(pa.scalar("x"),
                                                                                              table.num_rows))
    if change is not None:
        lake = change(lake)
    target_root = DataRoot(root.root.parent / "lake")
    folder = target_root.raw(text_spec.name, DAY)
    folder.mkdir(parents=True)
    half = lake.num_rows // 2
    pq.write_table(lake.slice(0, half), folder / "part-00000.parquet", row_group_size=500)
    pq.write_table(lake.slice(half), folder / "part-00001.parquet", row_group_size=500)
    return target_root, table


def test_a_parquet_day_validates_like_its_text(data_root):
    text = small_spec("criteo")
    make_day(text, data_root, rows=3000)
    lake, _ = to_parquet(text, data_root)
    from_text = validate_partition(text, data_root, DAY)
    from_parquet = validate_partition(parquet_spec(), lake, DAY)
    assert from_parquet.status == "passed" and from_parquet.rows_total == from_parquet.rows_valid == 3000
    types = [c for c in from_parquet.checks if c.check == "column_types_match_spec"]
    assert len(types) == 1 and types[0].success
    assert [(c.check, c.column, c.success, c.details.get("unexpected_count")) for c in from_parquet.checks
            if c is not types[0]] == \
        [(c.check, c.column, c.success, c.details.get("unexpected_count")) for c in from_text.checks]
    assert from_parquet.profile["categorical"] == from_text.profile["categorical"]
    for name, dense in from_text.profile["dense"].items():
        theirs = from_parquet.profile["dense"][name]
        assert (theirs["edges"], theirs["shares"]) == (dense["edges"], dense["shares"])
        assert theirs["mean"] == pytest.approx(dense["mean"], rel=1e-12)  # summed over other batches


def test_unreadable_values_are_malformed_in_parquet_too(data_root):
    text = small_spec("criteo")
    make_day(text, data_root, rows=3000)

    def damage(lake: pa.Table) -> pa.Table:
        original = pc.cast(lake["I1"], pa.float64()).combine_chunks()
        missing = original.is_null().to_numpy(zero_copy_only=False).copy()
        dense = original.fill_null(0.0).to_numpy().copy()
        dense[:10] = np.nan  # a value present but not a number
        dense[10:15] = np.inf
        missing[:15] = False
        label = lake["label"].to_pylist()
        label[20:25] = [None] * 5  # no label
        lake = lake.set_column(lake.column_names.index("I1"), "I1", pa.array(dense, mask=missing))
        return lake.set_column(lake.column_names.index("label"), "label", pa.array(label, pa.int8()))

    lake, _ = to_parquet(text, data_root, change=damage)
    report = validate_partition(parquet_spec(), lake, DAY)
    assert report.bad_rows == 20 and report.rows_valid == 2980 and report.status == "passed"


def test_wrong_types_and_missing_columns_fail_with_a_clear_report(data_root):
    text = small_spec("criteo")
    make_day(text, data_root, rows=1000)

    def as_lists(lake: pa.Table) -> pa.Table:
        wrapped = pa.ListArray.from_arrays(pa.array(np.arange(lake.num_rows + 1, dtype=np.int32)),
                                           lake["I2"].combine_chunks())
        return lake.set_column(lake.column_names.index("I2"), "I2", wrapped)

    lake, _ = to_parquet(text, data_root, change=as_lists)
    with pytest.raises(ValidationFailed) as failure:
        validate_partition(parquet_spec(), lake, DAY)
    failed = {(c.check, c.column) for c in failure.value.report.failed_checks}
    assert ("column_types_match_spec", None) in failed
    assert "I2" in str(failure.value) and "list" in str(failure.value)
    assert (lake.quarantine("criteo", DAY) / REPORT).is_file()

    (data_root.root.parent / "lake").rename(data_root.root.parent / "lake-types")
    lake, _ = to_parquet(text, data_root, change=lambda t: t.drop_columns(["C26"]))
    with pytest.raises(ValidationFailed) as failure:
        validate_partition(parquet_spec(), lake, DAY)
    assert ("expect_table_columns_to_match_ordered_list", None) in \
        {(c.check, c.column) for c in failure.value.report.failed_checks}


@pytest.mark.spark
def test_the_job_gives_a_parquet_day_the_same_rows_and_ids_as_its_text(data_root, spark, tmp_path, monkeypatch):
    from recdp.jobs import preprocess as job

    monkeypatch.setattr(job, "SMALL_DAY_BYTES", 0)  # the Spark aggregation path (the driver's is shared code)
    text = small_spec("criteo")
    make_day(text, data_root, rows=4000)
    lake, _ = to_parquet(text, data_root)
    text_file, lake_file = tmp_path / "text.yaml", tmp_path / "lake.yaml"
    text_file.write_text(json.dumps(text.model_dump(mode="json")))
    lake_file.write_text(json.dumps(parquet_spec().model_dump(mode="json")))
    validate_partition(text, data_root, DAY)
    validate_partition(parquet_spec(), lake, DAY)
    from_text = preprocess_main(["--dataset", str(text_file), "--day", DAY.isoformat(), "--data",
                                 str(data_root.root)], spark=spark)[0]
    from_lake = preprocess_main(["--dataset", str(lake_file), "--day", DAY.isoformat(), "--data",
                                 str(lake.root)], spark=spark)[0]
    assert from_lake["rows"] == from_text["rows"] == 4000
    assert {c: v["vocab_size"] for c, v in from_lake["categorical"].items()} == \
        {c: v["vocab_size"] for c, v in from_text["categorical"].items()}

    def all_rows(root: DataRoot) -> np.ndarray:
        parts = []
        for split in ("train", "valid", "test"):
            shard = read_shards(root.processed("criteo", DAY) / "shards" / split)
            parts.append(np.column_stack([shard.label, shard.dense, shard.cat.astype(np.float32)]))
        rows = np.concatenate(parts)
        return rows[np.lexsort(rows.T[::-1])]

    # The splits differ (the text's hash is of its line, Parquet's of its typed values); the rows do not.
    assert np.array_equal(all_rows(data_root), all_rows(lake))
