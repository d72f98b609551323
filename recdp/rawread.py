"""Read a raw day partition into Arrow for validation, counting malformed lines instead of failing on them.

The rules for a well-formed line come from the spec and are applied by recdp.parse, which the Spark job
uses too, so validation and preprocessing agree on what is bad.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from recdp.parse import UnreadableError, keep_well_formed, read_delimited
from recdp.spec import DatasetSpec


class PartitionError(ValueError):
    """A partition that cannot be read at all; the message says why."""


class PartitionMissingError(PartitionError):
    pass


class PartitionEmptyError(PartitionError):
    pass


@dataclass
class RawPartition:
    table: pa.Table  # well-formed rows: label int64, dense float64, categorical dictionary strings
    columns_in_file: list[str]  # the header's columns for files with a header, else the spec's
    total_rows: int
    bad_rows: int
    bad_examples: list[str] = field(default_factory=list)

    @property
    def bad_row_fraction(self) -> float:
        return self.bad_rows / self.total_rows if self.total_rows else 0.0


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


def _read_file(spec: DatasetSpec, path: Path, bad_examples: list[str]) -> tuple[pa.Table, list[str], int]:
    if spec.raw.header:
        with open(path, "rb") as handle:
            first = handle.readline().decode("utf-8", errors="replace").rstrip("\r\n")
        names, skip = first.split(spec.raw.delimiter), 1
    else:
        names, skip = list(spec.raw_columns), 0
    try:
        table, invalid = read_delimited(spec, str(path), names, skip_rows=skip, where=f"{path.name}:",
                                        examples=bad_examples)
    except UnreadableError as exc:
        raise PartitionError(str(exc)) from exc
    return table, names, invalid


def read_partition(spec: DatasetSpec, directory: Path) -> RawPartition:
    bad_examples: list[str] = []
    tables, invalid_total, columns_in_file = [], 0, list(spec.raw_columns)
    for path in partition_files(spec, directory):
        table, names, invalid = _read_file(spec, path, bad_examples)
        invalid_total += invalid
        columns_in_file = names
        tables.append(table)
    try:
        raw = pa.concat_tables(tables)
    except pa.ArrowInvalid as exc:
        raise PartitionError(f"files of {directory} have different columns: {exc}") from exc
    total = raw.num_rows + invalid_total
    if total == 0:
        raise PartitionEmptyError(f"partition {directory} has no rows")
    missing_columns = [c for c in spec.raw_columns if c not in raw.column_names]
    if missing_columns:
        # A header that does not name the spec's columns: keep what was read so GX reports the mismatch.
        return RawPartition(raw, columns_in_file, total, invalid_total, bad_examples)

    clean, bad_count = keep_well_formed(spec, raw, bad_examples)
    columns = {name: pc.dictionary_encode(clean[name]) if name in spec.categorical else clean[name]
               for name in clean.column_names}
    return RawPartition(pa.table(columns), columns_in_file, total, invalid_total + bad_count, bad_examples)
