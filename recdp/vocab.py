"""Persistent, versioned, append-only vocabularies: an id once given to a value is never changed.

Layout under vocab/<dataset>/:
    v00001/values/      Parquet (column, value, id, count): only the values that version added
    v00001/snapshot/    the whole vocabulary at that version, one Parquet file per column (column, value, id),
                        sorted by value; kept for the newest KEPT_SNAPSHOTS versions only
    v00001/manifest.json
    index.json          which version each processed day used, and the latest version
    .lock               held while a version is chosen or made

Version N's vocabulary is the union of the deltas v1..vN. Since ids only grow, it is also any later
snapshot restricted to the ids below version N's table sizes: a day reads one snapshot (O(1) files, whatever
the length of the history), and old snapshots can go. Processing a day counts its categorical values;
values seen at least `freq_threshold` times that the latest version does not hold get the next ids of their
column (most frequent first, ties by value, so the assignment is deterministic) in a new version. A day
that brings no new value reuses the latest version. A rerun of a day reuses the version recorded for it,
so its output does not change. Ids 0 (missing) and 1 (out of vocabulary) are reserved.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recdp.ids import FIRST_VALUE_ID, OOV_ID
from recdp.ops import VocabularyLookup
from recdp.storage import file_lock, staged_directory, write_json_atomic

log = logging.getLogger(__name__)
INDEX = "index.json"
SNAPSHOT = "snapshot"
KEPT_SNAPSHOTS = 3  # a reader of the oldest kept one has two whole version changes' time to open it


class VocabularyError(RuntimeError):
    """The vocabulary files do not hold what the index says."""


@dataclass(frozen=True)
class VocabVersion:
    root: Path
    version: int  # 0 means: no value has an id yet
    table_sizes: dict[str, int]  # per column: max id + 1 (ids 0 and 1 included)

    def delta_paths(self) -> list[str]:
        return [str(self.root / version_dir(v) / "values") for v in range(1, self.version + 1)]

    def snapshot_dir(self) -> Path:
        """The newest snapshot at or after this version (which holds every id of this one)."""
        kept = sorted((p for p in self.root.glob("v*/" + SNAPSHOT) if _version_of(p.parent) >= self.version),
                      key=lambda p: _version_of(p.parent))
        if not kept:
            raise VocabularyError(f"{self.root} has no snapshot at or after version {self.version}")
        return kept[-1]

    def column_table(self, column: str) -> pa.Table:
        """(value, id) of one column at this version, sorted by value."""
        if self.version == 0:
            return pa.table({"value": pa.array([], pa.int64()), "id": pa.array([], pa.int32())})
        for attempt in (1, 2):
            try:
                table = pq.read_table(self.snapshot_dir() / f"{column}.parquet", columns=["value", "id"])
                break
            except FileNotFoundError:  # pruned between listing and reading: the newer one is there now
                if attempt == 2:
                    raise
        return table.filter(pc.less(table["id"], self.table_sizes[column]))

    def lookup(self, column: str) -> VocabularyLookup:
        table = self.column_table(column)
        return VocabularyLookup(table["value"].combine_chunks(), table["id"].to_numpy())

    def load(self, spark: SparkSession, key_type: str) -> DataFrame:
        """(column, value, id) of every column at this version, as a Spark frame."""
        if self.version == 0:
            return spark.createDataFrame([], f"column string, value {key_type}, id int")
        sizes = F.create_map(*[x for c, n in self.table_sizes.items() for x in (F.lit(c), F.lit(n))])
        return (spark.read.parquet(str(self.snapshot_dir())).where(F.col("id") < sizes[F.col("column")])
                .select("column", "value", "id"))


def _version_of(directory: Path) -> int:
    return int(directory.name[1:]) if directory.name[1:].isdigit() else -1


def version_dir(version: int) -> str:
    return f"v{version:05d}"


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """An exclusive lock, so that concurrent runs (backfills) never hand out the same id twice."""
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".lock"):
        yield


class VocabularyStore:
    def __init__(self, root: Path, columns: Sequence[str], key_type: str = "string") -> None:
        self.root = root
        self.columns = list(columns)
        self.key_type = key_type

    def _index(self) -> dict:
        path = self.root / INDEX
        return json.loads(path.read_text()) if path.is_file() else {"latest": 0, "days": {}}

    def _manifest(self, version: int) -> dict:
        return json.loads((self.root / version_dir(version) / "manifest.json").read_text())

    def version(self, version: int) -> VocabVersion:
        if version == 0:
            sizes = {c: FIRST_VALUE_ID for c in self.columns}
        else:
            sizes = self._manifest(version)["table_sizes"]
        return VocabVersion(self.root, version, sizes)

    def latest(self) -> VocabVersion:
        return self.version(self._index()["latest"])

    def version_for_day(self, day: dt.date) -> VocabVersion | None:
        recorded = self._index()["days"].get(day.isoformat())
        return None if recorded is None else self.version(recorded)

    def resolve(self, spark: SparkSession, frame: DataFrame, day: dt.date, freq_threshold: int) -> VocabVersion:
        """The version a day's partition is mapped with: the recorded one on a rerun, else latest (+ new).

        `frame` holds the day's categorical columns; their values are counted in one aggregation."""
        return self.resolve_counts(spark, count_values(frame, self.columns), day, freq_threshold)

    def latest_with_snapshot(self) -> VocabVersion:
        """The newest version, with its snapshot written if the store predates snapshots."""
        with _locked(self.root):
            self._ensure_snapshot(self.latest())
            return self.latest()

    def resolve_counts(self, spark: SparkSession, counts: DataFrame | pa.Table, day: dt.date,
                       freq_threshold: int, filtered_against: int | None = None) -> VocabVersion:
        """As resolve, from the day's counts already made: (column, value, count), as a Spark frame, or as an
        Arrow table on the driver. `filtered_against`: the version whose values (and infrequent ones) the
        Arrow counts already left out; if it is still the newest, they are taken as they are."""
        with _locked(self.root):
            recorded = self.version_for_day(day)
            if recorded is not None:
                log.info("vocabulary: day %s reuses version %d (rerun)", day, recorded.version)
                return recorded
            self._ensure_snapshot(self.latest())
            current = self.latest()
            started = time.monotonic()
            if isinstance(counts, pa.Table) and filtered_against == current.version:
                fresh = counts.select(["column", "value", "count"])
            elif isinstance(counts, pa.Table):  # a small day, or another day published a version meanwhile
                fresh = self._fresh_local(counts, current, freq_threshold)
            else:
                fresh = self._fresh_spark(spark, counts, current, freq_threshold)
            chosen = self._publish(current, fresh, day, freq_threshold)
            if chosen.version != current.version:
                log.info("vocabulary: day %s made version %d with %d new values in %.1fs", day, chosen.version,
                         sum(chosen.table_sizes.values()) - sum(current.table_sizes.values()),
                         time.monotonic() - started)
            index = self._index()
            index["days"][day.isoformat()] = chosen.version
            index["latest"] = max(index["latest"], chosen.version)
            write_json_atomic(self.root / INDEX, index)
            self._prune_snapshots(index["latest"])
            return chosen

    def _ensure_snapshot(self, version: VocabVersion) -> None:
        """A store made before snapshots existed gets its latest one from the deltas, once."""
        if version.version == 0 or (self.root / version_dir(version.version) / SNAPSHOT).is_dir():
            return
        deltas = pa.concat_tables([pq.read_table(p, columns=["column", "value", "id"])
                                   for p in version.delta_paths()])
        final = self.root / version_dir(version.version) / SNAPSHOT
        staging = final.with_name(f".{SNAPSHOT}-staging")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for column in self.columns:
            rows = deltas.filter(pc.equal(deltas["column"], column))
            pq.write_table(rows.sort_by("value"), staging / f"{column}.parquet")
        staging.rename(final)
        log.info("vocabulary: wrote the snapshot of version %d from its %d deltas", version.version,
                 version.version)

    def _prune_snapshots(self, latest: int) -> None:
        for snapshot in self.root.glob("v*/" + SNAPSHOT):
            if _version_of(snapshot.parent) <= latest - KEPT_SNAPSHOTS:
                shutil.rmtree(snapshot, ignore_errors=True)

    def _fresh_spark(self, spark: SparkSession, counts: DataFrame, current: VocabVersion,
                     freq_threshold: int) -> pa.Table:
        """The frequent values `current` lacks, found by Spark (an anti-join with its snapshot): (column, value,
        count). They travel to the driver through files, so that the JVM never holds them all."""
        frequent = counts.where(F.col("count") >= freq_threshold)
        known = current.load(spark, self.key_type).select("column", "value")
        fresh = frequent.join(known, on=["column", "value"], how="left_anti").select("column", "value", "count")
        incoming = self.root / f".incoming-{uuid.uuid4().hex}"
        try:
            fresh.write.parquet(str(incoming))
            return pq.read_table(incoming)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)

    def _fresh_local(self, counts: pa.Table, current: VocabVersion, freq_threshold: int) -> pa.Table:
        """As _fresh_spark, on the driver, for a small day's counts (no Spark job: its overhead would dominate)."""
        frequent = counts.filter(pc.greater_equal(counts["count"], freq_threshold))
        parts = []
        for column in self.columns:
            of_column = frequent.filter(pc.equal(frequent["column"], column))
            if of_column.num_rows:
                unknown = current.lookup(column).ids(of_column["value"]) == OOV_ID
                parts.append(of_column.filter(pa.array(unknown)).select(["column", "value", "count"]))
        if not parts:
            return frequent.select(["column", "value", "count"]).slice(0, 0)
        return pa.concat_tables(parts)

    def _publish(self, current: VocabVersion, fresh: pa.Table, day: dt.date, freq_threshold: int) -> VocabVersion:
        """Version N+1 from version N and the day's new values (column, value, count): each column's ranked
        values, its snapshot and the manifest, at once. One column at a time: at full Criteo cardinalities a
        day brings millions of new values, and the driver then holds one column's, not all of them."""
        if fresh.num_rows == 0:
            log.info("vocabulary: day %s adds no value; using version %d", day, current.version)
            return current
        version = current.version + 1
        added: dict[str, int] = {}
        with staged_directory(self.root / version_dir(version)) as staging:
            (staging / "values").mkdir()
            (staging / SNAPSHOT).mkdir()
            previous = current.snapshot_dir() if current.version else None
            for index, column in enumerate(self.columns):
                new = _ranked(fresh.filter(pc.equal(fresh["column"], column)), current.table_sizes[column])
                if new.num_rows:
                    pq.write_table(new, staging / "values" / f"part-{index:05d}.parquet")
                    added[column] = new.num_rows
                self._write_snapshot_column(current, previous, column, new, staging / SNAPSHOT)
            sizes = {c: current.table_sizes[c] + added.get(c, 0) for c in self.columns}
            write_json_atomic(staging / "manifest.json", {
                "version": version, "parent": current.version, "created_for_day": day.isoformat(),
                "freq_threshold": freq_threshold, "added": added, "table_sizes": sizes,
                "created_at": dt.datetime.now(dt.UTC).isoformat(),
            })
        return VocabVersion(self.root, version, sizes)

    def _write_snapshot_column(self, current: VocabVersion, previous: Path | None, column: str, new: pa.Table,
                               directory: Path) -> None:
        """A column of version N's snapshot: version N-1's plus its new values (`new`: column, value, id, ...)."""
        if new.num_rows == 0 and previous is not None and previous.name == SNAPSHOT and \
                _version_of(previous.parent) == current.version:
            try:  # unchanged: the same file, not a copy
                os.link(previous / f"{column}.parquet", directory / f"{column}.parquet")
            except OSError:  # a file system without hard links
                shutil.copyfile(previous / f"{column}.parquet", directory / f"{column}.parquet")
            return
        added = new.select(["value", "id"])
        old = current.column_table(column).cast(added.schema)
        merged = pa.concat_tables([old, added]).sort_by("value")
        pq.write_table(pa.table({"column": pa.repeat(column, merged.num_rows), "value": merged["value"],
                                 "id": merged["id"]}), directory / f"{column}.parquet")


def _ranked(fresh: pa.Table, first_id: int) -> pa.Table:
    """(column, value, id, count): one column's new values get its next ids from `first_id`, most frequent
    first, ties by value, so that the assignment does not depend on how Spark ordered the rows."""
    ordered = fresh.sort_by([("count", "descending"), ("value", "ascending")])
    ids = pa.array(first_id + np.arange(ordered.num_rows, dtype=np.int32), pa.int32())
    return pa.table({"column": ordered["column"], "value": ordered["value"], "id": ids, "count": ordered["count"]})


def count_values(frame: DataFrame, columns: list[str]) -> DataFrame:
    """(column, value, count) of a wide frame's categorical columns: one aggregation, nulls not counted."""
    pairs = frame.select(F.explode(F.array(*[
        F.struct(F.lit(c).alias("column"), F.col(c).alias("value")) for c in columns
    ])).alias("pair")).select("pair.column", "pair.value").where(F.col("value").isNotNull())
    return pairs.groupBy("column", "value").count()
