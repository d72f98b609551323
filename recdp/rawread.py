"""Read a raw day partition into Arrow for validation, counting malformed lines instead of failing on them.

The rules for a well-formed line come from the spec (field count, label and dense patterns); the Spark
parser in recdp/ops.py applies the very same rules, so validation and preprocessing agree on what is bad.
"""

from __future__ import annotations

import codecs
import io
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recdp.spec import DatasetSpec

MAX_EXAMPLES = 5


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


def full_match(pattern: str) -> str:
    return f"^(?:{pattern})$"


class _Utf8Replaced(io.RawIOBase):
    """A file's bytes with each invalid UTF-8 sequence read as U+FFFD (as Spark's text reader reads it), a
    chunk at a time."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")  # closed by close()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            chunk = self._file.read(1 << 20)
            self._pending = self._decoder.decode(chunk, final=not chunk).encode()
            if not chunk:
                break
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        self._file.close()
        super().close()


def _read_file(spec: DatasetSpec, path: Path, bad_examples: list[str]) -> tuple[pa.Table, list[str], int]:
    invalid = 0

    def count_invalid(row: pacsv.InvalidRow) -> str:
        nonlocal invalid
        invalid += 1
        if len(bad_examples) < MAX_EXAMPLES:
            bad_examples.append(f"{path.name}:{row.number}: {row.actual_columns} fields, "
                                f"expected {row.expected_columns}: {row.text[:120]!r}")
        return "skip"

    if spec.raw.header:
        with open(path, "rb") as handle:
            first = handle.readline().decode("utf-8", errors="replace").rstrip("\r\n")
        names = first.split(spec.raw.delimiter)
        read_options = pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 24)
    else:
        names = list(spec.raw_columns)
        read_options = pacsv.ReadOptions(column_names=names, block_size=1 << 24)
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names}, null_values=[""], strings_can_be_null=True
    )
    parse = pacsv.ParseOptions(
        delimiter=spec.raw.delimiter, quote_char=False, invalid_row_handler=count_invalid
    )
    examples_before = len(bad_examples)
    try:
        table = pacsv.read_csv(path, read_options=read_options, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid:
        # Bytes that are not UTF-8 stop Arrow's reader (its invalid-row handler cannot even be called): read
        # them as U+FFFD instead, so that such lines are counted as malformed or fail the checks, as in Spark.
        invalid = 0
        del bad_examples[examples_before:]
        try:
            with _Utf8Replaced(path) as source:
                table = pacsv.read_csv(source, read_options=read_options, parse_options=parse,
                                       convert_options=convert)
        except pa.ArrowInvalid as exc:
            raise PartitionError(f"cannot read {path}: {exc}") from exc
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

    good = pc.match_substring_regex(raw[spec.label].fill_null(""), full_match(spec.parse.label_pattern))
    for name in spec.dense:
        column = raw[name]
        matches = pc.match_substring_regex(column, full_match(spec.parse.dense_pattern))
        good = pc.and_(good, pc.or_(pc.is_null(column), matches.fill_null(True)))
    bad_mask = pc.invert(good)
    bad_count = pc.sum(bad_mask.cast(pa.int64())).as_py() or 0
    if bad_count and len(bad_examples) < MAX_EXAMPLES:
        for index in pc.indices_nonzero(bad_mask)[: MAX_EXAMPLES - len(bad_examples)].to_pylist():
            row = {c: raw[c][index].as_py() for c in [spec.label, *spec.dense]}
            bad_examples.append(f"row {index}: label or dense field not numeric: {row}")
    clean = raw.filter(good)
    arrays, names = [], []
    for name in raw.column_names:
        column = clean[name]
        if name == spec.label:
            # A label beyond int64 is no class: null, which the label checks refuse (Spark's try_cast agrees).
            fits = pc.less(pc.abs(pc.cast(column, pa.float64())), 2.0**62)
            column = pc.cast(pc.if_else(fits, column, pa.scalar(None, pa.string())), pa.int64())
        elif name in spec.dense:
            column = pc.cast(column, pa.float64())
        elif name in spec.categorical:
            column = pc.dictionary_encode(column)
        arrays.append(column)
        names.append(name)
    return RawPartition(pa.table(arrays, names=names), columns_in_file, total, invalid_total + bad_count,
                        bad_examples)
