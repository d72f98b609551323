"""The offline optimizer backend: SigOpt semantics on Optuna, with SQLite storage."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sda.hpo import BandwidthExceeded, BudgetExhausted, LocalBackend, OptimizerError
from sda.hpo.experiment import Experiment


def experiment(**changes) -> Experiment:
    document = {
        "name": "exp",
        "parameters": [
            {"name": "learning_rate", "type": "double", "bounds": {"min": 0.001, "max": 0.1},
             "transformation": "log"},
            {"name": "batch_size", "type": "int", "grid": [256, 512, 1024]},
            {"name": "optimizer", "type": "categorical", "categorical_values": ["adam", "adagrad"]},
            {"name": "embedding_dim", "type": "int", "bounds": {"min": 4, "max": 32},
             "conditions": {"capacity": ["large"]}},
        ],
        "conditionals": [{"name": "capacity", "values": ["small", "large"]}],
        "metrics": [
            {"name": "auc", "objective": "maximize", "threshold": 0.7},
            {"name": "training_time", "objective": "minimize", "threshold": 100},
            {"name": "logloss", "strategy": "store"},
        ],
        "observation_budget": 12,
        "parallel_bandwidth": 2,
    }
    document.update(changes)
    return Experiment.model_validate(document)


@pytest.fixture
def backend(tmp_path):
    return LocalBackend(f"sqlite:///{tmp_path / 'optimizer.db'}", seed=3)


def metrics_for(assignments: dict) -> dict[str, float]:
    """A made-up response surface: AUC peaks at lr 0.01, time grows with batch size and dims."""
    lr = assignments["learning_rate"]
    auc = 0.8 - 0.05 * math.log10(lr / 0.01) ** 2
    time = assignments["batch_size"] / 10 + assignments.get("embedding_dim", 8)
    return {"auc": auc, "training_time": time, "logloss": 1 - auc}


def test_create_is_idempotent_by_name(backend):
    assert backend.create(experiment()) == backend.create(experiment()) == "exp"
    with pytest.raises(OptimizerError, match="another definition"):
        backend.create(experiment(parallel_bandwidth=3))


def test_suggestions_respect_the_space_and_conditions(backend):
    backend.create(experiment(parallel_bandwidth=12))
    seen_conditional = set()
    for _ in range(12):
        a = backend.suggest("exp").assignments
        assert 0.001 <= a["learning_rate"] <= 0.1
        assert a["batch_size"] in (256, 512, 1024) and a["optimizer"] in ("adam", "adagrad")
        assert ("embedding_dim" in a) == (a["capacity"] == "large")
        seen_conditional.add(a["capacity"])
    assert seen_conditional == {"small", "large"}


def test_bandwidth_budget_failures_and_abandon(backend):
    backend.create(experiment(observation_budget=4))
    first, second = backend.suggest("exp"), backend.suggest("exp")
    with pytest.raises(BandwidthExceeded):
        backend.suggest("exp")
    backend.abandon("exp", second.id)  # given back: not counted, suggested again
    again = backend.suggest("exp")
    assert again.assignments == second.assignments
    backend.observe("exp", first.id, failed=True, reason="diverged at step 4")
    backend.observe("exp", again.id, metrics_for(again.assignments))
    progress = backend.progress("exp")
    assert (progress.observation_count, progress.failed_count, progress.abandoned_count) == (2, 1, 1)
    for _ in range(2):
        s = backend.suggest("exp")
        backend.observe("exp", s.id, metrics_for(s.assignments))
    with pytest.raises(BudgetExhausted):
        backend.suggest("exp")
    failed = [o for o in backend.observations("exp") if o.failed]
    assert [o.reason for o in failed] == ["diverged at step 4"]
    with pytest.raises(OptimizerError, match="already"):
        backend.observe("exp", first.id, metrics_for(first.assignments))


def test_observations_need_every_metric(backend):
    backend.create(experiment())
    s = backend.suggest("exp")
    with pytest.raises(OptimizerError, match="lacks metrics \\['logloss'\\]"):
        backend.observe("exp", s.id, {"auc": 0.8, "training_time": 3})


def test_best_assignments_are_the_feasible_pareto_set_in_auc_order(backend):
    backend.create(experiment(observation_budget=40, parallel_bandwidth=1))
    for _ in range(40):
        s = backend.suggest("exp")
        backend.observe("exp", s.id, metrics_for(s.assignments))
    best = backend.best_assignments("exp")
    assert best
    aucs = [o.values["auc"] for o in best]
    times = [o.values["training_time"] for o in best]
    assert aucs == sorted(aucs, reverse=True)
    assert all(a >= 0.7 for a in aucs) and all(t <= 100 for t in times)
    assert times == sorted(times, reverse=True)  # on a Pareto front, better AUC costs time
    everything = [o for o in backend.observations("exp") if not o.failed]
    assert max(aucs) == max(o.values["auc"] for o in everything if o.values["training_time"] <= 100)
    assert max(aucs) > 0.79  # the search found the AUC peak near lr 0.01


def test_resume_after_a_restart(tmp_path):
    url = f"sqlite:///{tmp_path / 'optimizer.db'}"
    first = LocalBackend(url, seed=1)
    first.create(experiment())
    open_suggestion = first.suggest("exp")
    done = first.suggest("exp")
    first.observe("exp", done.id, metrics_for(done.assignments))
    restarted = LocalBackend(url, seed=1)  # a new process: nothing but the storage is shared
    assert restarted.create(experiment()) == "exp"
    progress = restarted.progress("exp")
    assert (progress.observation_count, progress.open_suggestions) == (1, 1)
    restarted.observe("exp", open_suggestion.id, metrics_for(open_suggestion.assignments))
    assert restarted.progress("exp").observation_count == 2


def test_optimize_runs_trials_and_records_failures(tmp_path, capsys):
    import yaml

    from sda.cli import main
    from tests.test_train import make_processed_day

    day = make_processed_day(tmp_path, rows=12_000)
    recipe = {
        "model": {"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16, 8], "top_mlp": [16]},
        "training": {"epochs": 2, "batch_size": 256, "eval_every": None, "max_loss": 5.0},
        "experiment": {
            "name": "tiny",
            "parameters": [
                {"name": "learning_rate", "type": "double", "grid": [0.01, 60.0]},  # 60 diverges
                {"name": "batch_size", "type": "int", "grid": [128, 256]},
            ],
            "metrics": [{"name": "auc"}, {"name": "training_time", "objective": "minimize"},
                        {"name": "model_bytes", "objective": "minimize", "strategy": "store"}],
            "observation_budget": 6,
        },
        "queued_suggestions": [{"learning_rate": 60.0, "batch_size": 128}],  # tried first
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    storage = f"sqlite:///{tmp_path / 'opt.db'}"
    assert main(["optimize", str(path), "--data", str(day), "--storage", storage, "--seed", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["trials"] == 6 and report["best"] and report["failed"] >= 1
    assert report["best"][0]["values"]["auc"] > 0.6
    backend = LocalBackend(storage)
    assert backend.progress("tiny").observation_count == 6
    first = min(backend.observations("tiny"), key=lambda o: o.suggestion)
    assert first.assignments == {"learning_rate": 60.0, "batch_size": 128} and first.failed
    assert main(["best", "tiny", "--storage", storage]) == 0
    assert json.loads(capsys.readouterr().out)[0]["suggestion"] == report["best"][0]["suggestion"]


def test_warm_start_tries_the_previous_best_first(backend):
    backend.create(experiment(name="day1", parallel_bandwidth=1))
    for _ in range(6):
        s = backend.suggest("day1")
        backend.observe("day1", s.id, metrics_for(s.assignments))
    best = backend.best_assignments("day1")[0].assignments
    backend.create(experiment(name="day2", parallel_bandwidth=1), warm_start=[best, {"learning_rate": 5.0}])
    first = backend.suggest("day2")
    assert first.assignments == best
    backend.observe("day2", first.id, metrics_for(first.assignments))
    second = backend.suggest("day2").assignments  # out of bounds: left to the sampler
    assert 0.001 <= second["learning_rate"] <= 0.1


def test_median_stopping_rule():
    from sda.hpo import Observation
    from sda.pruning import MedianStopping, decode_curve, encode_curve

    def done(*points):
        curve = encode_curve([{"fraction": f, "auc": a, "step": 3} for f, a in points])
        assert decode_curve(curve) == [{"fraction": f, "auc": a} for f, a in points]
        return Observation(0, {}, {"auc": points[-1][1]}, False, metadata={"curve": curve})

    history = [done((0.25, 0.70), (1.0, 0.80)), done((0.25, 0.72), (1.0, 0.81)), done((0.25, 0.60), (1.0, 0.7))]
    rule = MedianStopping(history)
    assert rule(10, 0.25, 0.71) is True  # at or above the median (0.70) of the others at 25%
    assert rule(10, 0.25, 0.65) is False  # below it: hopeless
    assert rule(2, 0.1, 0.5) is True  # no other trial had reached 10%: no evidence to stop
    assert MedianStopping(history[:2])(10, 0.25, 0.1) is True  # too few trials to judge
    failed = Observation(1, {}, None, True, "diverged", {"curve": "0.25:0.99"})
    assert MedianStopping([*history, failed]).curves == rule.curves


def test_training_seconds_budget_stops_the_experiment(tmp_path):
    from sda.recipe import parse_recipe
    from sda.trials import optimize
    from tests.test_train import make_processed_day

    day = make_processed_day(tmp_path, rows=4000)
    recipe = parse_recipe({
        "model": {"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16, 8], "top_mlp": [16]},
        "training": {"batch_size": 256, "eval_every": None},
        "experiment": {"name": "budgeted", "observation_budget": 50,
                       "parameters": [{"name": "learning_rate", "type": "double",
                                       "bounds": {"min": 0.001, "max": 0.01}}],
                       "metrics": [{"name": "auc"}]},
        "budget": {"training_seconds": 0.05},
    })
    backend = LocalBackend(f"sqlite:///{tmp_path / 'o.db'}", seed=0)
    outcomes = optimize(recipe, [day], backend)
    # The budget counts each trial's training and its evaluations.
    seconds = [o.result.metrics["training_time"] + o.result.metrics["eval_seconds"] for o in outcomes]
    assert 1 <= len(outcomes) < 50 and all(o.result.metrics["eval_seconds"] > 0 for o in outcomes)
    assert sum(seconds) >= 0.05 and sum(seconds) - seconds[-1] < 0.05


def test_a_worker_waits_for_a_dead_workers_suggestion_instead_of_ending_the_search(tmp_path):
    from sda.recipe import parse_recipe
    from sda.trials import next_suggestion

    backend = LocalBackend(f"sqlite:///{tmp_path / 'o.db'}", seed=0, stale_after_seconds=0.5)
    backend.create(experiment(observation_budget=2, parallel_bandwidth=2))
    recipe = parse_recipe({"model": {"name": "dlrm"},
                           "experiment": experiment(observation_budget=2, parallel_bandwidth=2).model_dump()})
    done = next_suggestion(backend, "exp", recipe)
    orphan = next_suggestion(backend, "exp", recipe)  # its worker dies: no heartbeat after the first
    backend.observe("exp", done.id, metrics_for(done.assignments))
    # The budget is taken (one observation, one open suggestion): without waiting, the search would end with
    # the orphan never observed.
    assert next_suggestion(backend, "exp", recipe, wait_seconds=0) is None
    taken = next_suggestion(backend, "exp", recipe, wait_seconds=30, poll_seconds=0.1)
    assert taken is not None and taken.assignments == orphan.assignments
    backend.observe("exp", taken.id, metrics_for(taken.assignments))
    assert next_suggestion(backend, "exp", recipe, wait_seconds=30) is None  # now it is spent: no wait
    assert backend.progress("exp").observation_count == 2


def test_failed_observations_teach_the_sampler_to_avoid_their_region(backend):
    """Optuna's TPE ignores FAIL trials; a failed observation is an infeasible (PRUNED, violated) trial,
    which TPE ranks among the bad, so suggestions move away from the region that fails."""
    import optuna

    backend.create(experiment(
        name="fails", observation_budget=40, parallel_bandwidth=1,
        parameters=[{"name": "learning_rate", "type": "double", "bounds": {"min": 1e-4, "max": 1.0},
                     "transformation": "log"}],
        conditionals=[], metrics=[{"name": "auc"}, {"name": "training_time", "objective": "minimize"}]))
    failing = []
    for _ in range(40):
        s = backend.suggest("fails")
        lr = s.assignments["learning_rate"]
        failing.append(lr > 0.01)  # half of the log space diverges
        if lr > 0.01:
            backend.observe("fails", s.id, failed=True, reason="diverged")
        else:
            backend.observe("fails", s.id, {"auc": 0.8 - 0.01 * abs(math.log10(lr / 0.001)), "training_time": 5})
    study = optuna.load_study(study_name="fails", storage=backend.storage)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert len(pruned) == sum(failing) and all(t.constraints == {"observation_failed": 1.0} for t in pruned)
    assert backend.progress("fails").failed_count == sum(failing)
    # After the random start-up trials, few suggestions fall where trials failed.
    assert sum(failing[20:]) <= 4, failing


def test_open_suggestions_carry_their_metadata(backend):
    backend.create(experiment())
    a = backend.suggest("exp", metadata={"slot": "run#0"})
    backend.suggest("exp", metadata={"slot": "run#1"})
    assert a.metadata == {"slot": "run#0"}
    assert sorted(s.metadata["slot"] for s in backend.open_suggestions("exp")) == ["run#0", "run#1"]
    backend.abandon("exp", a.id)
    assert [s.metadata["slot"] for s in backend.open_suggestions("exp")] == ["run#1"]
    assert backend.suggest("exp", metadata={"slot": "run#0"}).assignments == a.assignments


def test_cost_aware_median_stopping_spares_cheaper_trials():
    from sda.hpo import Observation
    from sda.pruning import MedianStopping

    def done(auc_at_quarter: float, seconds: float) -> Observation:
        return Observation(0, {}, {"auc": 0.8}, False, metadata={"curve": f"0.25:{auc_at_quarter},1:0.8",
                                                                   "training_seconds": seconds})

    history = [done(0.75, 10.0), done(0.76, 12.0), done(0.74, 11.0)]  # slow trials, AUC 0.75 at 25%
    # A trial at 25% after 1 s (projected 4 s) with AUC 0.70: behind the slow ones, but a quarter of
    # their cost. AUC alone stops it; with training time optimized, it has no peers as cheap: it goes on.
    assert MedianStopping(history)(5, 0.25, 0.70, 1.0) is False
    assert MedianStopping(history, cost_aware=True)(5, 0.25, 0.70, 1.0) is True
    assert MedianStopping(history, cost_aware=True)(5, 0.25, 0.70, 3.0) is False  # projected 12 s: peers


def test_successive_halving_keeps_the_best_third_at_each_rung():
    from sda.hpo import Observation
    from sda.pruning import SuccessiveHalving

    def seen(points: str, failed: bool = False, seconds: float = 10.0) -> Observation:
        return Observation(0, {}, None if failed else {"auc": 0.8}, failed, "stopped" if failed else None,
                           {"curve": points, "training_seconds": seconds})

    # Six trials reached 25% (two of them were stopped there); three of those went on to 75% and the end.
    history = [seen("0.25:0.70,0.5:0.75,0.75:0.78,1:0.80"), seen("0.25:0.72,0.5:0.76,0.75:0.79,1:0.81"),
               seen("0.25:0.69,0.5:0.74,0.75:0.77,1:0.79"), seen("0.25:0.60", failed=True, seconds=2.5),
               seen("0.25:0.62", failed=True, seconds=2.5), seen("0.25:0.66,0.5:0.70,0.75:0.72,1:0.74")]

    def rule(**fields) -> SuccessiveHalving:
        return SuccessiveHalving(lambda: history, first_fraction=0.25, **fields)

    # Rung 0 is the first evaluation (25%): of 7 AUCs there, the best 7 // 3 = 2 go on (0.72 and 0.71).
    assert rule()(10, 0.25, 0.71) is True
    assert rule()(10, 0.25, 0.695) is False  # third best of seven: not in the top third
    assert rule(reduction_factor=2)(10, 0.25, 0.695) is True  # top half (3 of 7)
    # Between rungs nothing is decided; the next rung is 25% x 3 = 75%, where its AUC is judged anew.
    going = rule()
    assert going(10, 0.25, 0.73) is True and going(20, 0.5, 0.60) is True
    assert going(30, 0.75, 0.76) is False  # behind 0.77, 0.78 and 0.79 at 75%
    assert rule(min_trials=8)(10, 0.25, 0.50) is True  # too few peers reached 25% to judge
    # Stopped peers count at their whole cost: at 2.5 s for a quarter, 10 s.
    assert rule(cost_aware=True)(10, 0.25, 0.695, 2.5) is False
    cheap = [seen("0.25:0.60,1:0.70", seconds=2.0)] * 3  # cheaper trials than this one's projected 10 s
    assert SuccessiveHalving(lambda: cheap + history, 0.25, cost_aware=True)(10, 0.25, 0.65, 0.1) is True


def test_successive_halving_stops_a_hopeless_trial_of_a_real_search(tmp_path):
    from sda.recipe import parse_recipe
    from sda.trials import optimize
    from tests.test_train import make_processed_day

    day = make_processed_day(tmp_path, rows=12_000)
    recipe = parse_recipe({
        "model": {"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16, 8], "top_mlp": [16]},
        "training": {"epochs": 3, "batch_size": 256, "eval_every": 0.25, "threads": 1},
        "experiment": {"name": "halving", "observation_budget": 3,
                       "parameters": [{"name": "learning_rate", "type": "double", "grid": [1e-6, 0.02]}],
                       "metrics": [{"name": "auc"}]},
        "early_stopping": {"rule": "successive_halving", "reduction_factor": 2, "min_trials": 2},
        # Two trials that learn, then one whose rate is too small to learn anything by its first rung.
        "queued_suggestions": [{"learning_rate": 0.02}, {"learning_rate": 0.02}, {"learning_rate": 1e-6}],
    })
    backend = LocalBackend(f"sqlite:///{tmp_path / 'o.db'}", seed=0)
    outcomes = optimize(recipe, [day], backend)
    assert [o.result.status for o in outcomes] == ["ok", "ok", "stopped"], [o.result.reason for o in outcomes]
    stopped = outcomes[-1].result
    # Stopped at a rung (25% or 50% of its training, with a reduction factor of 2), not at the end.
    assert stopped.curve[-1]["fraction"] == pytest.approx(0.25, abs=0.01) or \
        stopped.curve[-1]["fraction"] == pytest.approx(0.5, abs=0.01), stopped.curve
    assert stopped.metrics["samples"] <= outcomes[0].result.metrics["samples"] / 1.9
    observed = backend.observations("halving")
    assert [o.failed for o in observed] == [False, False, True] and "stopped by the optimizer" in observed[-1].reason


def test_the_recipe_chooses_the_stopping_rule():
    from sda.pruning import MedianStopping, SuccessiveHalving
    from sda.recipe import parse_recipe
    from sda.trials import stopping_rule

    def recipe(**early_stopping):
        return parse_recipe({"model": {"name": "dlrm"}, "training": {"eval_every": 0.25},
                             "early_stopping": early_stopping})

    assert isinstance(stopping_rule(recipe(), list, False), MedianStopping)
    halving = stopping_rule(recipe(rule="successive_halving", reduction_factor=2), list, True)
    assert isinstance(halving, SuccessiveHalving) and halving.reduction_factor == 2 and halving.cost_aware
    assert stopping_rule(recipe(rule="none"), list, False) is None
    with pytest.raises(ValueError, match="reduction_factor"):
        recipe(rule="successive_halving", reduction_factor=1)


def test_layer_widths_are_tuned_as_categorical_values():
    from sda.recipe import parse_recipe
    from sda.trials import configs_for

    recipe = parse_recipe({
        "model": {"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16, 8], "top_mlp": [64, 32]},
        "experiment": {"name": "widths", "metrics": [{"name": "auc"}],
                       "parameters": [{"name": "top_mlp", "type": "categorical",
                                       "categorical_values": ["32-16", "64-32", "128-64"]}]},
    })
    model, _ = configs_for(recipe, {"top_mlp": "128-64"})
    assert list(model.top_mlp) == [128, 64]


def test_a_suggestion_with_assignments_gets_exactly_them_even_with_a_queue(backend):
    backend.create(experiment(parallel_bandwidth=5), warm_start=[{"learning_rate": 0.05, "batch_size": 256}])
    wanted = {"learning_rate": 0.002, "batch_size": 1024, "optimizer": "adagrad", "capacity": "small"}
    manual = backend.suggest("exp", strict=False, assignments=wanted)
    assert manual.assignments == wanted
    queued = backend.suggest("exp")  # the warm start is still queued, for the next ordinary suggestion
    assert queued.assignments["learning_rate"] == 0.05 and queued.assignments["batch_size"] == 256


def test_the_optimizer_engine_imports_no_model_or_trainer():
    """sda.hpo is an engine of experiments: the trial runner (sda.trials) brings the models and the trainer."""
    code = ("import sys; import sda.hpo, sda.hpo.experiment, sda.hpo.factory, sda.hpo.selection, sda.hpo.sigopt; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m in ('sda.train', 'sda.models', "
            "'sda.trials', 'sda.recipe')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    assert loaded == "[]"
