"""The spec's parse rules, implemented once, over Arrow: raw delimited text -> typed columns.

A line is malformed when it has the wrong number of fields, when its label does not match the spec's label
pattern, or when a non-empty dense field does not match the dense pattern. Bytes that are not UTF-8 are
read as U+FFFD, as Spark's text reader reads them: a line holding them then fails those rules, or carries
U+FFFD into a categorical value, which validation's format check reports. Empty fields are missing (null).
A byte order mark opening a line is ignored: a file saved with one keeps its first row, whether the file is
read whole (validation) or as lines (Spark's text reader does not drop it).
Typed records (Parquet) go through the same rules: each value is read as the text it stands for
(`parse_table`), so a NaN in a dense column is malformed, as the text "nan" would be.

Validation (recdp.rawread, files streamed in blocks) and the Spark job (recdp.jobs.preprocess, batches of
lines) both read with Arrow's CSV reader under the same options and call `keep_well_formed`, so they agree
row by row on what is bad.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recdp.spec import DatasetSpec

MAX_EXAMPLES = 5
BLOCK_BYTES = 1 << 24
READ_BYTES = 1 << 22
# Labels beyond this magnitude are no class: they parse to null, which the label checks refuse.
LABEL_LIMIT = 2.0**62
BOM = "\ufeff"
CARRY = "_carry"


class UnreadableError(ValueError):
    """Text that cannot be parsed at all, even with invalid bytes replaced."""


@dataclass
class ParsedRows:
    table: pa.Table  # well-formed rows: label int64, dense float64, categorical strings (null = missing)
    rows: int  # lines read (well-formed and malformed; empty lines and header lines are not rows)
    malformed: int

    @property
    def well_formed(self) -> int:
        return self.rows - self.malformed


def full_match(pattern: str) -> str:
    return f"^(?:{pattern})$"


def _csv_options(spec: DatasetSpec, names: Sequence[str], skip_rows: int, use_threads: bool, block_bytes: int,
                 on_invalid) -> dict:
    return {
        "read_options": pacsv.ReadOptions(column_names=list(names), skip_rows=skip_rows, block_size=block_bytes,
                                          use_threads=use_threads),
        "convert_options": pacsv.ConvertOptions(column_types={name: pa.string() for name in names},
                                                null_values=[""], strings_can_be_null=True),
        "parse_options": pacsv.ParseOptions(delimiter=spec.raw.delimiter, quote_char=False,
                                            invalid_row_handler=on_invalid),
    }


def _invalid_row_counter(where: str, examples: list[str]):
    def count_invalid(row: pacsv.InvalidRow) -> str:
        count_invalid.skipped += 1
        if len(examples) < MAX_EXAMPLES:
            examples.append(f"{where}{row.number}: {row.actual_columns} fields, "
                            f"expected {row.expected_columns}: {row.text[:120]!r}")
        return "skip"
    count_invalid.skipped = 0
    return count_invalid


def read_delimited(spec: DatasetSpec, source: bytes | pa.Buffer | str, names: Sequence[str], *, skip_rows: int = 0,
                   where: str = "", examples: list[str] | None = None, use_threads: bool = True,
                   ) -> tuple[pa.Table, int]:
    """Every field of `names` as a nullable string; lines with a wrong field count are counted and skipped.

    `source` is a file path or the text itself. Returns (table, lines skipped for their field count).
    `use_threads=False` where the caller is one of several parallel tasks already (a Spark task)."""
    examples = examples if examples is not None else []
    examples_before = len(examples)
    counter = _invalid_row_counter(where, examples)
    options = _csv_options(spec, names, skip_rows, use_threads, BLOCK_BYTES, counter)
    try:
        return pacsv.read_csv(_stream(source), **options), counter.skipped
    except pa.ArrowInvalid:
        # Bytes that are not UTF-8 stop Arrow's reader (its invalid-row handler is not even called): read them
        # as U+FFFD instead, and count again from the start.
        del examples[examples_before:]
        counter = _invalid_row_counter(where, examples)
        options = _csv_options(spec, names, skip_rows, use_threads, BLOCK_BYTES, counter)
        try:
            return pacsv.read_csv(_replaced(source), **options), counter.skipped
        except pa.ArrowInvalid as exc:
            raise UnreadableError(f"cannot read {where or 'text'}: {exc}") from exc


class _Utf8Replacing(io.RawIOBase):
    """A binary file whose bytes that are not UTF-8 read as U+FFFD, decoded incrementally (a character split
    across two reads stays whole). Valid UTF-8 comes out unchanged."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "rb")
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._pending) < size:
            chunk = self._file.read(READ_BYTES if size < 0 else max(size, READ_BYTES))
            self._pending += self._decoder.decode(chunk, final=not chunk).encode()
            if not chunk:
                break
        if size < 0:
            size = len(self._pending)
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def close(self) -> None:
        self._file.close()
        super().close()


