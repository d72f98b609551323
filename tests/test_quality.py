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

# Default model configs and trainer defaults, one epoch on 240k training rows: the 1M-row targets of
# `make bench-quality` (0.01 for DLRM, 0.015 for the others) loosened for a quarter of the data
# (measured gaps at 240k rows: DLRM 0.019, DCN-v2 0.018, DeepFM 0.027, Wide & Deep 0.028).
TOLERANCE = {"dlrm": 0.025, "dcnv2": 0.025, "wide_deep": 0.035, "deepfm": 0.035}


@pytest.fixture(scope="module")
def processed_day(spark, tmp_path_factory):
    from recdp.storage import DataRoot

    root = DataRoot(tmp_path_factory.mktemp("quality"))
    spec = load_spec("criteo")
    summary = generate_day(spec, root, DAY, SynthConfig(rows=300_000))
    process_day(spark, spec, root, DAY, require_validation=False)
    return root.processed("criteo", DAY), summary["oracle_auc"]


@pytest.mark.parametrize("name", sorted(TOLERANCE))
def test_models_approach_the_oracle(processed_day, name):
    day, oracle = processed_day
    result = train(parse_model_config({"name": name}), TrainingConfig(eval_every=None), [day])
    assert result.status == "ok", result.reason
    assert result.metrics["auc"] >= oracle - TOLERANCE[name], (name, result.metrics["auc"], oracle)
    assert result.metrics["auc"] <= oracle + 0.01  # a model cannot beat the true logit by more than noise
