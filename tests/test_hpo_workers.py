"""Several `sda optimize --worker` processes share one experiment: SQLite (embedded) and Postgres (at scale)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
import yaml

from sda.hpo import LocalBackend
from sda.recipe import parse_recipe
from tests.test_train import make_processed_day

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
BUDGET, BANDWIDTH = 6, 2


@pytest.fixture
def postgres_url():
    """A fresh database on the machine's PostgreSQL (trust authentication), dropped afterwards."""
    import psycopg2
    name = f"sda_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(f"{POSTGRES}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _run_two_workers(tmp_path: Path, storage: str) -> list[optuna.trial.FrozenTrial]:
    day = make_processed_day(tmp_path, rows=12_000)
    document = {
        "model": {"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16, 8], "top_mlp": [16]},
        "training": {"batch_size": 128, "eval_every": 0.5},
        "experiment": {"name": "shared", "observation_budget": BUDGET, "parallel_bandwidth": BANDWIDTH,
                       "parameters": [{"name": "learning_rate", "type": "double", "transformation": "log",
                                       "bounds": {"min": 0.001, "max": 0.05}}],
                       "metrics": [{"name": "auc"}, {"name": "training_time", "objective": "minimize"}]},
    }
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(document))
    LocalBackend(storage).create(parse_recipe(document).experiment)
    sda = Path(sys.executable).parent / "sda"
    workers = [subprocess.Popen([str(sda), "optimize", str(recipe_path), "--data", str(day), "--storage", storage,
                                 "--worker", name, "--seed", str(seed)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
               for seed, name in enumerate(("w1", "w2"))]
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
    return optuna.load_study(study_name="shared", storage=LocalBackend(storage).storage).trials


def _check_shared_run(trials: list[optuna.trial.FrozenTrial]) -> None:
    observed = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(observed) == BUDGET  # nothing lost, nothing beyond the budget
    assert len({t.number for t in observed}) == BUDGET  # no trial observed twice
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    by_worker = {t.user_attrs["suggestion_metadata"]["worker"] for t in observed}
    assert by_worker == {"w1", "w2"}  # both did work
    # At no moment were more than parallel_bandwidth trials open.
    events = sorted([(t.datetime_start, 1) for t in observed] + [(t.datetime_complete, -1) for t in observed])
    open_now = peak = 0
    for _, change in events:
        open_now += change
        peak = max(peak, open_now)
    assert peak <= BANDWIDTH


def test_two_workers_share_an_sqlite_experiment(tmp_path):
    _check_shared_run(_run_two_workers(tmp_path, f"sqlite:///{tmp_path / 'optimizer.db'}"))


@pytest.mark.integration
def test_two_workers_share_a_postgres_experiment(tmp_path, postgres_url):
    _check_shared_run(_run_two_workers(tmp_path, postgres_url))
