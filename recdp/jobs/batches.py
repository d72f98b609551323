"""What each Spark task of the preprocessing job runs, over Arrow batches of raw records (mapInArrow).

The job reads a day's raw lines twice, and never caches them:

1. `count_values` parses each batch (recdp.parse) and emits the task's categorical value counts, plus counter rows:
   well-formed rows per (task partition, split), malformed lines, missing dense values. Repartitioned by
   value, `sum_counts` sums each value's counts and keeps only those the vocabulary may take.
2. `write_rows` parses again, transforms (recdp.ops), maps values to ids through the vocabulary
   snapshot, and writes the task's rows itself: a Parquet file of its own, and its rows of each split's
   shard files, at offsets the driver derived from pass 1's per-partition counts. It emits one statistics
   row per split.

Both are idempotent: a retried task rewrites the same bytes to the same places.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recdp.ids import FIRST_VALUE_ID, MISSING_ID, OOV_ID
from recdp.ops import VocabularyLookup, categorical_keys, dense_features
from recdp.parse import CARRY, ParsedRows, parse_lines, parse_table
from recdp.shards import write_shard_rows
from recdp.spec import DatasetSpec
from recdp.vocab import VocabVersion

SPLITS = ("train", "valid", "test")
LINE, SPLIT_CODE = "value", "split_code"

KIND_VALUE, KIND_ROWS, KIND_MALFORMED, KIND_MISSING = 0, 1, 2, 3


def count_schema(key_type: str) -> str:
    """Pass 1's rows. kind VALUE: (column_index, value, count). kind ROWS: (part, column_index = split code,
    count). kind MALFORMED: (part, count). kind MISSING: (column_index = dense column, count)."""
    return f"kind int, column_index int, part int, value {key_type}, count long"


STATS_SCHEMA = ("part int, split int, rows long, positives double, dense_sum array<double>, "
                "dense_sq array<double>, known array<long>, present array<long>")


def _keys(spec: DatasetSpec, column: pa.ChunkedArray) -> pa.Array:
    return categorical_keys(column, spec.preprocess.hex_categoricals)


def parse_batch(spec: DatasetSpec, batch: pa.RecordBatch) -> ParsedRows:
    """A batch of (split code, raw line) or (split code, typed columns) -> its well-formed rows, the split code
    carried along."""
    if spec.raw.type == "parquet":
        return parse_table(spec, pa.Table.from_batches([batch]), carry=batch.column(SPLIT_CODE))
    return parse_lines(spec, batch.column(LINE), carry=batch.column(SPLIT_CODE))


def _partition() -> int:
    from pyspark import TaskContext

    return TaskContext.get().partitionId()


def count_values(spec: DatasetSpec) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    key_type = pa.int64() if spec.preprocess.hex_categoricals else pa.string()
    schema = pa.schema([("kind", pa.int32()), ("column_index", pa.int32()), ("part", pa.int32()),
                        ("value", key_type), ("count", pa.int64())])

    def rows(kind: int, column_index, part, values, counts) -> pa.RecordBatch:
        n = len(counts)
        return pa.RecordBatch.from_arrays([
            pa.array(np.full(n, kind, np.int32)), pa.array(np.broadcast_to(column_index, n).astype(np.int32)),
            pa.array(np.broadcast_to(part, n).astype(np.int32)),
            values if values is not None else pa.nulls(n, key_type), pa.array(np.asarray(counts, np.int64)),
        ], schema=schema)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        part = _partition()
        split_rows = np.zeros(len(SPLITS), np.int64)
        missing = np.zeros(len(spec.dense), np.int64)
        malformed = 0
        per_column: list[list[pa.Table]] = [[] for _ in spec.categorical]
        for batch in batches:
            parsed = parse_batch(spec, batch)
            table = parsed.table
            malformed += parsed.malformed
            split_rows += np.bincount(pc.cast(table[CARRY], pa.int8()).to_numpy(), minlength=len(SPLITS))
            missing += [table[c].null_count for c in spec.dense]
            for j, name in enumerate(spec.categorical):
                counted = pc.value_counts(_keys(spec, table[name]).drop_null())
                per_column[j].append(pa.table({"value": counted.field("values"), "count": counted.field("counts")}))
        # Summed over the task's whole partition (bounded by Spark's split size), to send fewer rows to Spark.
        for j, tables in enumerate(per_column):
            if tables:
                summed = pa.concat_tables(tables).group_by("value").aggregate([("count", "sum")])
                yield rows(KIND_VALUE, j, -1, summed["value"].combine_chunks(), summed["count_sum"].to_numpy())
        yield rows(KIND_ROWS, np.arange(len(SPLITS)), part, None, split_rows)
        yield rows(KIND_MALFORMED, 0, part, None, [malformed])
        yield rows(KIND_MISSING, np.arange(len(spec.dense)), -1, None, missing)

    return run


@dataclass(frozen=True)
class KnownValues:
    """The vocabulary version a day's new values are told apart from, and the frequency they need."""

    vocab_root: str
    vocab_version: int
    table_sizes: dict[str, int]
    freq_threshold: int


