"""spark-submit entry point: one validated raw day partition -> training-ready outputs.

    spark-submit recdp/jobs/preprocess.py --dataset criteo --day 2026-03-01 --data /path/to/RECSYS_DATA

Reads the raw partition with the spec's explicit schema, drops (and counts) malformed lines, fills missing
dense values, clips negatives to 0, applies log1p, maps categorical values through the persistent
vocabulary, splits train/valid/test by a seeded hash, and writes under processed/<dataset>/day=<day>/:

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
import sys
import time
from pathlib import Path

# Submitted as a script, the project root is not on sys.path; put it there before importing recdp.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recdp.ops import (
    FIRST_VALUE_ID,
    MISSING_ID,
    SPLIT,
    WELL_FORMED,
    DropMalformed,
    categorical_key_type,
    parse_pipeline,
    standard_pipeline,
)
from recdp.rawread import partition_files
from recdp.shards import ShardWriter, parquet_batches
from recdp.spec import DatasetSpec, load_spec
from recdp.storage import DataRoot, parse_day, staged_directory, write_json_atomic
from recdp.vocab import VocabularyStore

log = logging.getLogger("recdp.preprocess")
SPLITS = ("train", "valid", "test")


class PreprocessError(RuntimeError):
    """The partition cannot be processed; nothing was written."""


def _require_validated(root: DataRoot, spec: DatasetSpec, day: dt.date) -> None:
    report = root.validation_report(spec.name, day)
    where = root.validation(spec.name, day)
    if report is None:
        raise PreprocessError(f"{spec.name} day={day} has no validation report in {where}: validate it first")
    if report.get("status") != "passed":
        raise PreprocessError(f"{spec.name} day={day} failed validation ({where}); it stays in quarantine")


def _input_counts(spec: DatasetSpec, parsed: DataFrame) -> dict:
    good = F.col(WELL_FORMED)
    row = parsed.agg(
        F.count(F.lit(1)).alias("total"),
        F.sum(F.when(good, 0).otherwise(1)).alias("bad"),
        *[F.sum(F.when(good & F.col(c).isNull(), 1).otherwise(0)).alias(f"missing_{c}") for c in spec.dense],
    ).collect()[0]
    return row.asDict()


class SplitStats:
    """Running statistics of the rows written to one split's shards (the driver streams them anyway)."""

    def __init__(self, n_dense: int, n_cat: int) -> None:
        self.rows = 0
        self.positives = 0.0
        self.dense_sum = np.zeros(n_dense)
        self.dense_sq = np.zeros(n_dense)
        self.known = np.zeros(n_cat, dtype=np.int64)
        self.present = np.zeros(n_cat, dtype=np.int64)

    def add(self, label: np.ndarray, dense: np.ndarray, cat: np.ndarray) -> None:
        self.rows += len(label)
        self.positives += float(label.sum())
        self.dense_sum += dense.sum(axis=0, dtype=np.float64)
        self.dense_sq += np.square(dense, dtype=np.float64).sum(axis=0)
        self.known += (cat >= FIRST_VALUE_ID).sum(axis=0)
        self.present += (cat > MISSING_ID).sum(axis=0)


def _write_outputs(spec: DatasetSpec, parquet_dir: Path, shards_dir: Path, vocab) -> dict[str, SplitStats]:
    """Stream the written Parquet once into the three splits' shards, keeping their statistics."""
    dense, cats = list(spec.dense), list(spec.categorical)
    writers = {s: ShardWriter(shards_dir / s, label=spec.label, dense_columns=dense, categorical_columns=cats,
                              vocab_version=vocab.version, table_sizes=vocab.table_sizes) for s in SPLITS}
    stats = {s: SplitStats(len(dense), len(cats)) for s in SPLITS}
    files = sorted(parquet_dir.glob("*.parquet"))
    try:
        _stream_splits(spec, files, writers, stats)
    except BaseException:
        for writer in writers.values():  # e.g. a full disk: release the files so their space comes back
            writer.abort()
        raise
    for writer in writers.values():
        writer.close()
    return stats


def _stream_splits(spec: DatasetSpec, files: list[Path], writers: dict, stats: dict) -> None:
    dense, cats = list(spec.dense), list(spec.categorical)
    for table in parquet_batches(files, [SPLIT, spec.label, *dense, *cats]):
        split = table[SPLIT].to_numpy(zero_copy_only=False)
        label = table[spec.label].to_numpy().astype(np.float32)
        dense_values = np.column_stack([table[c].to_numpy() for c in dense]).astype(np.float32) if dense \
            else np.zeros((table.num_rows, 0), np.float32)
        cat_values = np.column_stack([table[c].to_numpy() for c in cats]).astype(np.int32) if cats \
            else np.zeros((table.num_rows, 0), np.int32)
        for name in SPLITS:
            mask = split == name
            if mask.any():
                writers[name].append(label[mask], dense_values[mask], cat_values[mask])
                stats[name].add(label[mask], dense_values[mask], cat_values[mask])


