"""spark-submit entry point: one validated raw day partition -> training-ready outputs.

    spark-submit --py-files recdp-<hash>.zip --files criteo.yaml \
        recdp/jobs/preprocess.py --dataset /path/to/criteo.yaml --day 2026-03-01 --data /path/to/RECSYS_DATA

The project travels with the job: --py-files ships the archive of the `recdp` package (recdp.jobs.package),
and --files the dataset spec, which the job reads from the given path or, where that path does not exist
(a driver in YARN or Kubernetes cluster mode), from the copy Spark shipped.

Reads the raw partition (delimited text, or Parquet columns by name) by the spec's rules, drops (and counts)
malformed records, fills missing dense values, clips negatives to 0, applies log1p, maps categorical values
through the persistent vocabulary, splits train/valid/test by a seeded hash, and writes under
processed/<dataset>/day=<day>/:

    parquet/                          the processed rows, with their split in column `split`
    shards/train|valid|test/          contiguous arrays for the trainer (recdp/shards.py)
    stats.json                        rows, positive rates, vocabulary sizes and coverage, dense stats
    _SUCCESS

Everything is written to a staging directory and renamed into place, so a crash leaves no partial output
and a rerun replaces the output whole (with the same vocabulary version, hence the same ids).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recdp.costs import CpuMeter, StageCost, record_cost
from recdp.jobs.batches import (
    KIND_MALFORMED,
    KIND_MISSING,
    KIND_ROWS,
    KIND_VALUE,
    LINE,
    SPLIT_CODE,
    SPLITS,
    STATS_SCHEMA,
    KnownValues,
    WritePlan,
    count_schema,
    count_values,
    sum_counts,
    write_rows,
)
from recdp.jobs.spark_cost import PythonWorkerTime, driver_jvm, event_log_settings, job_cpu, process_cpu_seconds
from recdp.rawread import partition_files
from recdp.shards import ShardHeader, allocate_shards, write_shard_header
from recdp.spec import DatasetSpec, load_spec
from recdp.storage import USABLE_STATUSES, DataRoot, parse_day, staged_directory, write_json_atomic
from recdp.vocab import VocabularyStore

log = logging.getLogger("recdp.preprocess")
# Rows per Arrow batch handed to a task: large enough that per-batch overheads vanish, small enough that a
# task's memory stays a few hundred MB whatever the day's size.
BATCH_ROWS = 65_536
SPLIT_BUCKETS = 1_000_000
# A day of at most this many raw bytes (about 50k Criteo lines) is counted and its vocabulary resolved on the
# driver: at a few MB of counts, Spark's per-job overheads would cost more than the work.
SMALL_DAY_BYTES = 8 << 20
REDUCE_INPUT_BYTES = 64 << 20
# A day of at most this many raw bytes (about 280k Criteo lines), and no larger than one split, runs each pass
# as one task: the tasks' own work is then a few CPU-seconds, less than a second Python worker's start.
ONE_TASK_BYTES = 64 << 20
MAX_SPLIT_SETTING = "spark.sql.files.maxPartitionBytes"
MIN_PARTITIONS_SETTING = "spark.sql.files.minPartitionNum"
OPEN_COST_SETTING = "spark.sql.files.openCostInBytes"
# Spark's own floor for a split (spark.sql.files.openCostInBytes' default): smaller days stay one split.
MIN_SPLIT_BYTES = 4 << 20
_BYTE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30,
               "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}


ArrowFunction = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]


class PreprocessError(RuntimeError):
    """The partition cannot be processed; nothing was written."""


def _require_validated(root: DataRoot, spec: DatasetSpec, day: dt.date) -> None:
    report = root.validation_report(spec.name, day)
    where = root.validation(spec.name, day)
    if report is None:
        raise PreprocessError(f"{spec.name} day={day} has no validation report in {where}: validate it first")
    if report.get("status") not in USABLE_STATUSES:
        raise PreprocessError(f"{spec.name} day={day} failed validation ({where}); it stays in quarantine")


def raw_records(spark: SparkSession, spec: DatasetSpec, files: list[Path]) -> DataFrame:
    """(split_code, record): the partition's records and their split, fixed by a seeded hash of the record
    (Spark's xxhash64, so the split never depends on how the files are read).

    Delimited text: the non-empty, non-header lines, hashed as read. Parquet: the spec's columns by name,
    hashed by their typed values."""
    if spec.raw.type == "parquet":
        records = spark.read.parquet(*[str(f) for f in files]).select(*spec.raw_columns)
        hashed = [F.col(c) for c in spec.raw_columns]
    else:
        records = spark.read.text([str(f) for f in files]).where(F.col(LINE) != "")
        if spec.raw.header:
            records = records.where(F.col(LINE) != spec.raw.delimiter.join(spec.raw_columns))
        hashed = [F.col(LINE)]
    splits = spec.preprocess.splits
    bucket = F.pmod(F.xxhash64(*hashed, F.lit(spec.preprocess.split_seed)), F.lit(SPLIT_BUCKETS))
    code = (F.when(bucket < int(splits.train * SPLIT_BUCKETS), F.lit(0))
            .when(bucket < int((splits.train + splits.valid) * SPLIT_BUCKETS), F.lit(1)).otherwise(F.lit(2)))
    return records.select(code.cast("byte").alias(SPLIT_CODE), *records.columns)


@dataclass
class DayCounts:
    """Pass 1's counters: what the day holds, per task partition and split."""

    rows_read: int
    malformed: int
    split_rows: dict[tuple[int, int], int]  # (partition, split code) -> well-formed rows
    missing: dict[str, int]  # dense column -> missing values

    def first_rows(self) -> dict[tuple[int, int], int]:
        """Each (partition, split)'s first row in its split's shard: the rows of earlier partitions before it."""
        first, running = {}, dict.fromkeys(range(len(SPLITS)), 0)
        for part, code in sorted(self.split_rows):
            first[(part, code)] = running[code]
            running[code] += self.split_rows[(part, code)]
        return first

    def split_totals(self) -> list[int]:
        return [sum(n for (_, code), n in self.split_rows.items() if code == s) for s in range(len(SPLITS))]


def _counters(spec: DatasetSpec, rows: list[dict]) -> DayCounts:
    split_rows, missing, malformed = {}, dict.fromkeys(spec.dense, 0), 0
    for row in rows:
        if row["kind"] == KIND_ROWS:
            split_rows[(row["part"], row["column_index"])] = row["count"]
        elif row["kind"] == KIND_MALFORMED:
            malformed += row["count"]
        elif row["kind"] == KIND_MISSING:
            missing[spec.dense[row["column_index"]]] = row["count"]
    well_formed = sum(split_rows.values())
    return DayCounts(well_formed + malformed, malformed, split_rows, missing)


def _value_table(spec: DatasetSpec, summed: pa.Table) -> pa.Table:
    """(column, value, count) of the VALUE rows of pass 1's output."""
    values = summed.filter(pc.equal(summed["kind"], KIND_VALUE))
    names = pa.array(list(spec.categorical), pa.string()).take(values["column_index"])
    return pa.table({"column": names, "value": values["value"], "count": values["count"]})


def _metered(function: ArrowFunction, workers: PythonWorkerTime | None) -> ArrowFunction:
    """A Python worker function that adds its process time to the job's cost, when the job records one."""
    return function if workers is None else workers.metered(function)


def counted_day(spark: SparkSession, spec: DatasetSpec, lines: DataFrame, raw_bytes: int,
                store: VocabularyStore, workers: PythonWorkerTime | None = None, one_task: bool = False,
                ) -> tuple[pa.Table, DayCounts, int | None]:
    """Pass 1: the day's counters, and the value counts its vocabulary is resolved from, as (value counts
    (column, value, count), counters, the vocabulary version those counts were already told apart from).

    A day's per-task counts are repartitioned by value and summed by `sum_counts` in Python, which keeps only
    the frequent values the newest vocabulary version lacks: no hash aggregation in the JVM, no join with the
    vocabulary, and the driver gets the new values alone (through files, so that the JVM never holds them).
    A small day's counts are summed on the driver instead, from one Spark job."""
    key_type = "bigint" if spec.preprocess.hex_categoricals else "string"
    emitted = lines.mapInArrow(_metered(count_values(spec), workers), count_schema(key_type))
    keys = ["kind", "column_index", "part", "value"]
    if raw_bytes <= SMALL_DAY_BYTES:
        summed = emitted.toArrow().group_by(keys, use_threads=False).aggregate([("count", "sum")])
        summed = summed.select([*keys, "count_sum"]).rename_columns([*keys, "count"])
        counters = summed.filter(pc.not_equal(summed["kind"], KIND_VALUE)).to_pylist()
        return _value_table(spec, summed), _counters(spec, counters), None
    current = store.latest_with_snapshot()
    known = KnownValues(str(store.root), current.version, dict(current.table_sizes), spec.preprocess.freq_threshold)
    # Enough reduce tasks that each sums the counts of at most REDUCE_INPUT_BYTES of raw input, whatever the
    # day's size: a task's memory is its share of the day's distinct values.
    partitions = 1 if one_task else max(
        int(spark.conf.get("spark.sql.shuffle.partitions")), -(-raw_bytes // REDUCE_INPUT_BYTES))
    reduced = emitted.repartition(partitions, "column_index", "value").mapInArrow(
        _metered(sum_counts(spec, known), workers), count_schema(key_type))
    incoming = store.root / f".incoming-{uuid.uuid4().hex}"
    try:
        reduced.write.parquet(str(incoming))
        summed = pq.read_table(incoming)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    counters = summed.filter(pc.not_equal(summed["kind"], KIND_VALUE)).to_pylist()
    return _value_table(spec, summed), _counters(spec, counters), current.version


@dataclass
class SplitStats:
    """The statistics of one split's rows, summed over the tasks that wrote them."""

    rows: int
    positives: float
    dense_sum: np.ndarray
    dense_sq: np.ndarray
    known: np.ndarray
    present: np.ndarray

    @classmethod
    def total(cls, rows: list) -> SplitStats:
        return cls(sum(r["rows"] for r in rows), sum(r["positives"] for r in rows),
                   *[np.sum([np.asarray(r[k]) for r in rows], axis=0) for k in
                     ("dense_sum", "dense_sq", "known", "present")])


def _write(spark: SparkSession, spec: DatasetSpec, lines: DataFrame, counts: DayCounts, vocab,
           staging: Path, workers: PythonWorkerTime | None = None) -> dict[str, SplitStats]:
    """Pass 2: every task writes its own Parquet file and its rows of the shards, in parallel."""
    dense, cats = list(spec.dense), list(spec.categorical)
    (staging / "parquet").mkdir()
    totals = counts.split_totals()
    for code, name in enumerate(SPLITS):
        allocate_shards(staging / "shards" / name, totals[code], len(dense), len(cats))
    plan = WritePlan(str(staging), str(vocab.root), vocab.version, dict(vocab.table_sizes), counts.first_rows(),
                     dict(counts.split_rows))
    rows = lines.mapInArrow(_metered(write_rows(spec, plan), workers), STATS_SCHEMA).collect()
    stats = {}
    for code, name in enumerate(SPLITS):
        of_split = [r.asDict() for r in rows if r["split"] == code]
        n = len(dense), len(cats)
        stats[name] = SplitStats.total(of_split) if of_split else SplitStats(
            0, 0.0, np.zeros(n[0]), np.zeros(n[0]), np.zeros(n[1], np.int64), np.zeros(n[1], np.int64))
        if stats[name].rows != totals[code]:
            raise PreprocessError(f"{name}: {stats[name].rows} rows written, {totals[code]} counted")
        write_shard_header(staging / "shards" / name, ShardHeader(
            rows=totals[code], label=spec.label, dense_columns=dense, categorical_columns=cats,
            vocab_version=vocab.version, table_sizes=dict(vocab.table_sizes)))
    return stats


def _stats_document(spec: DatasetSpec, day: dt.date, counts: DayCounts, splits: dict[str, SplitStats],
                    vocab) -> dict:
    rows = sum(s.rows for s in splits.values())
    dense_sum = sum(s.dense_sum for s in splits.values())
    dense_sq = sum(s.dense_sq for s in splits.values())
    known = sum(s.known for s in splits.values())
    present = sum(s.present for s in splits.values())
    mean = dense_sum / max(rows, 1)
    std = np.sqrt(np.maximum(dense_sq / max(rows, 1) - mean**2, 0.0))
    return {
        "dataset": spec.name,
        "day": day.isoformat(),
        "label": spec.label,
        "rows_read": counts.rows_read,
        "bad_rows": counts.malformed,
        "rows": rows,
        "positive_rate": sum(s.positives for s in splits.values()) / max(rows, 1),
        "splits": {n: {"rows": s.rows, "positive_rate": s.positives / s.rows if s.rows else None}
                   for n, s in splits.items()},
        "vocab_version": vocab.version,
        "freq_threshold": spec.preprocess.freq_threshold,
        "categorical": {
            c: {"vocab_size": vocab.table_sizes[c],
                "coverage": float(known[j] / present[j]) if present[j] else None,
                "missing_fraction": float(1 - present[j] / max(rows, 1))}
            for j, c in enumerate(spec.categorical)
        },
        "dense": {
            c: {"mean": float(mean[j]), "std": float(std[j]),
                "missing_fraction": counts.missing[c] / max(rows, 1),
                "transform": "fillna(0) -> clip(>=0) -> log1p"}
            for j, c in enumerate(spec.dense)
        },
    }


def spark_bytes(value: str) -> int:
    """A Spark size setting ("128MB", "64m", "134217728b", "1048576") in bytes."""
    text = value.strip().lower()
    number = text.rstrip("bkmgt")
    unit = text[len(number):]
    if not number.isdigit() or unit not in _BYTE_UNITS:
        raise ValueError(f"not a Spark size: {value!r}")
    return int(number) * _BYTE_UNITS[unit]


def balanced_split_bytes(raw_bytes: int, slots: int, max_split_bytes: int) -> int:
    """The split size that cuts a day into a multiple of `slots` equal splits of at most `max_split_bytes`.

    Spark's own cut is splits of the maximum and a shorter last one: on 2 slots a 465 MB day ran as
    128 + 128 MB, then 128 + 81 MB, one slot idle for a third of the last wave, in each of the two passes.
    Equal splits, as many per slot, keep every slot busy to the end. A task's memory stays bounded by
    `max_split_bytes`, whatever the day's size."""
    splits = -(-raw_bytes // max_split_bytes)
    splits = -(-splits // slots) * slots
    return max(min(MIN_SPLIT_BYTES, max_split_bytes), -(-raw_bytes // splits))


def one_task_day(spark: SparkSession, raw_bytes: int) -> bool:
    """Whether the day runs each pass as one task (ONE_TASK_BYTES): its raw bytes fit one split of the
    session's maximum and ONE_TASK_BYTES. The maximum read is the session's own, outside `_balanced_splits`."""
    return raw_bytes <= min(ONE_TASK_BYTES, spark_bytes(spark.conf.get(MAX_SPLIT_SETTING)))


@contextmanager
def _balanced_splits(spark: SparkSession, raw_bytes: int, files: int, one_task: bool) -> Iterator[None]:
    """The day's scans cut by `balanced_split_bytes` under the session's own maximum (a one-task day: one
    split, whatever the number of slots or files), restored afterwards. Each pass reads the settings when it
    plans its scan; days run one after another on the driver's thread."""
    # What the session set itself (None: Spark's default), to restore; not the defaults, which would then stick.
    configured = {key: spark.conf.get(key, None) for key in (MAX_SPLIT_SETTING, MIN_PARTITIONS_SETTING)}
    if one_task:
        # Spark packs files into a split up to its size, counting each file's open cost besides its bytes.
        size = raw_bytes + files * spark_bytes(spark.conf.get(OPEN_COST_SETTING))
        spark.conf.set(MIN_PARTITIONS_SETTING, "1")
    else:
        size = balanced_split_bytes(raw_bytes, spark.sparkContext.defaultParallelism,
                                    spark_bytes(spark.conf.get(MAX_SPLIT_SETTING)))
    spark.conf.set(MAX_SPLIT_SETTING, str(size))
    try:
        yield
    finally:
        for key, value in configured.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def process_day(spark: SparkSession, spec: DatasetSpec, root: DataRoot, day: dt.date,
                require_validation: bool = True, workers: PythonWorkerTime | None = None) -> dict:
    if require_validation:
        _require_validated(root, spec, day)
    files = partition_files(spec, root.raw(spec.name, day))
    raw_bytes = sum(f.stat().st_size for f in files)
    one_task = one_task_day(spark, raw_bytes)  # before _balanced_splits changes the session's maximum
    with _balanced_splits(spark, raw_bytes, len(files), one_task):
        return _process_files(spark, spec, root, day, files, raw_bytes, workers, one_task)


def _process_files(spark: SparkSession, spec: DatasetSpec, root: DataRoot, day: dt.date, files: list[Path],
                   raw_bytes: int, workers: PythonWorkerTime | None = None, one_task: bool = False) -> dict:
    started = time.monotonic()
    lines = raw_records(spark, spec, files)
    key_type = "bigint" if spec.preprocess.hex_categoricals else "string"
    store = VocabularyStore(root.vocab(spec.name), spec.categorical, key_type)
    value_counts, counts, filtered_against = counted_day(spark, spec, lines, raw_bytes, store, workers, one_task)
    if counts.rows_read == 0:
        raise PreprocessError(f"{spec.name} day={day} has no rows")
    if counts.malformed / counts.rows_read > spec.parse.max_bad_row_fraction:
        raise PreprocessError(
            f"{spec.name} day={day}: {counts.malformed}/{counts.rows_read} malformed rows exceed "
            f"max_bad_row_fraction {spec.parse.max_bad_row_fraction}")
    log.info("%s day=%s: %d rows read, %d malformed dropped (%.1fs, %.0f rows/s)", spec.name, day,
             counts.rows_read, counts.malformed, time.monotonic() - started,
             counts.rows_read / max(time.monotonic() - started, 1e-9))
    vocab = store.resolve_counts(spark, value_counts, day, spec.preprocess.freq_threshold,
                                 filtered_against=filtered_against)
    log.info("%s day=%s: vocabulary v%d, %d values (%.1fs)", spec.name, day, vocab.version,
             sum(vocab.table_sizes.values()), time.monotonic() - started)
    with staged_directory(root.processed(spec.name, day)) as staging:
        split_stats = _write(spark, spec, lines, counts, vocab, staging, workers)
        log.info("%s day=%s: Parquet and shards written (%.1fs)", spec.name, day, time.monotonic() - started)
        stats = _stats_document(spec, day, counts, split_stats, vocab)
        stats["seconds"] = round(time.monotonic() - started, 3)
        write_json_atomic(staging / "stats.json", stats)
        (staging / "_SUCCESS").touch()
    log.info("%s day=%s: %d rows processed in %.1fs (%.0f rows/s), vocabulary v%d", spec.name, day, stats["rows"],
             stats["seconds"], counts.rows_read / max(stats["seconds"], 1e-9), vocab.version)
    return stats


def shipped_spec(argument: str) -> DatasetSpec:
    """The spec named by --dataset: a name from include/datasets, a YAML path, or the name of a YAML file
    shipped with spark-submit --files (found with SparkFiles where the path does not exist)."""
    path = Path(argument)
    if path.suffix in (".yaml", ".yml") and not path.is_file():
        from pyspark import SparkFiles

        shipped = Path(SparkFiles.get(path.name))
        if shipped.is_file():
            return load_spec(shipped)
    return load_spec(argument)


def main(argv: list[str] | None = None, spark: SparkSession | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description="Preprocess raw day partitions into training-ready files.")
    parser.add_argument("--dataset", required=True,
                        help="spec name in include/datasets, a YAML path, or a YAML file shipped with --files")
    parser.add_argument("--day", action="append", required=True, help="YYYY-MM-DD; repeat for several days")
    parser.add_argument("--data", type=Path, help="RECSYS_DATA root (default: $RECSYS_DATA)")
    parser.add_argument("--skip-validation-check", action="store_true",
                        help="process even without a passed validation report (benchmarks)")
    parser.add_argument("--cost-run", metavar="RUN_ID",
                        help="record the job's CPU-seconds (driver, JVM, executors, Python workers) as this run's "
                             "preprocess cost (recdp.costs); one --day only")
    parser.add_argument("--cost-attempt", type=int, metavar="N", help="the task's try number (with --cost-run)")
    args = parser.parse_args(argv)
    if args.cost_run and len(args.day) != 1:
        parser.error("--cost-run records one day's cost: give one --day")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = DataRoot(args.data.resolve()) if args.data else DataRoot.from_env()
    days = [parse_day(d) for d in args.day]
    own_session = spark is None
    event_logs = Path(tempfile.mkdtemp(prefix="recdp-events-")) if args.cost_run and own_session else None
    spec, master, workers, jvm_seconds, results = None, None, None, None, []
    driver = CpuMeter()
    try:
        with driver:
            if spark is None:
                builder = SparkSession.builder.appName("recdp-preprocess")
                for key, value in (event_log_settings(event_logs) if event_logs else {}).items():
                    builder = builder.config(key, value)
                spark = builder.getOrCreate()
                spark.sparkContext.setLogLevel("WARN")  # the job's own progress lines stay at INFO (Python logging)
            spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH_ROWS))
            workers = PythonWorkerTime(spark.sparkContext) if args.cost_run else None
            master = spark.sparkContext.master
            try:
                spec = shipped_spec(args.dataset)
                results = [process_day(spark, spec, root, day, not args.skip_validation_check, workers)
                           for day in days]
            finally:
                if args.cost_run:
                    jvm = driver_jvm()
                    jvm_seconds = process_cpu_seconds(jvm) if jvm is not None else None
                if own_session:
                    spark.stop()
    finally:
        # A failed attempt spent its CPU all the same: its cost is recorded too (one file per attempt).
        if args.cost_run and spec is not None and master is not None:
            _record_cost(root, spec, days[0], args, driver, master, workers, jvm_seconds, event_logs)
        elif event_logs is not None:
            shutil.rmtree(event_logs, ignore_errors=True)
    return results


def _record_cost(root: DataRoot, spec: DatasetSpec, day, args: argparse.Namespace, driver: CpuMeter, master: str,
                 workers: PythonWorkerTime | None, jvm_seconds: float | None, event_logs: Path | None) -> None:
    try:
        parts = job_cpu(master, driver.cpu_seconds, workers, jvm_seconds, event_logs)
        total = parts.pop("total")
        record_cost(root, spec.name, day.isoformat(), args.cost_run,
                    StageCost("preprocess", round(total, 3), round(driver.wall_seconds, 3),
                              {k: round(v, 3) for k, v in parts.items()}), attempt=args.cost_attempt)
        log.info("%s day=%s: preprocess cost %.1f CPU-s (%s)", spec.name, day, total,
                 ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    except (OSError, ValueError) as error:  # the cost is the record's, not the job's: the job's outcome stands
        log.warning("%s day=%s: the preprocess cost was not recorded: %s", spec.name, day, error)
    finally:
        if event_logs is not None:
            shutil.rmtree(event_logs, ignore_errors=True)

if __name__ == "__main__":
    try:
        main()
    except (PreprocessError, ValueError) as error:
        logging.getLogger("recdp.preprocess").error("%s", error)
        sys.exit(2)
