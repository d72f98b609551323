"""The built-in models: config validation, shapes, gradients, save and load."""

from __future__ import annotations

import pytest
import torch

from sda.models import DataShape, build_model, load_model, model_size, parse_model_config, save_model
from sda.optim import RowWiseAdagrad, lr_factor

SHAPE = DataShape(("d1", "d2", "d3"), ("c1", "c2", "c3", "c4"), (10, 7, 30, 4), vocab_version=2)
CONFIGS = {
    "dlrm": {"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16, 8], "top_mlp": [16]},
    "dlrm_self": {"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [8], "top_mlp": [16], "self_interaction": True},
    "wide_deep": {"name": "wide_deep", "embedding_dim": 8, "table_dims": {"c3": 12}, "deep_mlp": [16, 8]},
    "dcnv2_parallel": {"name": "dcnv2", "embedding_dim": 4, "cross_layers": 2, "deep_mlp": [16]},
    "dcnv2_stacked_low_rank": {"name": "dcnv2", "embedding_dim": 4, "structure": "stacked", "low_rank": 3,
                               "deep_mlp": [16], "table_dims": {"c1": 6}},
    "deepfm": {"name": "deepfm", "embedding_dim": 8, "deep_mlp": [16], "dropout": 0.1},
}


def batch(n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    dense = torch.rand(n, 3, generator=generator)
    cat = torch.stack([torch.randint(0, size, (n,), generator=generator) for size in SHAPE.table_sizes], dim=1)
    return dense, cat


@pytest.mark.parametrize("key", sorted(CONFIGS))
@pytest.mark.parametrize("sparse", [False, True])
def test_forward_backward(key, sparse):
    model = build_model(parse_model_config(CONFIGS[key]), SHAPE, sparse=sparse)
    dense, cat = batch()
    logits = model(dense, cat)
    assert logits.shape == (32,) and torch.isfinite(logits).all()
    torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(32)).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.is_sparse for g in grads) == sparse


def test_dlrm_interaction_sizes():
    plain = build_model(parse_model_config(CONFIGS["dlrm"]), SHAPE)
    with_self = build_model(parse_model_config({**CONFIGS["dlrm"], "self_interaction": True}), SHAPE)
    features = len(SHAPE.table_sizes) + 1
    assert plain.pair_rows.numel() == features * (features - 1) // 2
    assert with_self.pair_rows.numel() == features * (features + 1) // 2
    assert plain.top[0].in_features == 8 + features * (features - 1) // 2


@pytest.mark.parametrize("document, message", [
    ({"name": "dlrm", "embedding_dim": 16, "bottom_mlp": [64, 32]}, "must end at embedding_dim 16"),
    ({"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [8], "table_dims": {"c1": 4}}, "every table"),
    ({"name": "deepfm", "embedding_dim": 8, "table_dims": {"c1": 4}}, "FM part"),
    ({"name": "dcnv2", "cross_layers": 0}, "greater than or equal to 1"),
    ({"name": "wide_deep", "deep_mlp": [16, 0]}, "positive"),
    ({"name": "deepfm", "deep_mlp": []}, "at least 1 item"),
    ({"name": "transformer"}, "unknown model 'transformer'; choose one of"),
    ({"name": "dlrm", "embedding_dim": 16, "bottom_mlp": [16], "top_mlp": [8], "colour": "red"}, "Extra inputs"),
])
def test_invalid_configs_are_refused_with_a_clear_message(document, message):
    with pytest.raises(ValueError, match=message):  # pydantic's ValidationError, or the registry's ValueError
        parse_model_config(document)


def test_table_dims_must_name_existing_columns():
    config = parse_model_config({"name": "wide_deep", "table_dims": {"nope": 4}})
    with pytest.raises(ValueError, match="does not have: \\['nope'\\]"):
        build_model(config, SHAPE)


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_saved_model_scores_the_same_after_loading(key, tmp_path):
    config = parse_model_config(CONFIGS[key])
    model = build_model(config, SHAPE, sparse=True).eval()
    dense, cat = batch(64, seed=3)
    with torch.no_grad():
        before = model(dense, cat)
    save_model(tmp_path / "model.pt", model, config, SHAPE)
    assert torch.load(tmp_path / "model.pt", weights_only=True)["shape"]["vocab_version"] == 2
    loaded, loaded_config, shape = load_model(tmp_path / "model.pt")
    with torch.no_grad():
        assert torch.equal(loaded(dense, cat), before)
    assert loaded_config == config and shape == SHAPE
    assert model_size(loaded) == model_size(model)


def test_row_wise_adagrad_touches_only_the_batch_rows():
    table = torch.nn.Embedding(6, 3, sparse=True)
    before = table.weight.detach().clone()
    optimizer = RowWiseAdagrad(table.parameters(), lr=0.1)
    table(torch.tensor([1, 4, 4])).sum().backward()
    optimizer.step()
    changed = (table.weight.detach() != before).any(dim=1)
    assert changed.tolist() == [False, True, False, False, True, False]
    assert optimizer.state[table.weight]["sum"].shape == (6,)


def test_learning_rate_schedule():
    assert lr_factor(0, 10, 0, 0, 2.0) == pytest.approx(0.1)
    assert lr_factor(9, 10, 0, 0, 2.0) == 1.0
    assert lr_factor(50, 10, 100, 100, 2.0) == 1.0
    assert lr_factor(150, 10, 100, 100, 2.0) == pytest.approx(0.25)
    assert lr_factor(500, 10, 100, 100, 2.0) == 0.0


@pytest.mark.parametrize("config", [
    {"name": "dlrm", "embedding_dim": 4, "bottom_mlp": [8, 4], "top_mlp": [8]},
    {"name": "wide_deep", "embedding_dim": 4, "table_dims": {"c3": 8}, "deep_mlp": [8]},
    {"name": "dcnv2", "embedding_dim": 4, "table_dims": {"c3": 8}, "deep_mlp": [8], "cross_layers": 2},
    {"name": "deepfm", "embedding_dim": 4, "deep_mlp": [8]},
])
def test_a_model_grows_into_a_larger_vocabulary_keeping_every_old_row(config):
    from sda.models.grow import grow_into

    model_config = parse_model_config(config)
    torch.manual_seed(0)
    old = build_model(model_config, SHAPE)
    grown_shape = DataShape(SHAPE.dense_columns, SHAPE.categorical_columns, (12, 7, 45, 9), vocab_version=3)
    new = build_model(model_config, grown_shape)
    grow_into(old, SHAPE, new, grown_shape)
    dense, cat = batch()  # old ids only: the grown model scores them exactly as the old one
    old.eval(), new.eval()
    torch.testing.assert_close(new(dense, cat), old(dense, cat))
    new_ids = cat.clone()
    new_ids[:, 2] = 40  # an id only the grown vocabulary has: its own row, not another id's
    assert not torch.equal(new(dense, new_ids), old(dense, cat))
    with pytest.raises(ValueError, match="ids only grow"):
        grow_into(new, grown_shape, build_model(model_config, SHAPE), SHAPE)
