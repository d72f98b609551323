"""Specs, storage layout, atomic publishing, the synthetic generator and the shard format."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from recdp.shards import ShardWriter, read_shards, write_shards
from recdp.spec import DatasetSpec, SpecError, available_specs, load_spec
from recdp.storage import DataRoot, StorageError, parse_day, staged_directory
from recdp.synth import HiddenModel, Shift, SynthConfig, generate_day, roc_auc
from tests.conftest import DAY, make_day, raw_file


def test_both_specs_load_and_differ_in_shape():
    assert {"criteo", "shop_clicks"} <= set(available_specs())
    criteo, shop = load_spec("criteo"), load_spec("shop_clicks")
    assert (len(criteo.dense), len(criteo.categorical), criteo.raw.header) == (13, 26, False)
    assert (len(shop.dense), len(shop.categorical), shop.raw.header) == (3, 5, True)
    assert shop.raw_columns[1] == "clicked"


@pytest.mark.parametrize("change, message", [
    ({"unknown_key": 1}, "Extra inputs are not permitted"),
    ({"dense": ["a", "label"]}, "distinct"),
    ({"name": "Bad Name"}, "must match"),
    ({"columns": ["label", "a"]}, "exactly the label"),
    ({"raw": {"delimiter": "::"}}, "single character"),
    ({"preprocess": {"splits": {"train": 0.9, "valid": 0.2, "test": 0.1}}}, "sum to 1"),
])
def test_invalid_specs_say_what_is_wrong(change, message):
    document = {"name": "toy", "label": "label", "dense": ["a"], "categorical": ["b"], **change}
    with pytest.raises(ValueError, match=message):
        DatasetSpec.model_validate(document)


@pytest.mark.parametrize("name", ["../criteo", "/etc/passwd", "criteo/../x", "Criteo"])
def test_spec_names_cannot_escape_the_spec_folder(name):
    with pytest.raises(SpecError):
        load_spec(name)


def test_days_and_dataset_names_are_checked(tmp_path):
    root = DataRoot(tmp_path)
    assert root.raw("criteo", "2026-03-02").name == "day=2026-03-02"
    for bad_day in ["2026-3-2x", "yesterday", "../2026-03-02"]:
        with pytest.raises(StorageError):
            parse_day(bad_day)
    with pytest.raises(StorageError):
        root.processed("../x", "2026-03-02")


def test_staged_directory_publishes_whole_or_nothing(tmp_path):
    final = tmp_path / "out"
    with staged_directory(final) as staging:
        (staging / "a").write_text("1")
    assert (final / "a").read_text() == "1"
    with pytest.raises(RuntimeError), staged_directory(final) as staging:
        (staging / "a").write_text("2")
        raise RuntimeError("crash mid-write")
    assert (final / "a").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_synth_is_deterministic_and_realistic(tmp_path):
    spec = load_spec("criteo")
    first, second = DataRoot(tmp_path / "a"), DataRoot(tmp_path / "b")
    config = SynthConfig(rows=20_000, seed=5, cardinality_scale=0.001)
    summary = generate_day(spec, first, DAY, config)
    generate_day(spec, second, DAY, config)
    assert raw_file(spec, first).read_bytes() == raw_file(spec, second).read_bytes()
    assert 0.22 < summary["positive_rate"] < 0.28
    assert 0.75 < summary["oracle_auc"] < 0.95
    assert json.loads((first.raw("criteo", DAY) / "_synth.json").read_text())["oracle_auc"] == summary["oracle_auc"]
    lines = raw_file(spec, first).read_text().splitlines()
    fields = [line.split("\t") for line in lines]
    assert all(len(f) == 40 for f in fields)
    i12_missing = np.mean([f[12] == "" for f in fields])
    assert 0.7 < i12_missing < 0.82  # Criteo's I12 is missing in about 76% of rows
    next_day = generate_day(spec, first, DAY + dt.timedelta(days=1), config)
    assert next_day["positive_rate"] != summary["positive_rate"]


def test_shifts_bring_new_popular_values_and_a_new_click_model(tmp_path):
    """new_ids renames each larger column's most popular values from its day on; click_model leaves the values
    alone but draws what drives a click anew; both last."""
    spec = load_spec("criteo")
    following = DAY + dt.timedelta(days=1)
    shifted = SynthConfig(rows=20_000, seed=5, cardinality_scale=0.01, shifts=(Shift(following, "new_ids"),))
    steady = SynthConfig(rows=20_000, seed=5, cardinality_scale=0.01)

    def top_values(config: SynthConfig, day: dt.date) -> set[str]:
        root = DataRoot(tmp_path / f"{len(config.shifts)}-{day}")
        generate_day(spec, root, day, config)
        column = 1 + 13 + 2  # C3: 101,313 values at this scale
        counts = Counter(line.split("\t")[column] for line in raw_file(spec, root, day).read_text().splitlines())
        return {value for value, _ in counts.most_common(21) if value}

    before = top_values(steady, DAY)
    assert top_values(shifted, DAY) == before  # not before its day
    assert len(top_values(steady, following) & before) >= 15  # a day later, the same values lead
    assert not top_values(shifted, following) & before  # the shift's day: all new
    assert shifted.shifts_by(following + dt.timedelta(days=5)) == [(0, Shift(following, "new_ids"))]  # it lasts

    model = HiddenModel(spec, steady)
    effects, slopes = [e.copy() for e in model.effects], model.dense_slope.copy()
    model.apply(0, Shift(following, "click_model"))
    changed = [j for j in range(len(effects)) if not np.array_equal(effects[j], model.effects[j])]
    assert changed == model.informative and not np.allclose(slopes, model.dense_slope)
    with pytest.raises(ValueError, match="shift kind"):
        Shift(following, "new_world")


def test_roc_auc_matches_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.random(5000) < 0.3
    scores = labels + rng.normal(0, 1.5, 5000)
    scores[:100] = np.round(scores[:100])  # ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_shards_round_trip_and_header_written_last(tmp_path):
    rng = np.random.default_rng(1)
    batches = [(rng.integers(0, 2, n).astype(np.float32), rng.random((n, 3), dtype=np.float32),
                rng.integers(0, 50, (n, 2)).astype(np.int32)) for n in (5, 7)]
    header = write_shards(tmp_path / "s", batches, label="y", dense_columns=["a", "b", "c"],
                          categorical_columns=["u", "v"], vocab_version=3, table_sizes={"u": 50, "v": 50})
    shards = read_shards(tmp_path / "s")
    assert header.rows == len(shards) == 12
    np.testing.assert_array_equal(shards.dense, np.concatenate([b[1] for b in batches]))
    np.testing.assert_array_equal(shards.cat, np.concatenate([b[2] for b in batches]))
    assert isinstance(shards.dense, np.memmap) and shards.header.vocab_version == 3
    unfinished = ShardWriter(tmp_path / "t", label="y", dense_columns=["a"], categorical_columns=[],
                             vocab_version=1, table_sizes={})
    unfinished.append(np.zeros(2, np.float32), np.zeros((2, 1), np.float32), np.zeros((2, 0), np.int32))
    assert not (tmp_path / "t" / "header.json").exists()
    with pytest.raises(ValueError, match="do not match"):
        unfinished.append(np.zeros(2, np.float32), np.zeros((3, 1), np.float32), np.zeros((2, 0), np.int32))


def test_make_day_writes_the_second_format(data_root):
    spec = load_spec("shop_clicks")
    make_day(spec, data_root, rows=200)
    header, first = raw_file(spec, data_root).read_text().splitlines()[:2]
    assert header == ",".join(spec.raw_columns) and len(first.split(",")) == 9
