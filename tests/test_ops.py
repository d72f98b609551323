"""Each Spark op on small hand-made frames."""

from __future__ import annotations

import math

import pytest

from recdp.ops import (
    LINE,
    SPLIT,
    WELL_FORMED,
    AssignSplit,
    Categorify,
    ClipNegative,
    DropMalformed,
    FillNA,
    HexToInt,
    Log1p,
    ParseDelimited,
    Pipeline,
)
from tests.conftest import small_spec

pytestmark = pytest.mark.spark


def lines(spark, rows: list[str]):
    return spark.createDataFrame([(r,) for r in rows], "value string")


def test_parse_flags_malformed_lines_by_the_spec_rules(spark):
    spec = small_spec("shop_clicks")
    header = ",".join(spec.raw_columns)
    rows = [
        header,
        "a1,1,100,seg,cat,3,,phone,eu",  # good, views_7d missing
        "a2,0,12.5,seg,cat,3,7,phone,eu",  # good, decimal dense
        "a3,1,100,seg,cat,3,7,phone",  # too few fields
        "a4,1,ten,seg,cat,3,7,phone,eu",  # text in a dense field
        "a5,yes,1,seg,cat,3,7,phone,eu",  # label not an integer
        "",  # empty line: skipped, not counted
    ]
    parsed = ParseDelimited(spec)(lines(spark, rows)).orderBy(LINE).collect()
    assert [r[WELL_FORMED] for r in parsed] == [True, True, False, False, False]
    first = parsed[0]
    assert first["clicked"] == 1 and first["price_cents"] == 100.0 and first["views_7d"] is None
    assert first["item_id"] == "a1" and first["region"] == "eu"
    assert DropMalformed()(ParseDelimited(spec)(lines(spark, rows))).count() == 2


def test_fill_clip_log1p(spark):
    frame = spark.createDataFrame([(None,), (-3.0,), (math.e - 1,)], "x double")
    out = Pipeline([FillNA(["x"], 0.0), ClipNegative(["x"]), Log1p(["x"])])(frame).collect()
    assert [round(r["x"], 9) for r in out] == [0.0, 0.0, 1.0]


def test_hex_to_int(spark):
    frame = spark.createDataFrame([("0000000a",), ("ffffffff",), (None,), ("zz",)], "c string")
    assert [r["c"] for r in HexToInt(["c"])(frame).collect()] == [10, 0xFFFFFFFF, None, -1]


def test_categorify_maps_missing_oov_and_known(spark):
    vocabulary = spark.createDataFrame(
        [("c", "x", 2), ("c", "y", 3), ("d", "x", 2)], "column string, value string, id int")
    frame = spark.createDataFrame([("x", "x"), ("y", None), (None, "q"), ("q", "x")], "c string, d string")
    out = Categorify(["c", "d"], vocabulary)(frame).orderBy("c", "d").collect()
    assert sorted((r["c"], r["d"]) for r in out) == sorted([(2, 2), (3, 0), (0, 1), (1, 2)])


def test_assign_split_is_deterministic_with_requested_fractions(spark):
    frame = spark.range(20_000).selectExpr(f"cast(id as string) as {LINE}")
    split = AssignSplit(0.8, 0.1, seed=42)
    counts = {r[SPLIT]: r["count"] for r in split(frame).groupBy(SPLIT).count().collect()}
    assert abs(counts["train"] / 20_000 - 0.8) < 0.02
    assert abs(counts["valid"] / 20_000 - 0.1) < 0.01
    again = spark.range(20_000).selectExpr(f"cast(id as string) as {LINE}", "cast(id as string) as key")
    first = {r["key"]: r[SPLIT] for r in split(again).collect()}
    second = {r["key"]: r[SPLIT] for r in split(again.repartition(7)).collect()}
    assert first == second