def sum_counts(spec: DatasetSpec, known: KnownValues,
               ) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """Pass 1's reduce side, after the per-task rows of `count_values` are repartitioned by value (a shuffle
    with no aggregation in the JVM): every value's rows meet in one task, which sums them and keeps the values
    the vocabulary may take, those at least `freq_threshold` often and unknown to `known`'s version.
    Counter rows pass through, summed."""
    keys = ["kind", "column_index", "part", "value"]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        received = [pa.Table.from_batches([b]) for b in batches]
        if not received:
            return
        summed = pa.concat_tables(received).group_by(keys, use_threads=False).aggregate([("count", "sum")])
        summed = summed.select([*keys, "count_sum"]).rename_columns([*keys, "count"])
        del received
        is_value = pc.equal(summed["kind"], KIND_VALUE)
        yield from summed.filter(pc.invert(is_value)).to_batches()
        values = summed.filter(pc.and_(is_value, pc.greater_equal(summed["count"], known.freq_threshold)))
        lookups = _lookups(known.vocab_root, known.vocab_version, known.table_sizes, tuple(spec.categorical))
        for j, name in enumerate(spec.categorical):
            of_column = values.filter(pc.equal(values["column_index"], j))
            if of_column.num_rows:
                unknown = lookups[name].ids(of_column["value"]) == OOV_ID
                yield from of_column.filter(pa.array(unknown)).to_batches()

    return run


@dataclass(frozen=True)
class WritePlan:
    """Where pass 2's tasks write: the staging folder and, per (partition, split), the first shard row."""

    staging: str
    vocab_root: str
    vocab_version: int
    table_sizes: dict[str, int]
    first_row: dict[tuple[int, int], int]
    rows: dict[tuple[int, int], int]


_LOOKUPS: dict[tuple, dict[str, VocabularyLookup]] = {}


def _lookups(vocab_root: str, vocab_version: int, table_sizes: dict[str, int],
             columns: tuple[str, ...]) -> dict[str, VocabularyLookup]:
    """A vocabulary version's lookups, loaded once per Python worker and version (workers are reused).

    Only the latest is kept: a version's hash tables take about 40 bytes a value, per worker. Days go through
    the versions in order (pass 1's reduce of day N reads version N-1, pass 2 writes with version N, and day
    N+1's pass 1 reads version N again), so one entry still hits on every pass but the first."""
    key = (vocab_root, vocab_version, tuple(sorted(table_sizes.items())), columns)
    if key not in _LOOKUPS:
        _LOOKUPS.clear()
        version = VocabVersion(Path(vocab_root), vocab_version, dict(table_sizes))
        _LOOKUPS[key] = {c: version.lookup(c) for c in columns}
    return _LOOKUPS[key]


