"""Several `sda optimize --worker` processes share one experiment: SQLite (embedded) and Postgres (at scale)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from sda.hpo import LocalBackend
from sda.recipe import parse_recipe
from tests.test_train import make_processed_day

BUDGET, BANDWIDTH = 6, 2


def _run_two_workers(tmp_path: Path, storage: str, kill_first: bool = False) -> list[optuna.trial.FrozenTrial]:
    # The killed worker's trial must still be training when the kill lands (within a poll of its first
    # heartbeat, sent before it loads any data): a few seconds of training are plenty. The other worker waits
    # for the suggestion to be given back (sda.trials.next_suggestion), however short its own trials.
    day = make_processed_day(tmp_path, rows=24_000 if kill_first else 12_000)
    document = {
        "model": {"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16, 8], "top_mlp": [16]},
        "training": {"batch_size": 128, "eval_every": 0.5, "epochs": 1},
        "experiment": {"name": "shared", "observation_budget": BUDGET, "parallel_bandwidth": BANDWIDTH,
                       "parameters": [{"name": "learning_rate", "type": "double", "transformation": "log",
                                       "bounds": {"min": 0.001, "max": 0.05}}],
                       "metrics": [{"name": "auc"}, {"name": "training_time", "objective": "minimize"}]},
    }
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(document))
    LocalBackend(storage).create(parse_recipe(document).experiment)
    sda = Path(sys.executable).parent / "sda"
    env = {**os.environ, "SDA_STALE_SECONDS": "4"}
    workers = [subprocess.Popen([str(sda), "optimize", str(recipe_path), "--data", str(day), "--storage", storage,
                                 "--worker", name, "--seed", str(seed)], stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / f"{name}.log", "w"), env=env)
               for seed, name in enumerate(("w1", "w2"))]
    study = optuna.load_study(study_name="shared", storage=LocalBackend(storage).storage)
    if kill_first:  # kill -9 w1 in the middle of a trial: after its first heartbeat
        deadline = time.monotonic() + 300
        def w1_training() -> bool:
            return any(t.user_attrs.get("suggestion_metadata", {}).get("worker") == "w1" and "heartbeat" in t.user_attrs
                       for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)))

        while not w1_training():
            assert time.monotonic() < deadline and workers[0].poll() is None, (tmp_path / "w1.log").read_text()
            time.sleep(0.2)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        workers = workers[1:]
    for worker in workers:
        worker.wait(timeout=600)
        assert worker.returncode == 0, (tmp_path / "w2.log").read_text()[-3000:]
    return study.get_trials()


def _check_shared_run(trials: list[optuna.trial.FrozenTrial], killed: bool = False) -> None:
    observed = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(observed) == BUDGET  # nothing lost, nothing beyond the budget
    assert len({t.number for t in observed}) == BUDGET  # no trial observed twice
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    by_worker = {t.user_attrs["suggestion_metadata"]["worker"] for t in observed}
    assert by_worker == {"w1", "w2"} or (killed and by_worker == {"w2"})
    if killed:  # the killed worker's trial was abandoned (not counted) and its assignments run by the other
        [lost] = [t for t in trials if t.user_attrs.get("released") == "abandoned"]
        assert lost.state == optuna.trial.TrialState.FAIL
        assert lost.user_attrs["suggestion_metadata"]["worker"] == "w1"
        assert any(t.params == lost.params and t.user_attrs["suggestion_metadata"]["worker"] == "w2" for t in observed)
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


@pytest.mark.integration
def test_a_killed_worker_s_trial_is_abandoned_and_suggested_again(tmp_path, postgres_url):
    _check_shared_run(_run_two_workers(tmp_path, postgres_url, kill_first=True), killed=True)
