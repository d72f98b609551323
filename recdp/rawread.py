"""Stream a raw day partition as Arrow batches for validation, counting malformed lines instead of failing.

The rules for a well-formed line come from the spec and are applied by recdp.parse, which the Spark job
uses too, so validation and preprocessing agree on what is bad.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recdp.parse import BLOCK_BYTES, UnreadableError, keep_well_formed, parse_table, stream_delimited, type_problems
from recdp.spec import DatasetSpec

BATCH_ROWS = 65_536  # rows per Parquet batch: a few tens of MB of Criteo columns


class PartitionError(ValueError):
    """A partition that cannot be read at all; the message says why."""


class PartitionMissingError(PartitionError):
    pass


class PartitionEmptyError(PartitionError):
    pass


@dataclass
class PartitionTally:
    """What streaming a partition saw besides its well-formed rows."""

    columns_in_file: list[str]  # the header's columns for files with a header, else the spec's
    total_rows: int = 0
    bad_rows: int = 0
    bad_examples: list[str] = field(default_factory=list)
    type_problems: dict[str, str] = field(default_factory=dict)  # typed files: column -> unreadable type

    @property
    def bad_row_fraction(self) -> float:
        return self.bad_rows / self.total_rows if self.total_rows else 0.0

    @property
    def valid_rows(self) -> int:
        return self.total_rows - self.bad_rows


@dataclass
class RawPartition:
    table: pa.Table  # well-formed rows: label int64, dense float64, categorical strings
    tally: PartitionTally

    @property
    def columns_in_file(self) -> list[str]:
        return self.tally.columns_in_file

    @property
    def total_rows(self) -> int:
        return self.tally.total_rows

    @property
    def bad_rows(self) -> int:
        return self.tally.bad_rows

    @property
    def bad_examples(self) -> list[str]:
        return self.tally.bad_examples


def partition_files(spec: DatasetSpec, directory: Path) -> list[Path]:
    """Data files of a partition; names starting with '_' or '.' are metadata, as Hadoop tools agree."""
    if not directory.is_dir():
        raise PartitionMissingError(f"partition {directory} does not exist")
    files = sorted(
        p for p in directory.glob(spec.raw.file_glob) if p.is_file() and not p.name.startswith(("_", "."))
    )
    files = [p for p in files if p.stat().st_size > 0]  # a zero-byte file (Spark writes some) holds no rows
    if not files:
        raise PartitionEmptyError(f"partition {directory} has no data (no non-empty {spec.raw.file_glob} file)")
    return files


def file_columns(spec: DatasetSpec, path: Path) -> list[str]:
    """The columns of a file: its header's for formats with one, else the spec's."""
    if not spec.raw.header:
        return list(spec.raw_columns)
    with open(path, "rb") as handle:
        first = handle.readline().decode("utf-8", errors="replace").rstrip("\r\n")
    return first.split(spec.raw.delimiter)


def stream_partition(spec: DatasetSpec, directory: Path, tally: PartitionTally | None = None,
                     block_bytes: int = BLOCK_BYTES) -> Iterator[pa.Table]:
    """The partition's well-formed rows in batches (label int64, dense float64, categorical strings),
    counting every row and every malformed one into `tally`. Memory stays a few blocks whatever the size.

    When a file's header lacks a spec column, no rows are typed: the rows are still counted, and
    `tally.columns_in_file` names what the file holds, for the schema check to report."""
    tally = tally if tally is not None else PartitionTally(list(spec.raw_columns))
    if spec.raw.type == "parquet":
        yield from _stream_parquet(spec, partition_files(spec, directory), tally)
    else:
        yield from _stream_delimited(spec, directory, tally, block_bytes)
    if tally.total_rows == 0:
        raise PartitionEmptyError(f"partition {directory} has no rows")


def _stream_delimited(spec: DatasetSpec, directory: Path, tally: PartitionTally, block_bytes: int,
                      ) -> Iterator[pa.Table]:
    for path in partition_files(spec, directory):
        names = file_columns(spec, path)
        if names != tally.columns_in_file and tally.total_rows:
            raise PartitionError(f"files of {directory} have different columns: {path.name} has {names}")
        tally.columns_in_file = names
        schema_ok = all(c in names for c in spec.raw_columns)
        try:
            for raw, wrong_count in stream_delimited(spec, str(path), names, skip_rows=int(spec.raw.header),
                                                     where=f"{path.name}:", examples=tally.bad_examples,
                                                     block_bytes=block_bytes):
                tally.total_rows += raw.num_rows + wrong_count
                tally.bad_rows += wrong_count
                if not schema_ok or raw.num_rows == 0:
                    continue
                clean, bad = keep_well_formed(spec, raw, tally.bad_examples, where=f"{path.name}: row ",
                                              first_row=tally.total_rows - raw.num_rows - wrong_count)
                tally.bad_rows += bad
                yield clean.select(list(spec.raw_columns))
        except UnreadableError as exc:
            raise PartitionError(str(exc)) from exc


def _stream_parquet(spec: DatasetSpec, files: list[Path], tally: PartitionTally) -> Iterator[pa.Table]:
    """Parquet files: the spec's columns by name (others ignored), in batches of BATCH_ROWS rows. A file
    lacking a column, or holding one of a type the rules cannot read, has its rows counted, none typed."""
    for path in files:
        try:
            source = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise PartitionError(f"cannot read {path.name} as Parquet: {exc}") from exc
        schema = source.schema_arrow
        missing = [c for c in spec.raw_columns if c not in schema.names]
        problems = type_problems(spec, schema)
        tally.type_problems.update({f"{path.name}:{c}": kind for c, kind in problems.items()})
        if missing:
            tally.columns_in_file = list(schema.names)
        if missing or problems:
            tally.total_rows += source.metadata.num_rows
            continue
        for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=list(spec.raw_columns)):
            first_row = tally.total_rows
            parsed = parse_table(spec, pa.Table.from_batches([batch]), examples=tally.bad_examples,
                                 where=f"{path.name}: row ", first_row=first_row)
            tally.total_rows += parsed.rows
            tally.bad_rows += parsed.malformed
            if parsed.table.num_rows:
                yield parsed.table.select(list(spec.raw_columns))


def read_partition(spec: DatasetSpec, directory: Path) -> RawPartition:
    """The whole partition in memory: for tests and small days (validation streams instead)."""
    tally = PartitionTally(list(spec.raw_columns))
    batches = list(stream_partition(spec, directory, tally))
    types = {spec.label: pa.int64(), **{n: pa.float64() for n in spec.dense}}
    schema = pa.schema([(name, types.get(name, pa.string())) for name in spec.raw_columns])
    table = pa.concat_tables(batches) if batches else schema.empty_table()
    return RawPartition(table, tally)
