"""The model registry: a model joins from one file (here one outside the package, by RECSYS_MODEL_PATHS) and
runs a trial end to end with its own forward and loss; the built-in logistic regression; clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Literal

import pytest

from sda.models import ModelConfigBase, ModelEntry, model_entry, model_names, parse_model_config, register_model
from sda.models.registry import DEFAULT_SAMPLES_PER_SECOND, plugin_files, samples_per_second
from sda.recipe import RecipeError, parse_recipe
from tests.test_train import CATS, DENSE, SIZES, make_processed_day

FM_FILE = textwrap.dedent('''
    """A factorization machine, as a team would add it: one file, outside the package."""
    from typing import Literal

    from pydantic import Field

    from sda.models import ModelConfigBase, ModelEntry, register_model


    class FMConfig(ModelConfigBase):
        name: Literal["fm"] = "fm"
        factors: int = Field(8, ge=1, le=256)


    def build(config, shape, sparse=False):
        import torch
        from torch import nn

        from sda.models.layers import FusedEmbeddings, IdWeights

        class FM(nn.Module):
            def __init__(self):
                super().__init__()
                sizes = list(shape.table_sizes)
                self.first = IdWeights(sizes, sparse)
                self.dense = nn.Linear(len(shape.dense_columns), 1)
                self.vectors = FusedEmbeddings(sizes, [config.factors] * len(sizes), sparse)
                self.loss_calls = 0

            def forward(self, dense, cat):
                v = self.vectors.stacked(cat)
                pairs = 0.5 * (v.sum(1).pow(2) - v.pow(2).sum(1)).sum(1)
                return self.first(cat) + self.dense(dense).squeeze(1) + pairs

            def loss(self, logits, labels):  # its own loss: the trainer must use it
                self.loss_calls += 1
                return nn.functional.binary_cross_entropy_with_logits(logits, labels)

        return FM()


    def advise(facts):
        return {"name": "fm", "factors": 8}, [{"name": "factors", "type": "int", "grid": [4, 8]}]


    register_model(ModelEntry("fm", FMConfig, build, advise))
''')

TRIAL_SCRIPT = textwrap.dedent('''
    import json, sys
    from pathlib import Path

    from sda.advisors import AdviceRequest, advise
    from sda.hpo.local import LocalBackend
    from sda.models import model_names
    from sda.trials import run_trial

    day, store, models = (Path(a) for a in sys.argv[1:4])
    recipe = advise(AdviceRequest.from_stats_file(day / "stats.json", dataset="clicks", model="fm",
                                                  budget_seconds=60, workers=1, max_observations=2))
    backend = LocalBackend(f"sqlite:///{store}", seed=0)
    backend.create(recipe.experiment, warm_start=recipe.queued_suggestions)  # the advised point first: model fm
    suggestion = backend.suggest(recipe.experiment.name)
    outcome = run_trial(backend, recipe.experiment.name, recipe, [day], suggestion, model_dir=models)
    print("RESULT " + json.dumps({
        "names": list(model_names()), "space": [p.name for p in recipe.experiment.parameters],
        "family": suggestion.assignments.get("model"),
        "status": outcome.result.status, "reason": outcome.result.reason,
        "auc": outcome.result.metrics.get("auc"), "loss_calls": outcome.result.model.loss_calls,
        "saved": outcome.model_path is not None and outcome.model_path.is_file(),
        "observed": [o.values for o in backend.observations(recipe.experiment.name)]}))
''')


def write_stats(day, rows: int) -> None:
    (day / "stats.json").write_text(json.dumps({
        "dataset": "clicks", "day": "2026-04-10", "rows": rows + rows // 4, "positive_rate": 0.3,
        "splits": {"train": {"rows": rows}, "valid": {"rows": rows // 4}},
        "categorical": {c: {"vocab_size": SIZES[c]} for c in CATS}, "dense": {d: {"mean": 0.5} for d in DENSE}}))


def test_a_model_file_outside_the_package_joins_and_runs_a_trial_with_its_own_loss(tmp_path):
    plugins = tmp_path / "team_models"
    plugins.mkdir()
    (plugins / "fm.py").write_text(FM_FILE)
    day = make_processed_day(tmp_path / "data", rows=6_000)
    write_stats(day, 6_000)
    env = {**os.environ, "RECSYS_MODEL_PATHS": str(plugins)}
    done = subprocess.run([sys.executable, "-c", TRIAL_SCRIPT, str(day), str(tmp_path / "optimizer.db"),
                           str(tmp_path / "trial")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert "fm" in out["names"] and "factors" in out["space"]  # its advisor part is in the search
    assert out["family"] == "fm" and out["status"] == "ok", out["reason"]
    assert out["loss_calls"] > 0 and out["auc"] > 0.6 and out["saved"]
    assert out["observed"] and out["observed"][0]["auc"] == pytest.approx(out["auc"])
    assert "states no samples_per_second" in done.stderr  # the safe default, said once


def test_a_broken_model_file_is_an_import_error_naming_it(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no such layer')\n")
    env = {**os.environ, "RECSYS_MODEL_PATHS": str(broken)}
    done = subprocess.run([sys.executable, "-c", "from sda.models import model_names; model_names()"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and f"model file {broken}: RuntimeError: no such layer" in done.stderr
    with pytest.raises(ImportError, match="neither a .py file nor a folder"):
        plugin_files(str(tmp_path / "missing"))


def test_the_built_in_models_and_the_linear_baseline_are_registered():
    assert set(model_names()) >= {"dlrm", "wide_deep", "dcnv2", "deepfm", "logistic"}
    assert samples_per_second("dlrm") == 30_000 and DEFAULT_SAMPLES_PER_SECOND < 28_000
    assert samples_per_second("logistic") == 150_000  # measured: docs/benchmarks/quality-logistic.json
    assert parse_model_config({"name": "logistic"}).name == "logistic"
    with pytest.raises(ValueError, match="unknown model 'gbdt'; choose one of"):
        model_entry("gbdt")
    with pytest.raises(RecipeError, match="unknown model 'gbdt'"):
        parse_recipe({"model": {"name": "gbdt"}}, "a recipe")
    recipe = parse_recipe({"model": {"name": "dcnv2", "cross_layers": 2}}, "a recipe")
    assert recipe.model.cross_layers == 2 and recipe.model_dump(mode="json")["model"]["cross_layers"] == 2


def test_a_config_must_name_its_model_and_a_name_is_registered_once():
    class Unnamed(ModelConfigBase):
        name: str = "other"

    def build(config, shape, sparse=False):
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="name: Literal\\['mine'\\]"):
        register_model(ModelEntry("mine", Unnamed, build, lambda facts: ({"name": "mine"}, [])))

    class Dlrm(ModelConfigBase):
        name: Literal["dlrm"] = "dlrm"

    with pytest.raises(ValueError, match="model 'dlrm' is registered twice"):
        register_model(ModelEntry("dlrm", Dlrm, build, lambda facts: ({"name": "dlrm"}, [])))


def test_logistic_regression_trains_and_grows_with_the_vocabulary(tmp_path):
    from sda.models import load_model, save_model
    from sda.train import TrainingConfig, train

    day = make_processed_day(tmp_path / "a", rows=6_000)
    settings = TrainingConfig(batch_size=256, learning_rate=0.05, epochs=3, eval_every=None)
    result = train(parse_model_config({"name": "logistic"}), settings, [day])
    assert result.status == "ok" and result.metrics["auc"] > 0.65  # the labels are a logistic model of c1, d1
    save_model(tmp_path / "lr.pt", result.model, parse_model_config({"name": "logistic"}), result.shape)
    newer = make_processed_day(tmp_path / "b", rows=6_000, seed=0, sizes={"c1": 60}, vocab_version=2)
    refreshed = train(parse_model_config({"name": "logistic"}), settings, [newer], init_from=tmp_path / "lr.pt")
    assert refreshed.status == "ok" and refreshed.shape.table_sizes[0] == 60
    assert load_model(tmp_path / "lr.pt")[1].name == "logistic"