def write_rows(spec: DatasetSpec, plan: WritePlan) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    dense_names, cat_names = list(spec.dense), list(spec.categorical)
    split_names = pa.array(SPLITS)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        part = _partition()
        lookups = _lookups(plan.vocab_root, plan.vocab_version, plan.table_sizes, tuple(cat_names))
        staging = Path(plan.staging)
        position = [plan.first_row.get((part, s), 0) for s in range(len(SPLITS))]
        stats = [_SplitStats(len(dense_names), len(cat_names)) for _ in SPLITS]
        parquet_path = staging / "parquet" / f"part-{part:05d}.parquet"
        pending = parquet_path.with_name(f".{parquet_path.name}.{uuid.uuid4().hex[:8]}")
        writer = None
        try:
            for batch in batches:
                table = parse_batch(spec, batch).table
                if table.num_rows == 0:
                    continue
                split = pc.cast(table[CARRY], pa.int8()).to_numpy()
                label = table[spec.label].to_numpy()
                dense = dense_features(table, dense_names)
                cat = np.column_stack([lookups[c].ids(_keys(spec, table[c])) for c in cat_names]) if cat_names \
                    else np.zeros((table.num_rows, 0), np.int32)
                processed = pa.table({
                    "split": split_names.take(pa.array(split)), spec.label: pa.array(label.astype(np.int32)),
                    **{c: pa.array(dense[:, j]) for j, c in enumerate(dense_names)},
                    **{c: pa.array(cat[:, j]) for j, c in enumerate(cat_names)},
                })
                if writer is None:
                    writer = pq.ParquetWriter(pending, processed.schema)
                writer.write_table(processed)
                for code, name in enumerate(SPLITS):
                    mask = split == code
                    if mask.any():
                        rows = (label[mask].astype(np.float32), dense[mask].astype(np.float32), cat[mask])
                        write_shard_rows(staging / "shards" / name, position[code], *rows)
                        position[code] += int(mask.sum())
                        stats[code].add(*rows)
            if writer is not None:
                writer.close()
                writer = None
                os.replace(pending, parquet_path)
        finally:
            if writer is not None:
                writer.close()
            pending.unlink(missing_ok=True)
        for code in range(len(SPLITS)):
            expected = plan.rows.get((part, code), 0)
            if stats[code].rows != expected:
                raise RuntimeError(f"partition {part} held {stats[code].rows} {SPLITS[code]} rows on the second "
                                   f"read and {expected} on the first: did the input change during the job?")
        yield pa.RecordBatch.from_pylist([s.row(part, code) for code, s in enumerate(stats)],
                                         schema=_STATS_ARROW)

    return run


_STATS_ARROW = pa.schema([("part", pa.int32()), ("split", pa.int32()), ("rows", pa.int64()),
                          ("positives", pa.float64()), ("dense_sum", pa.list_(pa.float64())),
                          ("dense_sq", pa.list_(pa.float64())), ("known", pa.list_(pa.int64())),
                          ("present", pa.list_(pa.int64()))])


class _SplitStats:
    def __init__(self, n_dense: int, n_cat: int) -> None:
        self.rows = 0
        self.positives = 0.0
        self.dense_sum = np.zeros(n_dense)
        self.dense_sq = np.zeros(n_dense)
        self.known = np.zeros(n_cat, dtype=np.int64)
        self.present = np.zeros(n_cat, dtype=np.int64)

    def add(self, label: np.ndarray, dense: np.ndarray, cat: np.ndarray) -> None:
        self.rows += len(label)
        self.positives += float(label.sum(dtype=np.float64))
        self.dense_sum += dense.sum(axis=0, dtype=np.float64)
        self.dense_sq += np.square(dense, dtype=np.float64).sum(axis=0)
        self.known += (cat >= FIRST_VALUE_ID).sum(axis=0)
        self.present += (cat > MISSING_ID).sum(axis=0)

    def row(self, part: int, split: int) -> dict:
        return {"part": part, "split": split, "rows": self.rows, "positives": self.positives,
                "dense_sum": self.dense_sum.tolist(), "dense_sq": self.dense_sq.tolist(),
                "known": self.known.tolist(), "present": self.present.tolist()}