def stream_delimited(spec: DatasetSpec, path: str, names: Sequence[str], *, skip_rows: int = 0, where: str = "",
                     examples: list[str] | None = None, block_bytes: int = BLOCK_BYTES,
                     ) -> Iterator[tuple[pa.Table, int]]:
    """`read_delimited` of a file, in batches of about `block_bytes`: yields (table, lines skipped in it for
    their field count). Memory stays a few blocks whatever the file's size."""
    examples = examples if examples is not None else []
    counter = _invalid_row_counter(where, examples)
    options = _csv_options(spec, names, skip_rows, True, block_bytes, counter)
    with _Utf8Replacing(path) as source:
        try:
            reader = pacsv.open_csv(source, **options)
        except StopIteration:  # no rows at all past skip_rows
            return
        except pa.ArrowInvalid as exc:
            raise UnreadableError(f"cannot read {where or path}: {exc}") from exc
        skipped_before = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise UnreadableError(f"cannot read {where or path}: {exc}") from exc
            yield pa.Table.from_batches([batch]), counter.skipped - skipped_before
            skipped_before = counter.skipped
        if counter.skipped > skipped_before:
            yield pa.table({name: pa.array([], pa.string()) for name in names}), counter.skipped - skipped_before


def _stream(source: bytes | pa.Buffer | str):
    return source if isinstance(source, str) else pa.BufferReader(source)


def _replaced(source: bytes | pa.Buffer | str) -> io.BytesIO:
    if isinstance(source, str):
        with open(source, "rb") as handle:
            data = handle.read()
    else:
        data = source.to_pybytes() if isinstance(source, pa.Buffer) else bytes(source)
    return io.BytesIO(data.decode("utf-8", errors="replace").encode())


# Patterns that accept every non-empty string of ASCII digits: such values need no regex (most counts do not).
_DIGITS_ACCEPTED = {r"-?[0-9]+", r"-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?"}


def _matches(column: pa.ChunkedArray | pa.Array, pattern: str) -> pa.ChunkedArray | pa.Array:
    """Whether each value matches the whole `pattern` (null stays null)."""
    if pattern not in _DIGITS_ACCEPTED:
        return pc.match_substring_regex(column, full_match(pattern))
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    digits = pc.ascii_is_decimal(column)  # "" is not decimal
    undecided = pc.invert(digits.fill_null(True))
    if not pc.any(undecided).as_py():
        return digits
    checked = pc.match_substring_regex(column.filter(undecided), full_match(pattern))
    return pc.replace_with_mask(digits, undecided, checked)


