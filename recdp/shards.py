"""Training shards: contiguous little-endian arrays plus a JSON header, readable with numpy.memmap.

One shard directory per split:
    header.json   rows, column names, dtypes, shapes, vocabulary version and table sizes
    label.f32     float32 [rows]
    dense.f32     float32 [rows, n_dense], row-major
    cat.i32       int32   [rows, n_categorical], row-major

The writer streams record batches to disk, so memory stays flat whatever the row count; the trainer maps
the files without a copy.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
FILES = {"label": ("label.f32", "<f4"), "dense": ("dense.f32", "<f4"), "cat": ("cat.i32", "<i4")}


@dataclass
class ShardHeader:
    rows: int
    label: str
    dense_columns: list[str]
    categorical_columns: list[str]
    vocab_version: int
    table_sizes: dict[str, int]
    dtypes: dict[str, str] = field(default_factory=lambda: {k: v[1] for k, v in FILES.items()})
    files: dict[str, str] = field(default_factory=lambda: {k: v[0] for k, v in FILES.items()})
    format_version: int = FORMAT_VERSION


@dataclass
class Shards:
    header: ShardHeader
    label: np.ndarray
    dense: np.ndarray
    cat: np.ndarray

    def __len__(self) -> int:
        return self.header.rows


class ShardWriter:
    """Append (label, dense, cat) batches to one shard directory; close() writes the header last.

    The header is written only after all arrays are complete, so a reader never sees a header that
    promises rows the files do not hold.
    """

    def __init__(self, directory: Path, *, label: str, dense_columns: list[str], categorical_columns: list[str],
                 vocab_version: int, table_sizes: dict[str, int]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.rows = 0
        self._header = dict(label=label, dense_columns=list(dense_columns),
                            categorical_columns=list(categorical_columns), vocab_version=vocab_version,
                            table_sizes=dict(table_sizes))
        self._handles = {k: open(directory / name, "wb") for k, (name, _) in FILES.items()}

    def append(self, label: np.ndarray, dense: np.ndarray, cat: np.ndarray) -> None:
        n = len(label)
        if dense.shape != (n, len(self._header["dense_columns"])) or \
                cat.shape != (n, len(self._header["categorical_columns"])):
            raise ValueError(f"batch shapes {dense.shape} / {cat.shape} do not match the columns")
        try:
            self._handles["label"].write(np.ascontiguousarray(label, dtype="<f4").tobytes())
            self._handles["dense"].write(np.ascontiguousarray(dense, dtype="<f4").tobytes())
            self._handles["cat"].write(np.ascontiguousarray(cat, dtype="<i4").tobytes())
        except BaseException:
            self.abort()
            raise
        self.rows += n

    def abort(self) -> None:
        """Close the files and write no header: the directory is incomplete (its staging owner removes it).
        Closing matters on a full disk: a deleted file still open keeps its space."""
        for handle in self._handles.values():
            try:
                handle.close()  # closes the file even when the final flush fails
            except OSError:
                pass

    def close(self) -> ShardHeader:
        errors = []
        for handle in self._handles.values():
            try:
                handle.close()
            except OSError as error:
                errors.append(error)
        if errors:
            raise errors[0]
        header = ShardHeader(rows=self.rows, **self._header)
        (self.directory / "header.json").write_text(json.dumps(asdict(header), indent=2, sort_keys=True))
        return header


def write_shards(
    directory: Path,
    batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    **header: Any,
) -> ShardHeader:
    """Write a whole shard directory from (label, dense, cat) batches; header fields as ShardWriter takes."""
    writer = ShardWriter(directory, **header)
    try:
        for label, dense, cat in batches:
            writer.append(label, dense, cat)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def read_shards(directory: Path) -> Shards:
    """Memory-map a shard directory (read-only, no copy)."""
    header = ShardHeader(**json.loads((directory / "header.json").read_text()))
    if header.format_version != FORMAT_VERSION:
        raise ValueError(f"shard format {header.format_version} is not {FORMAT_VERSION}")

    def mapped(key: str, width: int | None) -> np.ndarray:
        shape = (header.rows,) if width is None else (header.rows, width)
        if header.rows == 0:
            return np.zeros(shape, dtype=header.dtypes[key])
        return np.memmap(directory / header.files[key], dtype=header.dtypes[key], mode="r", shape=shape)

    return Shards(
        header,
        mapped("label", None),
        mapped("dense", len(header.dense_columns)),
        mapped("cat", len(header.categorical_columns)),
    )


def parquet_batches(
    files: list[Path], columns: list[str], batch_rows: int = 65_536,
) -> Iterator[pa.Table]:
    """Stream Parquet files (in the order given) as tables of at most batch_rows rows."""
    if not files:
        return
    dataset = pads.dataset([str(f) for f in files], format="parquet")
    started, done = time.monotonic(), 0
    for batch in dataset.to_batches(columns=columns, batch_size=batch_rows):
        done += batch.num_rows
        yield pa.Table.from_batches([batch])
    log.info("shards: streamed %d rows from %d Parquet files (%.0f rows/s)", done, len(files),
             done / max(time.monotonic() - started, 1e-9))


def allocate_shards(directory: Path, rows: int, n_dense: int, n_categorical: int) -> None:
    """Create a shard directory's array files at their final size, for writers that fill them in parallel
    (each at its own rows, with write_shard_rows); the header comes last, with write_shard_header."""
    directory.mkdir(parents=True, exist_ok=True)
    widths = {"label": 1, "dense": n_dense, "cat": n_categorical}
    for key, (name, dtype) in FILES.items():
        with open(directory / name, "wb") as handle:
            handle.truncate(rows * widths[key] * np.dtype(dtype).itemsize)


def write_shard_rows(directory: Path, first_row: int, label: np.ndarray, dense: np.ndarray, cat: np.ndarray) -> None:
    """Write rows first_row.. of allocated shard files in place. Rewriting the same rows with the same values
    (a retried task) leaves the files as they were."""
    arrays = {"label": np.ascontiguousarray(label, dtype="<f4"), "dense": np.ascontiguousarray(dense, dtype="<f4"),
              "cat": np.ascontiguousarray(cat, dtype="<i4")}
    for key, (name, _) in FILES.items():
        array = arrays[key]
        row_bytes = array.itemsize * (array.shape[1] if array.ndim == 2 else 1)
        descriptor = os.open(directory / name, os.O_WRONLY)
        try:
            data, position = memoryview(array).cast("B"), first_row * row_bytes
            while data:
                written = os.pwrite(descriptor, data, position)
                data, position = data[written:], position + written
        finally:
            os.close(descriptor)


def write_shard_header(directory: Path, header: ShardHeader) -> None:
    """Declare a shard directory complete: written only once every row is in place."""
    (directory / "header.json").write_text(json.dumps(asdict(header), indent=2, sort_keys=True))
