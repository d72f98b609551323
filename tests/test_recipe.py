"""The recipe: YAML round trip, and every SigOpt validation rule with the message it gives."""

from __future__ import annotations

import copy

import pytest

from sda.recipe import RecipeError, dump_recipe, load_recipe, parse_recipe, save_recipe

VALID = {
    "data": {"dataset": "criteo", "training_window_days": 3, "stats_digest": "sha256:abc"},
    "model": {"name": "dlrm", "embedding_dim": 16, "bottom_mlp": [64, 16], "top_mlp": [64]},
    "training": {"batch_size": 1024, "optimizer": "adam", "learning_rate": 0.002},
    "experiment": {
        "name": "criteo-dlrm-2026-03-02",
        "parameters": [
            {"name": "learning_rate", "type": "double", "bounds": {"min": 0.0005, "max": 0.01},
             "transformation": "log"},
            {"name": "batch_size", "type": "int", "grid": [512, 1024, 2048]},
            {"name": "optimizer", "type": "categorical", "categorical_values": ["adam", "adagrad"]},
            {"name": "embedding_dim", "type": "int", "bounds": {"min": 8, "max": 32},
             "conditions": {"capacity": ["large"]}},
        ],
        "conditionals": [{"name": "capacity", "values": ["small", "large"]}],
        "metrics": [
            {"name": "auc", "objective": "maximize", "threshold": 0.78},
            {"name": "training_time", "objective": "minimize", "threshold": 120},
            {"name": "model_bytes", "objective": "minimize", "strategy": "constraint", "threshold": 5e8},
            {"name": "logloss", "strategy": "store"},
        ],
        "observation_budget": 20,
        "parallel_bandwidth": 2,
    },
}


def with_change(path: str, value) -> dict:
    """VALID with one value replaced (or removed, for value None), by a dotted path with list indices."""
    document = copy.deepcopy(VALID)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = document
    for part in parents:
        target = target[part]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return document


def test_round_trip(tmp_path):
    recipe = parse_recipe(VALID)
    save_recipe(recipe, tmp_path / "recipe.yaml")
    again = load_recipe(tmp_path / "recipe.yaml")
    assert again == recipe
    assert dump_recipe(again) == dump_recipe(recipe)
    assert again.experiment.parameters[2].categorical_values[1].name == "adagrad"


@pytest.mark.parametrize("path, value, message", [
    ("experiment.metrics", [{"name": "auc"}, {"name": "a"}, {"name": "b"}], "at most 2 metrics can be optimized"),
    ("experiment.metrics", [{"name": "logloss", "strategy": "store"}], "at least one metric must have strategy"),
    ("experiment.metrics.2.threshold", None, "a constraint metric needs a threshold"),
    ("experiment.metrics.3.threshold", 0.5, "a store metric takes no threshold"),
    ("experiment.observation_budget", None, "observation_budget is required"),
    ("experiment.parameters.0.bounds", {"min": 0.0, "max": 0.01}, "transformation log needs positive bounds"),
    ("experiment.parameters.0.bounds", {"min": 0.1, "max": 0.01}, "must be below bounds.max"),
    ("experiment.parameters.1.grid", [512, 512, 1024], "grid values must be unique"),
    ("experiment.parameters.1.bounds", {"min": 1, "max": 4}, "give grid or bounds, not both"),
    ("experiment.parameters.1.transformation", "log", "transformation log is only for double"),
    ("experiment.parameters.2.categorical_values", ["adam"], "needs at least 2 categorical_values"),
    ("experiment.parameters.3.bounds", {"min": 8.5, "max": 32}, "integer bounds"),
    ("experiment.parameters.3.conditions", {"size": ["large"]}, "unknown conditional 'size'"),
    ("experiment.parameters.3.conditions", {"capacity": ["huge"]}, "has no values ['huge']"),
    ("experiment.parameters.0.name", "batch_size", "parameter names must be unique: ['batch_size']"),
    ("experiment.parameters.0.name", "colour", "'colour' is neither a field of model 'dlrm' nor of training"),
    ("experiment.parallel_bandwidth", 0, "greater than or equal to 1"),
    ("experiment.parameters.0.type", "float", "experiment.parameters.0.type"),
    ("experiment.surprise", 1, "experiment.surprise: Extra inputs are not permitted"),
    ("model.bottom_mlp", [64, 32], "must end at embedding_dim 16"),
    ("experiment.parameters.2", {"name": "top_mlp", "type": "int", "bounds": {"min": 8, "max": 64}},
     "'top_mlp' sets a list of layer widths: make it categorical with values like '256-128'"),
    ("experiment.parameters.2", {"name": "top_mlp", "type": "categorical", "categorical_values": ["64", "wide"]},
     "'top_mlp' sets a list of layer widths"),
    ("training.optimizer", "lbfgs", "training.optimizer"),
    ("data.training_window_days", 0, "data.training_window_days"),
    ("queued_suggestions", [{"colour": 1}], "queued_suggestions[0]: 'colour' is not an experiment parameter"),
    ("queued_suggestions", [{"batch_size": 1024}, {"batch_size": 300}], "queued_suggestions[1]: batch_size=300 lies"),
    ("queued_suggestions", [{"learning_rate": 0.5}], "learning_rate=0.5 lies outside its space"),
    ("queued_suggestions", [{"optimizer": "sgd"}], "optimizer='sgd' lies outside its space"),
])
def test_each_rule_says_what_is_wrong_and_where(path, value, message):
    with pytest.raises(RecipeError) as error:
        parse_recipe(with_change(path, value), "test.yaml")
    assert message in str(error.value)
    assert str(error.value).startswith("invalid recipe test.yaml:")


def test_queued_suggestions_inside_the_space_are_kept():
    queued = [{"learning_rate": 0.002, "batch_size": 1024, "optimizer": "adam"}, {"embedding_dim": 16}]
    assert parse_recipe(with_change("queued_suggestions", queued)).queued_suggestions == queued
    no_experiment = with_change("queued_suggestions", queued)
    del no_experiment["experiment"]
    with pytest.raises(RecipeError, match="queued_suggestions need an experiment section"):
        parse_recipe(no_experiment)


def test_every_problem_is_listed():
    document = with_change("experiment.parallel_bandwidth", 0)
    document["training"]["batch_size"] = -1
    message = str(pytest.raises(RecipeError, parse_recipe, document).value)
    assert "experiment.parallel_bandwidth" in message and "training.batch_size" in message


def test_not_a_mapping_and_not_yaml(tmp_path):
    with pytest.raises(RecipeError, match="a recipe is a mapping"):
        parse_recipe(["model"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(RecipeError, match="not YAML"):
        load_recipe(bad)


def test_unsafe_yaml_is_refused(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("data: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(RecipeError, match="not YAML"):
        load_recipe(evil)
