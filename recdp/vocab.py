"""Persistent, versioned, append-only vocabularies: an id once given to a value is never changed.

Layout under vocab/<dataset>/:
    v00001/values/      Parquet (column, value, id, count): only the values that version added
    v00001/manifest.json
    index.json          which version each processed day used, and the latest version
    .lock               held while a version is chosen or made

Version N's vocabulary is the union of the deltas v1..vN. Processing a day counts its categorical values;
values seen at least `freq_threshold` times that the latest version does not hold get the next ids of their
column (most frequent first, ties by value, so the assignment is deterministic) in a new version. A day
that brings no new value reuses the latest version. A rerun of a day reuses the version recorded for it,
so its output does not change. Ids 0 (missing) and 1 (out of vocabulary) are reserved.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recdp.ops import FIRST_VALUE_ID
from recdp.storage import file_lock, staged_directory, write_json_atomic

log = logging.getLogger(__name__)
INDEX = "index.json"


@dataclass(frozen=True)
class VocabVersion:
    root: Path
    version: int  # 0 means: no value has an id yet
    table_sizes: dict[str, int]  # per column: max id + 1 (ids 0 and 1 included)

    def delta_paths(self) -> list[str]:
        return [str(self.root / version_dir(v) / "values") for v in range(1, self.version + 1)]

    def load(self, spark: SparkSession, key_type: str) -> DataFrame:
        if self.version == 0:
            return spark.createDataFrame([], f"column string, value {key_type}, id int, count bigint")
        return spark.read.parquet(*self.delta_paths())


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
        """The version a day's partition is mapped with: the recorded one on a rerun, else latest (+ new)."""
        with _locked(self.root):
            recorded = self.version_for_day(day)
            if recorded is not None:
                log.info("vocabulary: day %s reuses version %d (rerun)", day, recorded.version)
                return recorded
            chosen = self._extend(spark, frame, day, freq_threshold)
            index = self._index()
            index["days"][day.isoformat()] = chosen.version
            index["latest"] = max(index["latest"], chosen.version)
            write_json_atomic(self.root / INDEX, index)
            return chosen

    def _extend(self, spark: SparkSession, frame: DataFrame, day: dt.date, freq_threshold: int) -> VocabVersion:
        started = time.monotonic()
        current = self.latest()
        # One pass over the partition: (column index, value) pairs, counted with map-side combining.
        pairs = frame.select(F.explode(F.array(*[
            F.struct(F.lit(i).alias("column_index"), F.col(c).alias("value")) for i, c in enumerate(self.columns)
        ])).alias("pair")).select("pair.column_index", "pair.value").where(F.col("value").isNotNull())
        names = F.create_map(*[x for i, c in enumerate(self.columns) for x in (F.lit(i), F.lit(c))])
        frequent = (pairs.groupBy("column_index", "value").count().where(F.col("count") >= freq_threshold)
                    .select(names[F.col("column_index")].alias("column"), "value", "count"))
        known = current.load(spark, self.key_type).select("column", "value")
        fresh = frequent.join(known, on=["column", "value"], how="left_anti")
        next_id = F.create_map(*[x for c in self.columns for x in (F.lit(c), F.lit(current.table_sizes[c]))])
        ranked = fresh.withColumn(
            "id",
            (F.row_number().over(Window.partitionBy("column").orderBy(F.desc("count"), F.asc("value")))
             - 1 + next_id[F.col("column")]).cast("int"),
        ).select("column", "value", "id", "count").persist()
        try:
            added = {row["column"]: row["n"] for row in ranked.groupBy("column").agg(F.count("*").alias("n")).collect()}
            if not added:
                log.info("vocabulary: day %s adds no value; using version %d", day, current.version)
                return current
            version = current.version + 1
            sizes = {c: current.table_sizes[c] + added.get(c, 0) for c in self.columns}
            with staged_directory(self.root / version_dir(version)) as staging:
                ranked.write.parquet(str(staging / "values"))
                write_json_atomic(staging / "manifest.json", {
                    "version": version, "parent": current.version, "created_for_day": day.isoformat(),
                    "freq_threshold": freq_threshold, "added": added, "table_sizes": sizes,
                    "created_at": dt.datetime.now(dt.UTC).isoformat(),
                })
        finally:
            ranked.unpersist()
        log.info("vocabulary: day %s made version %d with %d new values in %.1fs",
                 day, version, sum(added.values()), time.monotonic() - started)
        return VocabVersion(self.root, version, sizes)
