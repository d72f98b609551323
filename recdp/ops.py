"""The preprocessing ops of one batch of well-formed rows, on Arrow and numpy, as each Spark task runs them.

    dense  = log1p(max(fillna(x, 0), 0))             (DLRM's Criteo preprocessing)
    codes  = hex_codes(C)                             (hex strings as int64, without string round trips)
    ids    = VocabularyLookup(keys, ids).ids(codes)   (missing -> MISSING_ID, unknown -> OOV_ID)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recdp.ids import MISSING_ID, OOV_ID

MAX_HEX_DIGITS = 15  # so that every code is a positive int64
NOT_HEX = -1  # the code of a value that is not 1-15 hex digits: no vocabulary holds it
_NIBBLES = np.full(256, -1, dtype=np.int8)
for _digit in b"0123456789":
    _NIBBLES[_digit] = _digit - ord("0")
for _offset, _digit in enumerate(b"abcdef"):
    _NIBBLES[_digit] = _NIBBLES[_digit - 32] = 10 + _offset


def dense_features(table: pa.Table, columns: Sequence[str]) -> np.ndarray:
    """float64 [rows, len(columns)]: missing -> 0, negatives -> 0, then log1p."""
    if not columns:
        return np.zeros((table.num_rows, 0))
    values = np.column_stack([pc.fill_null(table[c], 0.0).to_numpy() for c in columns])
    return np.log1p(np.maximum(values, 0.0))


def hex_codes(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Hex strings -> int64 codes; null stays null (missing), anything but 1-15 hex digits is NOT_HEX."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    eight_wide = _eight_digit_codes(values)
    if eight_wide is not None:
        return eight_wide
    present = values.is_valid().to_numpy(zero_copy_only=False)
    codes = np.zeros(len(values), dtype=np.int64)
    codes[present] = _present_hex_codes(values.drop_null().cast(pa.large_string()))
    return pa.array(codes, type=pa.int64(), mask=~present)


_LOW_NIBBLES = np.uint64(0x0F0F0F0F0F0F0F0F)
_LETTER_BITS = np.uint64(0x0101010101010101)
_HIGH_BITS = np.uint64(0x8080808080808080)
_BYTES = np.uint64(0x0101010101010101)


def _bytes_between(words: np.ndarray, low: int, high: int) -> np.ndarray:
    """Per byte of ASCII words: the high bit set where low <= byte <= high (no carry crosses a byte)."""
    at_least_low = words + np.uint64(0x80 - low) * _BYTES
    above_high = words + np.uint64(0x7F - high) * _BYTES
    return at_least_low & ~above_high & _HIGH_BITS


def _all_hex(words: np.ndarray) -> bool:
    if (words & _HIGH_BITS).any():
        return False  # not ASCII
    lower = words | np.uint64(0x20) * _BYTES  # 'A'-'F' -> 'a'-'f'; digits keep bit 5 already
    valid = _bytes_between(words, 0x30, 0x39) | _bytes_between(lower, 0x61, 0x66)
    return bool((valid == _HIGH_BITS).all())


def _eight_digit_codes(values: pa.Array) -> pa.Array | None:
    """Criteo's case, eight digits a present value, decoded eight bytes at a time (SWAR); None otherwise.

    Present values of one width sit back to back in the data buffer, so it reads as one uint64 per value:
    each byte's nibble is (byte & 0xF) + 9 for letters (bit 6 set), and three shift-and-mask steps pack the
    eight nibbles, first digit most significant."""
    if not pa.types.is_string(values.type) or len(values) == 0:
        return None
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset: values.offset + len(values) + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    present = values.is_valid().to_numpy(zero_copy_only=False)
    count = int(present.sum())
    lengths = np.diff(offsets)
    if count == 0 or end - start != 8 * count or not (lengths[present] == 8).all():
        return None
    raw = np.frombuffer(values.buffers()[2], dtype=np.uint8)[start:end]
    words = raw.view("<u8") if raw.ctypes.data % 8 == 0 else raw.copy().view("<u8")
    if not _all_hex(words):
        return None  # the general path marks the values that are not hex
    nibbles = (words & _LOW_NIBBLES) + ((words >> np.uint64(6)) & _LETTER_BITS) * np.uint64(9)
    # Byte i holds digit i (little-endian): pair digits into bytes, bytes into 16-bit and then 32-bit values.
    pairs = ((nibbles & np.uint64(0x000F000F000F000F)) << np.uint64(4)) | \
        ((nibbles & np.uint64(0x0F000F000F000F00)) >> np.uint64(8))
    quads = ((pairs & np.uint64(0x000000FF000000FF)) << np.uint64(8)) | \
        ((pairs & np.uint64(0x00FF000000FF0000)) >> np.uint64(16))
    codes = ((quads & np.uint64(0x000000000000FFFF)) << np.uint64(16)) | \
        ((quads & np.uint64(0x0000FFFF00000000)) >> np.uint64(32))
    full = np.zeros(len(values), dtype=np.int64)
    full[present] = codes.astype(np.int64)
    return pa.array(full, type=pa.int64(), mask=~present)


def _present_hex_codes(strings: pa.LargeStringArray) -> np.ndarray:
    n = len(strings)
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int64)[strings.offset: strings.offset + n + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    data = strings.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8)[start:end] if data is not None and end > start \
        else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    nibbles = np.take(_NIBBLES, raw)
    width = int(lengths[0]) if n else 0
    if n and 0 < width <= MAX_HEX_DIGITS and (lengths == width).all():
        # Fixed width (Criteo's 8 digits): one row of digits per value.
        digits = nibbles.reshape(n, width)
        codes = np.maximum(digits, 0).astype(np.int64) @ (16 ** np.arange(width - 1, -1, -1, dtype=np.int64))
        codes[digits.min(axis=1) < 0] = NOT_HEX
        return codes
    # Any widths: digit i of a value is worth nibble << 4 * (digits after it), and the value is their sum.
    # Wrap-around uint64 running sums give each value's sum exactly, since every value is below 2**60.
    row_of_byte = np.repeat(np.arange(n), lengths)
    shift = 4 * (offsets[1:][row_of_byte] - 1 - np.arange(start, end))
    usable = (nibbles >= 0) & (shift < 64)
    digits = np.maximum(nibbles, 0).astype(np.int64)
    contribution = np.where(usable, np.left_shift(digits, np.where(usable, shift, 0)), 0)
    running = np.concatenate([np.zeros(1, np.uint64), np.cumsum(contribution.astype(np.uint64), dtype=np.uint64)])
    bad_running = np.concatenate([np.zeros(1, np.int64), np.cumsum(nibbles < 0, dtype=np.int64)])
    edges = offsets - start
    codes = (running[edges[1:]] - running[edges[:-1]]).astype(np.int64)
    bad = (bad_running[edges[1:]] - bad_running[edges[:-1]] > 0) | (lengths > MAX_HEX_DIGITS) | (lengths == 0)
    codes[bad] = NOT_HEX
    return codes


def categorical_keys(column: pa.Array | pa.ChunkedArray, hex_values: bool) -> pa.Array:
    """The keys a vocabulary holds for a categorical column: hex codes (hex_values, as Criteo's), else the
    strings themselves."""
    if hex_values:
        return hex_codes(column)
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


class VocabularyLookup:
    """One column's vocabulary as keys and their ids: a vectorized value -> id map.

    The keys sit in a pandas Index, whose hash table (built once, on the first lookup) finds a value in
    about 20-30 ns where a binary search over millions of sorted keys takes 120-230 ns (cache misses)."""

    def __init__(self, keys: np.ndarray | pa.Array, ids: np.ndarray) -> None:
        import pandas as pd

        self.ids_of_keys = np.asarray(ids, dtype=np.int32)
        if isinstance(keys, pa.Array) and pa.types.is_integer(keys.type):
            keys = keys.to_numpy()
        self._integers = isinstance(keys, np.ndarray) and keys.dtype.kind in "iu"
        if self._integers:
            self._index = pd.Index(np.asarray(keys, dtype=np.int64))
        else:
            values = keys.to_pylist() if isinstance(keys, pa.Array) else list(keys)
            self._index = pd.Index(values, dtype=object)

    def __len__(self) -> int:
        return len(self.ids_of_keys)

    def ids(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """int32 ids of `values` (codes or strings); null -> MISSING_ID, not in the vocabulary -> OOV_ID."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        missing = values.is_null().to_numpy(zero_copy_only=False)
        result = np.full(len(values), OOV_ID, dtype=np.int32)
        if len(self.ids_of_keys):
            if self._integers:
                where = self._index.get_indexer(pc.fill_null(values, NOT_HEX).to_numpy())
            else:
                where = self._index.get_indexer(values.to_numpy(zero_copy_only=False))
            found = where >= 0
            result[found] = self.ids_of_keys[where[found]]
        result[missing] = MISSING_ID
        return result
