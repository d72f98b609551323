"""Model quality against the generator's oracle AUC, on a few hundred thousand preprocessed rows."""

from __future__ import annotations

import pytest

from recdp.jobs.preprocess import process_day
from recdp.spec import load_spec
from recdp.synth import SynthConfig, generate_day
from sda.models import parse_model_config
from sda.train import TrainingConfig, train
from tests.conftest import DAY

pytestmark = pytest.mark.spark

# One epoch on 240k training rows; the bounds are looser than the 1M-row targets of the benchmark.
MODELS = {
    "dlrm": ({"name": "dlrm", "embedding_dim": 16, "bottom_mlp": [64, 16], "top_mlp": [64, 32]}, 0.05),
    "wide_deep": ({"name": "wide_deep", "embedding_dim": 8, "deep_mlp": [64, 32]}, 0.06),
    "dcnv2": ({"name": "dcnv2", "embedding_dim": 8, "low_rank": 16, "deep_mlp": [64, 32]}, 0.06),
    "deepfm": ({"name": "deepfm", "embedding_dim": 8, "deep_mlp": [64, 32]}, 0.06),
}


@pytest.fixture(scope="module")
def processed_day(spark, tmp_path_factory):
    from recdp.storage import DataRoot

    root = DataRoot(tmp_path_factory.mktemp("quality"))
    spec = load_spec("criteo")
    summary = generate_day(spec, root, DAY, SynthConfig(rows=300_000))
    process_day(spark, spec, root, DAY, require_validation=False)
    return root.processed("criteo", DAY), summary["oracle_auc"]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_approach_the_oracle(processed_day, name):
    day, oracle = processed_day
    document, tolerance = MODELS[name]
    config = TrainingConfig(batch_size=1024, optimizer="adam", learning_rate=0.002, eval_every=None, seed=1)
    result = train(parse_model_config(document), config, [day])
    assert result.status == "ok", result.reason
    assert result.metrics["auc"] >= oracle - tolerance, (name, result.metrics["auc"], oracle)
    assert result.metrics["auc"] <= oracle + 0.01  # a model cannot beat the true logit by more than noise
