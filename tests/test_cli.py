"""`sda train` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sda.cli import main
from sda.models import load_model
from tests.test_train import make_processed_day

RECIPE = Path(__file__).resolve().parents[1] / "include" / "recipes" / "dlrm_criteo.yaml"


def test_train_prints_metrics_and_saves_the_model(tmp_path, capsys):
    day = make_processed_day(tmp_path, rows=8000)
    code = main(["train", str(RECIPE), "--data", str(day), "--params", "model.embedding_dim=8",
                 "bottom_mlp=[16, 8]", "training.batch_size=256", "--save", str(tmp_path / "m.pt")])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["status"] == "ok" and 0.5 < out["metrics"]["auc"] <= 1.0
    model, config, shape = load_model(tmp_path / "m.pt")
    assert config.embedding_dim == 8 and shape.categorical_columns == ("c1", "c2", "c3")


@pytest.mark.parametrize("params, message", [
    (["model.embedding_dim=8"], "must end at embedding_dim 8"),
    (["training.optimizer=lbfgs"], "optimizer"),
    (["nonsense"], "key=value"),
])
def test_bad_params_give_a_clear_error(tmp_path, capsys, params, message):
    day = make_processed_day(tmp_path, rows=2000)
    assert main(["train", str(RECIPE), "--data", str(day), "--params", *params]) == 2
    assert message in capsys.readouterr().err


def test_unknown_recipe_section_is_an_error(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.read_text() + "extras: {a: 1}\n")
    assert main(["train", str(recipe), "--data", str(tmp_path)]) == 2
    assert "extras: Extra inputs are not permitted" in capsys.readouterr().err


def test_console_script_is_installed():
    completed = subprocess.run([str(Path(sys.executable).parent / "sda"), "train", "--help"],
                               capture_output=True, text=True, check=True)
    assert "--params" in completed.stdout
