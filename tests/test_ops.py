"""The one parser (recdp.parse) and the batch ops (recdp.ops), on hand-made Arrow data: no Spark needed."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recdp.ids import MISSING_ID, OOV_ID
from recdp.ops import NOT_HEX, VocabularyLookup, dense_features, hex_codes
from recdp.parse import parse_lines
from recdp.rawread import read_partition
from tests.conftest import small_spec


def test_parse_lines_flags_malformed_lines_by_the_spec_rules():
    spec = small_spec("shop_clicks")
    rows = [
        "a1,1,100,seg,cat,3,,phone,eu",  # good, views_7d missing
        "a2,0,12.5,seg,cat,3,7,phone,eu",  # good, decimal dense
        "a3,1,100,seg,cat,3,7,phone",  # too few fields
        "a4,1,ten,seg,cat,3,7,phone,eu",  # text in a dense field
        "a5,yes,1,seg,cat,3,7,phone,eu",  # label not an integer
        "a6,1,1,seg,cat,3,7,phone,eu,extra",  # too many fields
    ]
    carry = pa.array([10, 11, 12, 13, 14, 15], pa.int8())
    parsed = parse_lines(spec, pa.array(rows), carry)
    assert (parsed.rows, parsed.malformed, parsed.well_formed) == (6, 4, 2)
    table = parsed.table
    assert table["_carry"].to_pylist() == ["10", "11"]  # aligned with the rows kept
    assert table["clicked"].to_pylist() == [1, 0] and table["price_cents"].to_pylist() == [100.0, 12.5]
    assert table["views_7d"].to_pylist() == [None, 7.0]
    assert table["item_id"].to_pylist() == ["a1", "a2"] and table["region"].to_pylist() == ["eu", "eu"]


def test_parse_lines_agrees_with_the_validation_reader(tmp_path):
    """The same lines through read_partition (a file, as validation reads it) and parse_lines (a batch of
    lines, as the Spark job reads it): the same rows kept, the same count dropped."""
    spec = small_spec("criteo")
    good = "\t".join(["1", *["3"] * 13, *["0000000a"] * 26])
    lines = [good, good.replace("\t3\t", "\tx\t", 1), "2" + good[1:], good + "\tmore", good[:20],
             "\t".join(["0", *[""] * 13, *[""] * 26]), good.replace("1", "99999999999999999999", 1)]
    folder = tmp_path / "day"
    folder.mkdir()
    (folder / "part-00000.tsv").write_text("\n".join(lines) + "\n")
    partition = read_partition(spec, folder)
    parsed = parse_lines(spec, pa.array(lines))
    assert (parsed.rows, parsed.malformed) == (partition.total_rows, partition.bad_rows)
    for name in spec.raw_columns:
        expected = partition.table[name]
        if name in spec.categorical:
            expected = expected.cast(pa.string())
        assert parsed.table[name].to_pylist() == expected.to_pylist(), name


def test_parse_lines_reads_undecodable_bytes_as_replacement_characters():
    spec = small_spec("criteo")
    good = "\t".join(["1", *["3"] * 13, *["0000000a"] * 26]).encode()
    lines = pa.array([good, b"\xff" + good[1:], good[:-1] + b"\xfe"], pa.binary()).view(pa.string())
    parsed = parse_lines(spec, lines)
    assert (parsed.rows, parsed.malformed) == (3, 1)  # the label "\ufffd" is malformed; a categorical is not
    assert parsed.table["C26"].to_pylist() == ["0000000a", "0000000\ufffd"]


def test_hex_codes():
    values = pa.array(["0000000a", "FFFFFFFF", None, "zz", "f", "123456789abcdef", "1234567890abcdef"])
    assert hex_codes(values).to_pylist() == [10, 0xFFFFFFFF, None, NOT_HEX, 15, 0x123456789ABCDEF, NOT_HEX]
    fixed = pa.array(["0000000a", None, "0000000g", "deadbeef"])  # the fixed-width path, one non-hex digit
    assert hex_codes(fixed).to_pylist() == [10, None, NOT_HEX, 0xDEADBEEF]
    assert hex_codes(pa.chunked_array([fixed.slice(1), fixed.slice(0, 1)])).to_pylist() == [None, NOT_HEX,
                                                                                            0xDEADBEEF, 10]
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2**60, 1000)
    assert hex_codes(pa.array([format(c, "x") for c in codes])).to_pylist() == codes.tolist()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet="0123456789abcdefABCDEFgG/:@`\u00e9 ", min_size=8,
                                             max_size=8)), min_size=1, max_size=40),
       st.integers(0, 3))
def test_eight_digit_hex_codes_agree_with_python(values, skip):
    """The SWAR path (eight digits a value, decoded eight bytes at a time) against int(value, 16), on
    slices too (an offset into the data buffer), with non-hex bytes at any position."""
    def expected(value: str | None) -> int | None:
        if value is None:
            return None
        return int(value, 16) if all(c in "0123456789abcdefABCDEF" for c in value) else NOT_HEX

    array = pa.array(["00000000"] * skip + values)[skip:]
    assert hex_codes(array).to_pylist() == [expected(v) for v in values]


@pytest.mark.parametrize("kind", ["codes", "strings"])
def test_vocabulary_lookup_maps_missing_unknown_and_known(kind):
    if kind == "codes":
        lookup = VocabularyLookup(np.array([3, 10, 77]), np.array([4, 2, 3]))
        values = pa.array([10, None, 5, 77, NOT_HEX, 3], pa.int64())
    else:
        lookup = VocabularyLookup(pa.array(["b", "j", "x"]), np.array([4, 2, 3]))
        values = pa.array(["j", None, "c", "x", "", "b"])
    assert lookup.ids(values).tolist() == [2, MISSING_ID, OOV_ID, 3, OOV_ID, 4]
    empty = VocabularyLookup(np.zeros(0, np.int64), np.zeros(0, np.int32))
    assert empty.ids(pa.array([1, None], pa.int64())).tolist() == [OOV_ID, MISSING_ID]


def test_dense_features_fill_clip_log1p():
    table = pa.table({"x": pa.array([None, -3.0, math.e - 1]), "y": pa.array([0.0, 1.0, None])})
    out = dense_features(table, ["x", "y"])
    assert out.shape == (3, 2)
    assert np.allclose(out[:, 0], [0.0, 0.0, 1.0]) and np.allclose(out[:, 1], [0.0, math.log(2), 0.0])
