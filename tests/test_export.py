"""The exported champion bundle scores raw rows exactly as the pipeline's Spark preprocessing + model do."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from recdp.jobs.preprocess import process_day
from recdp.shards import read_shards
from recdp.validate import validate_partition
from sda.export import export_champion
from sda.models import parse_model_config, save_model
from sda.promote import Registry, lineage_tags
from sda.tracking import Tracking
from sda.train import TrainingConfig, train
from tests.conftest import DAY, real_rows_as_tsv

pytestmark = pytest.mark.spark


def load_scorer(bundle):
    """score.py from the bundle itself, not from this project: the bundle is self-contained."""
    spec = importlib.util.spec_from_file_location("bundle_score", bundle / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BundleScorer(bundle)


def test_the_exported_champion_scores_the_200_real_rows(spark, criteo, data_root, tmp_path):
    raw = real_rows_as_tsv(data_root)
    validate_partition(criteo, data_root, DAY)
    stats = process_day(spark, criteo, data_root, DAY)
    processed = data_root.processed("criteo", DAY)
    config = parse_model_config({"name": "dlrm", "embedding_dim": 4, "bottom_mlp": [8, 4], "top_mlp": [8]})
    result = train(config, TrainingConfig(batch_size=16, eval_every=None), [processed])
    model_path = tmp_path / "model.pt"
    save_model(model_path, result.model, config, result.shape)

    registry = Registry(Tracking.from_env(data_root.mlflow()), "criteo")
    version = registry.register(model_path, {}, lineage_tags({"day": DAY, "vocab_version": stats["vocab_version"]}),
                                "run-export")
    registry.switch(version, "first model", expected=None)
    bundle = export_champion(registry, criteo, data_root.vocab("criteo"), tmp_path / "bundle")
    assert sorted(p.name for p in bundle.iterdir()) == ["bundle.json", "model.ts", "recdp.zip", "score.py", "spec.yaml",
                                                         "vocab.npz"]

    # Move the bundle away from everything else: it scores with what it holds.
    moved = shutil.move(str(bundle), str(tmp_path / "elsewhere"))
    scorer = load_scorer(Path(moved))
    lines = raw.read_text().splitlines()
    scores = scorer.score(lines)
    assert scores.shape == (200,) and np.isfinite(scores).all()

    # The same rows through Spark's preprocessing (all three splits) and the trained model: the same scores.
    dense, cat = [], []
    for split in ("train", "valid", "test"):
        shards = read_shards(processed / "shards" / split)
        dense.append(np.asarray(shards.dense))
        cat.append(np.asarray(shards.cat).astype(np.int64))
    with torch.no_grad():
        result.model.eval()
        reference = torch.sigmoid(result.model(torch.from_numpy(np.concatenate(dense)),
                                               torch.from_numpy(np.concatenate(cat)))).numpy()
    np.testing.assert_allclose(np.sort(scores), np.sort(reference), rtol=1e-5, atol=1e-6)

    # Serving rows come without the label; a malformed row is refused by line number.
    unlabelled = ["\t".join(line.split("\t")[1:]) for line in lines]
    np.testing.assert_allclose(scorer.score(unlabelled), scores, rtol=1e-6)
    with pytest.raises(ValueError, match="line 2: 3 fields"):
        scorer.score([lines[0], "1\t2\t3"])
    not_a_number = lines[1].split("\t")
    not_a_number[3] = "x"
    with pytest.raises(ValueError, match="line 3: the label or a dense field"):
        scorer.score([lines[0], "", "\t".join(not_a_number)])


def test_unknown_strings_are_not_cut_down_to_a_known_key():
    from recdp.ops import VocabularyLookup

    lookup = VocabularyLookup(np.array(["ab", "abc"]), np.array([2, 3]))  # a bundle's string vocabulary
    assert list(lookup.ids(pa.array(["abc", "abcdef", "ab", None, "zz"]))) == [3, 1, 2, 0, 1]