def _stats_document(spec: DatasetSpec, day: dt.date, counts: dict, splits: dict[str, SplitStats], vocab) -> dict:
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
        "rows_read": counts["total"],
        "bad_rows": counts["bad"],
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
                "missing_fraction": counts[f"missing_{c}"] / max(rows, 1),
                "transform": "fillna(0) -> clip(>=0) -> log1p"}
            for j, c in enumerate(spec.dense)
        },
    }


def process_day(spark: SparkSession, spec: DatasetSpec, root: DataRoot, day: dt.date,
                require_validation: bool = True) -> dict:
    started = time.monotonic()
    if require_validation:
        _require_validated(root, spec, day)
    files = partition_files(spec, root.raw(spec.name, day))
    lines = spark.read.text([str(f) for f in files])
    # The split is fixed from the raw line right away, so the (wide) line is not kept in the cache.
    parsed = parse_pipeline(spec)(lines).persist(StorageLevel.MEMORY_AND_DISK)
    vocabulary = None
    try:
        counts = _input_counts(spec, parsed)
        total, bad = counts["total"], counts["bad"] or 0
        counts["bad"] = bad
        if total == 0:
            raise PreprocessError(f"{spec.name} day={day} has no rows")
        if bad / total > spec.parse.max_bad_row_fraction:
            raise PreprocessError(
                f"{spec.name} day={day}: {bad}/{total} malformed rows exceed max_bad_row_fraction "
                f"{spec.parse.max_bad_row_fraction}")
        log.info("%s day=%s: %d rows read, %d malformed dropped (%.1fs)", spec.name, day, total, bad,
                 time.monotonic() - started)
        good = DropMalformed()(parsed)
        key_type = categorical_key_type(spec)
        store = VocabularyStore(root.vocab(spec.name), spec.categorical, key_type)
        vocab = store.resolve(spark, good, day, spec.preprocess.freq_threshold)
        # Cached once: every categorical column's join reads it.
        vocabulary = vocab.load(spark, key_type).persist(StorageLevel.MEMORY_AND_DISK)
        log.info("vocabulary v%d: %d values", vocab.version, vocabulary.count())
        processed = standard_pipeline(spec, vocabulary)(good)
        columns = [SPLIT, spec.label, *spec.dense, *spec.categorical]
        with staged_directory(root.processed(spec.name, day)) as staging:
            processed.select(*columns).write.parquet(str(staging / "parquet"))
            log.info("%s day=%s: Parquet written (%.1fs)", spec.name, day, time.monotonic() - started)
            split_stats = _write_outputs(spec, staging / "parquet", staging / "shards", vocab)
            stats = _stats_document(spec, day, counts, split_stats, vocab)
            stats["seconds"] = round(time.monotonic() - started, 3)
            write_json_atomic(staging / "stats.json", stats)
            (staging / "_SUCCESS").touch()
    finally:
        parsed.unpersist()
        if vocabulary is not None:
            vocabulary.unpersist()
    log.info("%s day=%s: %d rows processed in %.1fs (%.0f rows/s), vocabulary v%d", spec.name, day, stats["rows"],
             stats["seconds"], total / max(stats["seconds"], 1e-9), vocab.version)
    return stats


def main(argv: list[str] | None = None, spark: SparkSession | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description="Preprocess raw day partitions into training-ready files.")
    parser.add_argument("--dataset", required=True, help="spec name in include/datasets or a YAML path")
    parser.add_argument("--day", action="append", required=True, help="YYYY-MM-DD; repeat for several days")
    parser.add_argument("--data", type=Path, help="RECSYS_DATA root (default: $RECSYS_DATA)")
    parser.add_argument("--skip-validation-check", action="store_true",
                        help="process even without a passed validation report (benchmarks)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = load_spec(args.dataset)
    root = DataRoot(args.data.resolve()) if args.data else DataRoot.from_env()
    days = [parse_day(d) for d in args.day]
    own_session = spark is None
    if spark is None:
        spark = SparkSession.builder.appName(f"recdp-preprocess-{spec.name}").getOrCreate()
        spark.sparkContext.setLogLevel("WARN")  # the job's own progress lines stay at INFO (Python logging)
    try:
        return [process_day(spark, spec, root, day, not args.skip_validation_check) for day in days]
    finally:
        if own_session:
            spark.stop()


if __name__ == "__main__":
    try:
        main()
    except (PreprocessError, ValueError) as error:
        logging.getLogger("recdp.preprocess").error("%s", error)
        sys.exit(2)