def keep_well_formed(spec: DatasetSpec, raw: pa.Table, examples: list[str] | None = None,
                     where: str = "row ", first_row: int = 0) -> tuple[pa.Table, int]:
    """The rows whose label and dense fields follow the spec, typed; and how many were dropped.

    Columns other than the label and the dense ones pass through as they are."""
    examples = examples if examples is not None else []
    first = next(name for name in raw.column_names if name != CARRY)
    if pc.any(pc.starts_with(raw[first], BOM)).as_py():
        raw = raw.set_column(raw.column_names.index(first), first,
                             pc.replace_substring_regex(raw[first], f"^{BOM}", ""))
    good = _matches(raw[spec.label].fill_null(""), spec.parse.label_pattern)
    for name in spec.dense:
        column = raw[name]
        matches = _matches(column, spec.parse.dense_pattern)
        good = pc.and_(good, pc.or_(pc.is_null(column), matches.fill_null(True)))
    bad_mask = pc.invert(good)
    bad = pc.sum(bad_mask.cast(pa.int64())).as_py() or 0
    if bad and len(examples) < MAX_EXAMPLES:
        for index in pc.indices_nonzero(bad_mask)[: MAX_EXAMPLES - len(examples)].to_pylist():
            row = {c: raw[c][index].as_py() for c in [spec.label, *spec.dense]}
            examples.append(f"{where}{first_row + index}: label or dense field not numeric: {row}")
    clean = raw.filter(good) if bad else raw
    columns = {}
    for name in clean.column_names:
        column = clean[name]
        if name == spec.label:
            fits = pc.less(pc.abs(pc.cast(column, pa.float64())), LABEL_LIMIT)
            column = pc.cast(pc.if_else(fits, column, pa.scalar(None, pa.string())), pa.int64())
        elif name in spec.dense:
            column = pc.cast(column, pa.float64())
        columns[name] = column
    return pa.table(columns), bad


def parse_lines(spec: DatasetSpec, lines: pa.Array, carry: pa.Array | None = None) -> ParsedRows:
    """Raw lines (no line ends; empty and header lines already removed) -> their well-formed rows, typed.

    `carry` is a column aligned with `lines` (e.g. a split code computed from the raw line); it comes out as
    the table's first column "_carry", aligned with the rows that were kept. Runs single-threaded: it is
    meant for one of many parallel tasks."""
    names = list(spec.raw_columns)
    total = len(lines)
    # A line with a wrong field count is skipped by Arrow's reader (and counted); the carry is joined into
    # its line, so it is skipped with it and stays aligned.
    if carry is not None:
        lines = pc.binary_join_element_wise(pc.cast(carry, pa.string()), lines, spec.raw.delimiter)
        names = [CARRY, *names]
    if len(lines) == 0:
        raw = pa.table({n: pa.array([], pa.string()) for n in names})
    else:
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines), "\n")[0]
        raw, _ = read_delimited(spec, joined.as_buffer(), names, use_threads=False)
    wrong_count = total - raw.num_rows
    table, bad = keep_well_formed(spec, raw)
    return ParsedRows(table, total, wrong_count + bad)


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or (
        pa.types.is_dictionary(kind) and _is_text(kind.value_type))


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def type_problems(spec: DatasetSpec, schema: pa.Schema) -> dict[str, str]:
    """Columns of a typed file (Parquet) whose type the spec's rules cannot read: column -> what it is.

    A label is an integer, a boolean or text; a dense value a number or text; a categorical value text or an
    integer. Text goes through the same patterns as delimited files."""
    accepted = {spec.label: lambda k: pa.types.is_integer(k) or pa.types.is_boolean(k) or _is_text(k),
                **{n: lambda k: _is_number(k) or _is_text(k) for n in spec.dense},
                **{n: lambda k: pa.types.is_integer(k) or _is_text(k) for n in spec.categorical}}
    return {name: str(schema.field(name).type) for name, ok in accepted.items()
            if name in schema.names and not ok(schema.field(name).type)}


def _as_text(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A typed column as the text the parse rules read: numbers in their shortest exact decimal form (NaN and
    infinities as "nan"/"inf", which no number pattern accepts), booleans as 0/1, null as missing."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = pc.cast(column, kind.value_type)
    elif pa.types.is_boolean(kind):
        column = pc.cast(column, pa.int8())
    return pc.cast(column, pa.string())


def parse_table(spec: DatasetSpec, table: pa.Table, carry: pa.Array | None = None,
                examples: list[str] | None = None, where: str = "row ", first_row: int = 0) -> ParsedRows:
    """Typed records (a Parquet batch; columns by name, types accepted by `type_problems`) -> their
    well-formed rows, by the same rules as delimited lines: every value is read as the text it stands for."""
    columns = {name: _as_text(table[name]) for name in spec.raw_columns}
    if carry is not None:
        columns = {CARRY: carry, **columns}
    clean, bad = keep_well_formed(spec, pa.table(columns), examples, where=where, first_row=first_row)
    return ParsedRows(clean, table.num_rows, bad)
