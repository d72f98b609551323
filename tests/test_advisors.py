"""The advisors: complete, valid recipes for each model on small and large data; naive mode; the CLI."""

from __future__ import annotations

import json

import pytest
import yaml

from recdp.spec import load_spec
from sda.advisors import AdviceRequest, advise, knowledge
from sda.advisors.knowledge import embedding_dim_for
from sda.cli import main
from sda.models import DataShape, build_model
from sda.recipe import parse_recipe

SPEC = load_spec("criteo")
CARDINALITIES = [15, 6, 101_000, 22_000, 4, 2, 126, 7, 2, 931, 57, 83_000, 32, 2, 150, 54_000, 2, 57, 22,
                 2, 70_000, 2, 2, 2_800, 2, 1_400]


def stats(train_rows: int) -> dict:
    return {
        "splits": {"train": {"rows": train_rows}, "valid": {"rows": train_rows // 8}},
        "positive_rate": 0.25,
        "categorical": {c: {"vocab_size": n + 2} for c, n in zip(SPEC.categorical, CARDINALITIES, strict=True)},
        "dense": {c: {"mean": 1.0} for c in SPEC.dense},
    }


def request(model: str, train_rows: int = 80_000, **fields) -> AdviceRequest:
    return AdviceRequest(dataset="criteo", model=model, stats=stats(train_rows), stats_digest="sha256:0123456789abcdef",
                         **fields)


@pytest.mark.parametrize("model", ["dlrm", "wide_deep", "dcnv2", "deepfm"])
@pytest.mark.parametrize("rows", [80_000, 5_000_000])
def test_each_advisor_gives_a_valid_buildable_recipe(model, rows):
    recipe = advise(request(model, rows, budget_seconds=3600, workers=4))
    assert recipe.model.name == model and recipe.data.stats_digest.startswith("sha256:")
    experiment = recipe.experiment
    assert {m.name for m in experiment.metrics if m.strategy == "optimize"} == {"auc", "training_time"}
    assert 4 <= experiment.observation_budget <= 60
    assert 1 <= experiment.parallel_bandwidth <= min(4, experiment.observation_budget // 4 or 1)
    assert parse_recipe(yaml.safe_load(yaml.safe_dump(recipe.model_dump(mode="json")))) == recipe
    sizes = tuple(stats(rows)["categorical"][c]["vocab_size"] for c in SPEC.categorical)
    build_model(recipe.model, DataShape(SPEC.dense, SPEC.categorical, sizes))
    if rows > 1_000_000:
        assert recipe.training.batch_size > advise(request(model, 80_000)).training.batch_size


def test_a_large_window_is_searched_on_a_sample_and_the_model_sized_for_all_of_it():
    whole = advise(request("dlrm", 100_000_000, budget_seconds=3600))
    sampled = advise(request("dlrm", 5_000_000, budget_seconds=3600))
    assert whole.training.sample_rows == knowledge.TRIAL_SAMPLE_ROWS and sampled.training.sample_rows is None
    # The search (batch, rate, budget, space) is the 5M-row sample's; the model is the 100M-row window's.
    assert (whole.training.batch_size, whole.training.learning_rate) == (
        sampled.training.batch_size, sampled.training.learning_rate)
    assert whole.experiment.observation_budget == sampled.experiment.observation_budget
    unsampled = advise(request("dlrm", 100_000_000, budget_seconds=3600, trial_sample_rows=None))
    assert unsampled.training.sample_rows is None and whole.model == unsampled.model


def test_a_deadline_leaves_the_final_fit_its_time_and_one_too_short_is_refused():
    free = advise(request("dlrm", 100_000_000, budget_seconds=6 * 3600))
    final_fit = knowledge.trial_seconds("dlrm", 100_000_000, 1)
    timed = advise(request("dlrm", 100_000_000, budget_seconds=6 * 3600, deadline_seconds=3 * 3600))
    # Half the 3 hours is planned: the final fit's estimate, and the trials' budget in what is left of it.
    assert timed.budget.final_fit_seconds == pytest.approx(final_fit, rel=1e-3)
    assert timed.budget.training_seconds == pytest.approx(1.5 * 3600 - final_fit, rel=1e-3)
    assert timed.budget.training_seconds < free.budget.training_seconds
    assert timed.experiment.observation_budget < free.experiment.observation_budget
    roomy = advise(request("dlrm", 100_000_000, budget_seconds=600, deadline_seconds=12 * 3600))
    assert roomy.budget.training_seconds == 600  # a deadline never raises the asked budget
    with pytest.raises(knowledge.DeadlineTooShort, match="shorten the training window"):
        advise(request("dlrm", 100_000_000, deadline_seconds=2 * final_fit))
    with pytest.raises(knowledge.DeadlineTooShort, match="no time left"):
        advise(request("dlrm", 100_000_000, deadline_seconds=-5))


def test_knowledge_scales_with_the_data():
    small, large = advise(request("wide_deep", 80_000)), advise(request("wide_deep", 5_000_000))
    assert len(large.model.deep_mlp) > len(small.model.deep_mlp)
    assert max(large.model.table_dims.values(), default=0) >= max(small.model.table_dims.values(), default=16)
    assert embedding_dim_for(2, 80_000) == 8 and embedding_dim_for(10**7, 80_000) == 16  # capped by the rows
    assert embedding_dim_for(10**7, 50_000_000) == 64


def test_small_data_gets_smaller_batches_and_short_epochs_larger_steps():
    from sda.advisors.knowledge import MIN_STEPS_PER_EPOCH, batch_size_for, learning_rate_for

    assert [batch_size_for(rows) for rows in (12_000, 20_000, 200_000, 2_000_000)] == [64, 128, 256, 2048]
    assert all(rows // batch_size_for(rows) >= MIN_STEPS_PER_EPOCH for rows in (3_300, 12_000, 20_000, 60_000))
    assert learning_rate_for(1024, 976) == pytest.approx(0.002)  # long epochs: the sqrt(batch) rule
    assert learning_rate_for(2048, 976) == pytest.approx(0.002 * 2 ** 0.5)
    assert learning_rate_for(256, 781) > 2 * learning_rate_for(256, 100_000)  # a short epoch takes larger steps
    recipe = advise(request("dlrm", 12_000))
    assert recipe.training.batch_size == 64 and recipe.training.learning_rate > 0.004


def test_batch_grid_keeps_enough_steps_an_epoch():
    from sda.advisors.knowledge import narrow_space

    def grid(rows: int) -> list[int]:
        return next(p["grid"] for p in narrow_space(0.002, 256, rows) if p["name"] == "batch_size")

    assert grid(200_000) == [128, 256, 512, 1024]
    assert grid(60_000) == [128, 256, 512]  # 1024 would leave 58 steps an epoch
    assert grid(20_000) == [128, 256]


def test_thresholds_come_from_the_champion_and_the_budget():
    recipe = advise(request("dlrm", champion_auc=0.80, budget_seconds=100, max_model_bytes=50_000_000))
    metrics = {m.name: m for m in recipe.experiment.metrics}
    assert metrics["auc"].threshold == pytest.approx(0.798)
    share = 100 / recipe.experiment.observation_budget
    assert metrics["training_time"].threshold == pytest.approx(2 * share, rel=1e-3)
    assert metrics["model_bytes"].strategy == "constraint" and metrics["logloss"].strategy == "store"
    assert advise(request("dlrm")).experiment.metrics[0].threshold is None  # no champion yet


@pytest.mark.parametrize("model", ["dlrm", "wide_deep", "dcnv2", "deepfm"])
def test_the_search_starts_from_the_advised_values(model):
    recipe = advise(request(model, 200_000))
    [point] = recipe.queued_suggestions
    assert set(point) == {p.name for p in recipe.experiment.parameters}  # every tuned parameter, inside its space
    assert point["learning_rate"] == recipe.training.learning_rate
    assert point["batch_size"] == recipe.training.batch_size == 256
    assert point["dropout"] == 0.0
    widths = {"dlrm": "top_mlp"}.get(model, "deep_mlp")
    assert point[widths] == "-".join(map(str, getattr(recipe.model, widths))) == "256-128"
    assert advise(request(model, 200_000, naive=True)).queued_suggestions == []  # no knowledge, no known-good point


def test_naive_space_is_broader():
    advised, naive = advise(request("deepfm")), advise(request("deepfm", naive=True))
    lr = {p.name: p for p in advised.experiment.parameters}["learning_rate"].bounds
    naive_lr = {p.name: p for p in naive.experiment.parameters}["learning_rate"].bounds
    assert naive_lr.min < lr.min and naive_lr.max > lr.max
    assert "optimizer" in {p.name for p in naive.experiment.parameters}
    assert naive.experiment.name != advised.experiment.name


def test_overrides_and_errors():
    recipe = advise(request("dlrm", overrides=("epochs=2", "model.dropout=0.1")))
    assert recipe.training.epochs == 2 and recipe.model.dropout == 0.1
    with pytest.raises(ValueError, match="unknown model 'xgboost'; choose one of"):
        advise(request("xgboost"))
    with pytest.raises(ValueError, match="budget must be positive"):
        advise(request("dlrm", budget_seconds=-5))


def test_cli_prints_a_recipe(tmp_path, capsys):
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(stats(80_000)))
    assert main(["recipe", "--spec", "criteo", "--stats", str(path), "--model", "dcnv2", "--set", "epochs=1"]) == 0
    recipe = parse_recipe(yaml.safe_load(capsys.readouterr().out))
    assert recipe.model.name == "dcnv2" and recipe.data.dataset == "criteo"
    assert main(["recipe", "--spec", "shop_clicks", "--stats", str(path), "--model", "dlrm"]) == 2
    assert "categorical columns differ" in capsys.readouterr().err


def test_on_small_data_the_search_also_chooses_the_model_family():
    small = advise(request("dcnv2", 50_000))
    [family] = small.experiment.conditionals
    assert family.name == "model" and family.values == ["dcnv2", "logistic"]
    assert set(small.model_choices) == {"logistic"} and small.model.name == "dcnv2"
    conditioned = {p.name: p.conditions for p in small.experiment.parameters}
    assert conditioned["cross_layers"] == {"model": ["dcnv2"]} and conditioned["learning_rate"] is None
    [point] = small.queued_suggestions
    assert point["model"] == "dcnv2"  # the model asked for is tried first
    assert parse_recipe(yaml.safe_load(yaml.safe_dump(small.model_dump(mode="json")))) == small
    from sda.trials import configs_for

    linear, training = configs_for(small, {"model": "logistic", "learning_rate": 0.01, "batch_size": 512})
    assert linear.name == "logistic" and training.learning_rate == 0.01 and training.batch_size == 512
    deep, _ = configs_for(small, {"model": "dcnv2", "cross_layers": 2, "learning_rate": 0.01})
    assert deep.name == "dcnv2" and deep.cross_layers == 2
    assert advise(request("dcnv2", 500_000)).experiment.conditionals == []  # Criteo-like and large enough
    assert advise(request("logistic", 50_000)).experiment.conditionals == []  # already the linear model
    with pytest.raises(ValueError, match="must list the model and model_choices"):
        parse_recipe({**small.model_dump(mode="json"), "model_choices": {}})
