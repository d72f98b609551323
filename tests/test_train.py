"""The trainer on small shards with a known signal: learning, determinism, failure and stop paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recdp.shards import write_shards
from sda.data import BatchStream, open_split
from sda.models import parse_model_config
from sda.train import TrainingConfig, train

DENSE, CATS, SIZES = ["d1", "d2"], ["c1", "c2", "c3"], {"c1": 50, "c2": 20, "c3": 8}
DLRM = parse_model_config({"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16, 8], "top_mlp": [16]})


def make_processed_day(root: Path, rows: int = 24_000, seed: int = 0, sizes: dict[str, int] | None = None,
                       vocab_version: int = 1, invert_train: bool = False) -> Path:
    """A processed-day folder whose labels follow a logistic model of one id column and one dense value.
    Larger `sizes` add ids (a newer vocabulary) with effects of their own, the old ids' effects unchanged;
    `invert_train` flips the train split's labels (a day that teaches the opposite of the truth)."""
    sizes = {**SIZES, **(sizes or {})}
    rng = np.random.default_rng(seed)
    effect = rng.normal(0, 1.5, SIZES["c1"])
    if sizes["c1"] > SIZES["c1"]:
        effect = np.concatenate([effect, np.random.default_rng(seed + 1).normal(0, 1.5, sizes["c1"] - SIZES["c1"])])
    day = root / "day"
    for split, n in (("train", rows), ("valid", rows // 4)):
        cat = np.stack([rng.integers(0, sizes[c], n) for c in CATS], axis=1).astype(np.int32)
        dense = rng.random((n, 2)).astype(np.float32)
        logit = effect[cat[:, 0]] + 2.0 * (dense[:, 0] - 0.5) - 1.0
        label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
        if invert_train and split == "train":
            label = 1.0 - label
        write_shards(day / "shards" / split, [(label, dense, cat)], label="y", dense_columns=DENSE,
                     categorical_columns=CATS, vocab_version=vocab_version, table_sizes=sizes)
    return day


@pytest.fixture
def day(tmp_path):
    return make_processed_day(tmp_path)


def test_batch_stream_visits_every_row_once_in_shuffled_blocks(day):
    shards = open_split([day], "train")
    stream = BatchStream(shards, batch_size=1000, shuffle=True, seed=1, block_rows=5000)
    first = np.concatenate([b.label.numpy() for b in stream.epoch(0)])
    dense_first = np.concatenate([b.dense.numpy()[:, 0] for b in stream.epoch(0)])
    dense_again = np.concatenate([b.dense.numpy()[:, 0] for b in stream.epoch(0)])
    dense_next = np.concatenate([b.dense.numpy()[:, 0] for b in stream.epoch(1)])
    assert len(first) == len(stream) == 24_000
    np.testing.assert_array_equal(np.sort(dense_first), np.sort(shards[0].dense[:, 0]))
    np.testing.assert_array_equal(dense_first, dense_again)
    assert not np.array_equal(dense_first, dense_next)
    sizes = [len(b) for b in BatchStream(shards, 7000, shuffle=False, block_rows=5000).epoch()]
    assert sizes == [7000, 7000, 7000, 3000]


def test_a_sample_is_the_same_rows_for_every_seed_and_epoch(day):
    shards = open_split([day], "train")

    def rows(seed: int, epoch: int) -> np.ndarray:
        stream = BatchStream(shards, 1000, shuffle=True, seed=seed, block_rows=5000, sample_rows=12_345)
        assert len(stream) == 12_345
        return np.sort(np.concatenate([b.dense.numpy()[:, 0] for b in stream.epoch(epoch)]))

    sample = rows(seed=1, epoch=0)
    assert len(sample) == 12_345 and len(np.unique(sample)) > 12_000  # rows of the day, each at most once
    np.testing.assert_array_equal(sample, rows(seed=2, epoch=3))  # other trials and epochs: the same rows
    whole = BatchStream(shards, 1000, shuffle=True, block_rows=5000, sample_rows=10**9)
    assert len(whole) == 24_000  # a sample as large as the data is the data
    result = train(parse_model_config({"name": "dlrm", "embedding_dim": 4, "bottom_mlp": [8, 4], "top_mlp": [8]}),
                   TrainingConfig(batch_size=512, sample_rows=5000, eval_every=None), [day])
    assert result.status == "ok" and result.metrics["samples"] == 5000


@pytest.mark.parametrize("optimizer, lr", [("adagrad", 0.05), ("sgd", 1.0), ("adam", 0.005)])
def test_learns_the_signal_with_each_optimizer(day, optimizer, lr):
    config = TrainingConfig(epochs=2, batch_size=256, optimizer=optimizer, learning_rate=lr, eval_every=None)
    result = train(DLRM, config, [day])
    assert result.status == "ok", result.reason
    assert result.metrics["auc"] > 0.72
    assert result.metrics["samples_per_second"] > 0 and result.metrics["model_parameters"] > 0
    assert result.metrics["logloss"] < 0.69


@pytest.mark.parametrize("name", ["wide_deep", "dcnv2", "deepfm"])
def test_other_models_learn_too(day, name):
    config = TrainingConfig(epochs=2, batch_size=256, optimizer="adam", learning_rate=0.005, eval_every=None)
    result = train(parse_model_config({"name": name, "embedding_dim": 8, "deep_mlp": [16]}), config, [day])
    assert result.status == "ok" and result.metrics["auc"] > 0.72


def test_same_seed_same_metrics(day):
    config = TrainingConfig(batch_size=512, seed=7, eval_every=0.5)
    first, second = train(DLRM, config, [day]), train(DLRM, config, [day])
    assert first.metrics["auc"] == second.metrics["auc"]
    assert first.metrics["logloss"] == second.metrics["logloss"]
    assert [p["auc"] for p in first.curve] == [p["auc"] for p in second.curve]


def test_divergence_is_a_failed_trial_not_a_crash(day):
    config = TrainingConfig(optimizer="sgd", learning_rate=90.0, batch_size=128, max_loss=5.0, sparse_embeddings=False)
    result = train(DLRM, config, [day])
    assert result.status == "failed" and "diverged" in result.reason
    assert result.model is None and "auc" not in result.metrics


def test_callback_stops_a_hopeless_trial(day):
    seen = []

    def hopeless(step: int, fraction: float, auc: float, seconds: float) -> bool:
        seen.append((step, fraction, auc))
        assert seconds > 0
        return False

    result = train(DLRM, TrainingConfig(batch_size=256, eval_every=0.25), [day], callback=hopeless)
    assert result.status == "stopped" and "stopped by the optimizer" in result.reason
    assert len(seen) == 1 and 0 < seen[0][1] <= 0.3
    assert result.metrics["steps"] == seen[0][0]


def test_target_auc_stops_early(day):
    config = TrainingConfig(epochs=3, batch_size=256, eval_every=0.05, target_auc=0.6)
    result = train(DLRM, config, [day])
    assert result.status == "ok" and "target AUC" in result.reason
    assert result.metrics["steps"] < 3 * 24_000 // 256


def test_training_window_reads_several_days(tmp_path):
    days = [make_processed_day(tmp_path / f"d{i}", rows=8000, seed=0) for i in range(2)]
    result = train(DLRM, TrainingConfig(batch_size=256, eval_every=None), days)
    assert result.status == "ok" and result.metrics["steps"] == -(-16_000 // 256)
