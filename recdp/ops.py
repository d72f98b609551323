"""Composable Spark transformations for recommendation data.

Every op is a small frozen dataclass that maps a DataFrame to a DataFrame with built-in Spark SQL
functions only (no Python UDF, no collect), so a pipeline runs at JVM speed on any cluster and its memory
stays flat as data grows. A user reorders or extends a pipeline for another dataset by composing ops:

    pipeline = Pipeline([FillNA(dense, 0.0), ClipNegative(dense), Log1p(dense), Categorify(cats, vocab)])
    processed = pipeline(parsed)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recdp.spec import DatasetSpec

LINE = "_line"
WELL_FORMED = "_well_formed"
SPLIT = "split"
MISSING_ID = 0
OOV_ID = 1
FIRST_VALUE_ID = 2


class Op(Protocol):
    def __call__(self, frame: DataFrame) -> DataFrame: ...


@dataclass(frozen=True)
class Pipeline:
    ops: Sequence[Op]

    def __call__(self, frame: DataFrame) -> DataFrame:
        for op in self.ops:
            frame = op(frame)
        return frame


def _full_match(column: Column, pattern: str) -> Column:
    return column.rlike(f"^(?:{pattern})$")


@dataclass(frozen=True)
class ParseDelimited:
    """Raw text lines (spark.read.text) -> typed spec columns, the raw line, and a well-formed flag.

    A line is well formed when it has exactly the spec's field count, its label matches the label pattern
    and every non-empty dense field matches the dense pattern: the same rules recdp.rawread applies.
    Empty lines are skipped, and so is the header line of files that have one.
    """

    spec: DatasetSpec

    def __call__(self, frame: DataFrame) -> DataFrame:
        spec = self.spec
        names = spec.raw_columns
        lines = frame.where(F.col("value") != "")
        if spec.raw.header:
            lines = lines.where(F.col("value") != spec.raw.delimiter.join(names))
        fields = F.split(F.col("value"), re.escape(spec.raw.delimiter), -1)
        # get() and try_cast() give null instead of an error (Spark's ANSI mode) on short or malformed lines.
        raw = {name: F.nullif(F.get(fields, i), F.lit("")) for i, name in enumerate(names)}
        well_formed = (F.size(fields) == len(names)) & F.coalesce(
            _full_match(raw[spec.label], spec.parse.label_pattern), F.lit(False))
        for name in spec.dense:
            well_formed = well_formed & (raw[name].isNull() | _full_match(raw[name], spec.parse.dense_pattern))
        return lines.select(
            F.col("value").alias(LINE),
            well_formed.alias(WELL_FORMED),
            raw[spec.label].try_cast("int").alias(spec.label),
            *[raw[name].try_cast("double").alias(name) for name in spec.dense],
            *[raw[name].alias(name) for name in spec.categorical],
        )


@dataclass(frozen=True)
class DropMalformed:
    def __call__(self, frame: DataFrame) -> DataFrame:
        return frame.where(F.col(WELL_FORMED)).drop(WELL_FORMED)


@dataclass(frozen=True)
class FillNA:
    columns: Sequence[str]
    value: float = 0.0

    def __call__(self, frame: DataFrame) -> DataFrame:
        return frame.fillna(self.value, subset=list(self.columns))


@dataclass(frozen=True)
class ClipNegative:
    columns: Sequence[str]

    def __call__(self, frame: DataFrame) -> DataFrame:
        return frame.withColumns({c: F.greatest(F.col(c), F.lit(0.0)) for c in self.columns})


@dataclass(frozen=True)
class Log1p:
    columns: Sequence[str]

    def __call__(self, frame: DataFrame) -> DataFrame:
        return frame.withColumns({c: F.log1p(F.col(c)) for c in self.columns})


@dataclass(frozen=True)
class HexToInt:
    """Hex strings -> 64-bit ints (at most 15 hex digits, so the value stays positive).

    A value that is not hex becomes -1, which no vocabulary holds: it maps to the out-of-vocabulary id.
    (unhex() is null for a non-hex string and is much cheaper than a regex match.)
    """

    columns: Sequence[str]

    def __call__(self, frame: DataFrame) -> DataFrame:
        def convert(c: Column) -> Column:
            valid = F.unhex(F.concat(F.lit("0"), c)).isNotNull() & (F.length(c) <= 15)
            return F.when(c.isNull(), F.lit(None).cast("long")).when(
                valid, F.conv(c, 16, 10).cast("long")).otherwise(F.lit(-1).cast("long"))

        return frame.withColumns({c: convert(F.col(c)) for c in self.columns})


@dataclass(frozen=True)
class Categorify:
    """Map categorical strings to ids through a vocabulary frame (column, value, id).

    Missing values get MISSING_ID, values the vocabulary does not hold get OOV_ID. Each column is one
    equi-join, which Spark broadcasts when the column's vocabulary is small.
    """

    columns: Sequence[str]
    vocabulary: DataFrame

    def __call__(self, frame: DataFrame) -> DataFrame:
        for name in self.columns:
            mapping = self.vocabulary.where(F.col("column") == name).select(
                F.col("value").alias(name), F.col("id").alias(f"{name}__id"))
            frame = frame.join(mapping, on=name, how="left").withColumn(
                name,
                F.when(F.col(name).isNull(), F.lit(MISSING_ID))
                .otherwise(F.coalesce(F.col(f"{name}__id"), F.lit(OOV_ID)))
                .cast("int"),
            ).drop(f"{name}__id")
        return frame


@dataclass(frozen=True)
class AssignSplit:
    """Deterministic train/valid/test split by a seeded hash of the raw line; drops the line after."""

    train: float
    valid: float
    seed: int

    def __call__(self, frame: DataFrame) -> DataFrame:
        bucket = F.pmod(F.xxhash64(F.col(LINE), F.lit(self.seed)), F.lit(1_000_000))
        return frame.withColumn(
            SPLIT,
            F.when(bucket < int(self.train * 1_000_000), F.lit("train"))
            .when(bucket < int((self.train + self.valid) * 1_000_000), F.lit("valid"))
            .otherwise(F.lit("test")),
        ).drop(LINE)


def parse_pipeline(spec: DatasetSpec) -> Pipeline:
    """Raw lines -> typed, split rows (malformed ones flagged), with categorical keys ready to count."""
    splits = spec.preprocess.splits
    ops: list[Op] = [ParseDelimited(spec), AssignSplit(splits.train, splits.valid, spec.preprocess.split_seed)]
    if spec.preprocess.hex_categoricals:
        ops.append(HexToInt(list(spec.categorical)))
    return Pipeline(ops)


def categorical_key_type(spec: DatasetSpec) -> str:
    """The Spark type of categorical keys after parse_pipeline, and so of vocabulary values."""
    return "bigint" if spec.preprocess.hex_categoricals else "string"


def standard_pipeline(spec: DatasetSpec, vocabulary: DataFrame) -> Pipeline:
    """The default preprocessing of a parsed, well-formed, split frame, as DLRM's Criteo preprocessing does."""
    dense = list(spec.dense)
    return Pipeline([
        FillNA(dense, 0.0),
        ClipNegative(dense),
        Log1p(dense),
        Categorify(list(spec.categorical), vocabulary),
    ])
