"""The optimize half of a run (sda.retrain) without Airflow: plan, experiment, slots, selection, warm start."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from recdp.storage import DataRoot, run_key
from sda.hpo import LocalBackend
from sda.hpo.local import fitting_assignments
from sda.promote import Registry
from sda.recipe import load_recipe
from sda.retrain import (
    NoTrainingData,
    RunPlan,
    RunRequest,
    evaluate_run,
    open_experiment,
    plan_run,
    promote_run,
    run_slot,
    select_best,
    training_days,
)
from sda.tracking import Tracking
from tests.test_train import CATS, DENSE, SIZES, make_processed_day

DAY = dt.date(2026, 4, 10)


def processed_day(root: DataRoot, day: dt.date, rows: int = 12_000, seed: int = 0, **shape) -> None:
    """A processed partition as the Spark job leaves it: shards, stats.json, _SUCCESS (`shape`: the
    vocabulary and labels, as make_processed_day takes them)."""
    target = root.processed("clicks", day)
    made = make_processed_day(target.parent / f"build-{day}", rows=rows, seed=seed, **shape)
    shutil.move(str(made), target)
    stats = {"dataset": "clicks", "day": day.isoformat(), "rows": rows + rows // 4, "positive_rate": 0.3,
             "splits": {"train": {"rows": rows}, "valid": {"rows": rows // 4}},
             "categorical": {c: {"vocab_size": {**SIZES, **shape.get("sizes", {})}[c]} for c in CATS},
             "dense": {d: {"mean": 0.5} for d in DENSE}}
    (target / "stats.json").write_text(json.dumps(stats))
    (target / "_SUCCESS").touch()


@pytest.fixture
def root(data_root):
    return data_root


@pytest.fixture
def backend(root):
    return LocalBackend(root.optimizer_storage(), seed=0)


@pytest.fixture
def tracking(root):
    return Tracking.from_env(root.mlflow())


def request(day: dt.date = DAY, **changes) -> RunRequest:
    fields = {"dataset": "clicks", "day": day.isoformat(), "run_id": f"manual__{day}T00:00:00+00:00",
              "window_days": 3, "budget_seconds": 60.0, "max_trials": 2, "workers": 1}
    fields.update(changes)
    return RunRequest(**fields)


def test_training_days_are_the_processed_window_ending_at_the_day(root):
    processed_day(root, DAY)
    processed_day(root, DAY - dt.timedelta(days=2))
    days = training_days(root, "clicks", DAY.isoformat(), 3)
    assert [p.name for p in days] == ["day=2026-04-08", "day=2026-04-10"]  # the 9th was never processed
    assert [p.name for p in training_days(root, "clicks", DAY.isoformat(), 1)] == ["day=2026-04-10"]
    with pytest.raises(NoTrainingData, match="2026-04-09 has no processed partition"):
        training_days(root, "clicks", "2026-04-09", 3)
    # After an abrupt shift on the 10th, windows start there.
    assert [p.name for p in training_days(root, "clicks", DAY.isoformat(), 3, not_before="2026-04-10")] == [
        "day=2026-04-10"]


def test_a_shift_day_starts_the_windows_after_it(root):
    from sda.retrain.mode import ModeDecision, last_shift_day, record_mode

    for offset in range(-1, 4):
        processed_day(root, DAY + dt.timedelta(days=offset))
    record_mode(root, "clicks", "dlrm", DAY.isoformat(), ModeDecision("search", "decayed", 1.0, shift=True), "r0")
    record_mode(root, "clicks", "dlrm", "2026-04-11", ModeDecision("skip", "healthy"), "r1")
    assert last_shift_day(root, "clicks", "dlrm", "2026-04-12") == DAY.isoformat()
    assert last_shift_day(root, "clicks", "dlrm", DAY.isoformat()) is None  # only days before
    plan = plan_run(root, request(DAY + dt.timedelta(days=2), mode="search", window_days=4))  # from the 9th
    assert [Path(d).name for d in plan.day_dirs] == ["day=2026-04-10", "day=2026-04-11", "day=2026-04-12"]
    later = plan_run(root, request(DAY + dt.timedelta(days=3), mode="search", window_days=3))
    assert [Path(d).name for d in later.day_dirs] == ["day=2026-04-11", "day=2026-04-12", "day=2026-04-13"]


def test_plan_writes_the_advised_recipe_and_names_the_experiment_by_its_content(root):
    processed_day(root, DAY)
    plan = plan_run(root, request())
    again = plan_run(root, request())
    assert plan == again  # a rerun plans the same experiment: it will find its work done
    assert plan_run(root, request(champion_auc=0.9)) == plan  # a champion promoted since: the plan stands
    assert plan.run_dir == str(root.experiments() / run_key(plan.run_id))
    assert plan.experiment.startswith("clicks-2026-04-10-dlrm-") and plan.observation_budget == 2
    assert plan_run(root, request(budget_seconds=90.0)).experiment != plan.experiment
    assert RunPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_a_slot_runs_trials_until_the_budget_is_spent_and_tracks_each(root, backend, tracking):
    processed_day(root, DAY)
    plan = plan_run(root, request())
    assert plan.parallel_bandwidth == 1
    assert open_experiment(root, backend, tracking, plan) == [0]  # one slot per trial that may run at once
    report = run_slot(backend, tracking, plan, 0)
    assert [t.status for t in report.trials] == ["ok", "ok"] and "2/2 observations" in report.ended
    assert all((root.experiment_run(plan.run_id) / "trials" / f"trial-{t.suggestion}" / "model.pt").is_file()
               for t in report.trials)
    assert report.mlflow_run == report.trials[-1].mlflow_run
    late = run_slot(backend, tracking, plan, 1)
    assert late.trials == [] and "2/2 observations" in late.ended
    best = select_best(root, backend, plan)
    assert best["observations"] == 2 and best["best"]["suggestion"] in {t.suggestion for t in report.trials}
    assert json.loads((root.experiment_run(plan.run_id) / "best.json").read_text()) == json.loads(
        json.dumps(best, default=str))
    client = MlflowClient(tracking.tracking_uri)
    experiment = client.get_experiment_by_name(plan.mlflow_experiment)
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    assert {r.data.tags["recsys.suggestion"] for r in runs} == {str(t.suggestion) for t in report.trials}
    again = run_slot(backend, tracking, plan, 0)  # a rerun of the slot: its trials, nothing trained again
    assert [t.suggestion for t in again.trials] == [t.suggestion for t in report.trials]
    assert backend.progress(plan.experiment).observation_count == 2 and len(client.search_runs(
        [experiment.experiment_id])) == 2


def test_slots_follow_the_bandwidth_so_none_waits_on_a_slow_trial(root, tracking, monkeypatch):
    """The 100M-row defect by its mechanism: bandwidth 1 and two worker slots, one trial slower than a
    waiting slot's patience. Slots were one per observation, so the second waited for the bandwidth and failed
    when its wait ran out (select_best then never ran). Now there is one slot per unit of bandwidth."""
    import threading
    import time

    import sda.retrain.slots as slots
    from sda.trials import run_trial

    def slow_trial(*args, **kwargs):
        time.sleep(3.0)  # longer than the 1 s any slot would wait for a suggestion
        return run_trial(*args, **kwargs)

    monkeypatch.setattr(slots, "run_trial", slow_trial)
    processed_day(root, DAY)
    plan = plan_run(root, request(workers=2))  # two workers, as RECSYS_TRIAL_WORKERS=2 gives the DAG
    assert (plan.parallel_bandwidth, plan.observation_budget) == (1, 2)
    backend = LocalBackend(root.optimizer_storage(), seed=0)
    reports, errors = [], []

    def work(slot: int) -> None:
        try:
            reports.append(run_slot(LocalBackend(root.optimizer_storage(), seed=0), tracking, plan, slot,
                                    wait_seconds=1.0))
        except Exception as error:  # what a failed slot task would raise
            errors.append(error)

    workers = [threading.Thread(target=work, args=(slot,))
               for slot in open_experiment(root, backend, tracking, plan)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert errors == [] and len(workers) == 1
    assert [t.status for t in reports[0].trials] == ["ok", "ok"]
    assert select_best(root, backend, plan)["observations"] == 2


def test_a_killed_attempt_is_abandoned_and_its_assignments_rerun(root, backend, tracking):
    processed_day(root, DAY)
    plan = plan_run(root, request(max_trials=1))
    open_experiment(root, backend, tracking, plan)
    # What a worker killed mid-trial leaves: an open suggestion and a RUNNING MLflow run for its slot.
    slot_key = f"{plan.run_id}#0"
    stale = backend.suggest(plan.experiment, metadata={"slot": slot_key})
    mlflow_experiment = tracking.experiment(plan.mlflow_experiment)
    stale_run = tracking.start_trial(mlflow_experiment, slot_key, stale.id, stale.assignments, {})
    [retry] = run_slot(backend, tracking, plan, 0).trials
    assert retry.status == "ok" and retry.suggestion != stale.id and retry.assignments == stale.assignments
    progress = backend.progress(plan.experiment)
    assert (progress.observation_count, progress.abandoned_count, progress.open_suggestions) == (1, 1, 0)
    client = MlflowClient(tracking.tracking_uri)
    assert client.get_run(stale_run).info.status == "KILLED"
    assert client.get_run(retry.mlflow_run).info.status == "FINISHED"


def test_no_feasible_trial_selects_nothing_and_says_why(root, backend, tracking):
    processed_day(root, DAY)
    plan = plan_run(root, request(champion_auc=0.999))  # AUC threshold 0.997: out of reach
    for slot in open_experiment(root, backend, tracking, plan):
        run_slot(backend, tracking, plan, slot)
    best = select_best(root, backend, plan)
    assert best["best"] is None and "no observation met every threshold" in best["reason"]
    assert not (root.experiments() / "_history").exists()  # nothing for a later day to warm-start from


def test_the_next_day_warm_starts_from_the_previous_best(root, backend, tracking):
    processed_day(root, DAY)
    first = plan_run(root, request())
    for slot in open_experiment(root, backend, tracking, first):
        run_slot(backend, tracking, first, slot)
    chosen = select_best(root, backend, first)["best"]
    following = DAY + dt.timedelta(days=1)
    processed_day(root, following, seed=1)
    second = plan_run(root, request(following, max_trials=3, mode="search"))  # no champion: auto would go cold
    open_experiment(root, backend, tracking, second)
    front = {json.dumps(o["assignments"], sort_keys=True) for o in select_best(root, backend, first)["pareto"]}
    seeded = []
    for _ in range(len(front)):  # bandwidth 1: observe each before the next
        seeded.append(backend.suggest(second.experiment))
        backend.observe(second.experiment, seeded[-1].id, failed=True, reason="not trained in this test")
    # Each of the previous day's best, as far as it fits the new day's space (a larger window admits larger
    # batches only); what does not fit is left to the sampler.
    space = load_recipe(Path(second.recipe_path)).experiment
    for previous in [json.loads(f) for f in front] + [chosen["assignments"]]:
        fitting = fitting_assignments(space, previous)
        assert len(fitting) >= len(previous) - 1 and any(fitting.items() <= s.assignments.items() for s in seeded)


def _whole_run(root, backend, tracking, day: dt.date) -> RunPlan:
    processed_day(root, day, seed=day.day)
    target = root.processed("clicks", day)
    shutil.copytree(target / "shards" / "valid", target / "shards" / "test")  # the holdout split
    plan = plan_run(root, request(day, min_delta=0.0))
    for slot in open_experiment(root, backend, tracking, plan):
        run_slot(backend, tracking, plan, slot)
    select_best(root, backend, plan)
    return plan


def test_a_rerun_of_a_decided_day_changes_nothing_even_after_a_newer_champion(root, backend, tracking):
    plan = _whole_run(root, backend, tracking, DAY)
    decision_file = root.experiment_run(plan.run_id) / "decision.json"
    assert evaluate_run(tracking, plan)["verdict"] == "promote"
    version = promote_run(tracking, plan)["version"]
    applied = decision_file.read_bytes()
    # A newer day's model becomes the champion; then the old day is cleared and rerun.
    registry = Registry(tracking, "clicks")
    model = root.root / "newer.pt"
    model.write_bytes(b"the newer day's model")
    newer = registry.register(model, {}, {"recsys.day": (DAY + dt.timedelta(days=1)).isoformat()}, "run-newer")
    registry.switch(newer, "a newer day earned it", version)
    history = registry.history()
    rerun = evaluate_run(tracking, plan)
    assert rerun["verdict"] == "promote" and rerun["applied"]["version"] == version  # the record stands
    assert promote_run(tracking, plan) == {"verdict": "promote", "reason": rerun["reason"], "version": version}
    assert decision_file.read_bytes() == applied
    assert registry.champion().version == newer and registry.history() == history  # nothing switched back


def test_an_unapplied_decision_is_remade_when_the_champion_changed(root, backend, tracking):
    plan = _whole_run(root, backend, tracking, DAY)
    first = evaluate_run(tracking, plan)
    assert first["verdict"] == "promote" and first["champion"] is None
    assert evaluate_run(tracking, plan) == first  # same inputs, same champion: the decision stands
    registry = Registry(tracking, "clicks")
    best = json.loads((root.experiment_run(plan.run_id) / "best.json").read_text())
    model = shutil.copy(best["best"]["model_path"], root.root / "other.pt")  # another run's model, same shape
    other = registry.register(model, {}, {"recsys.day": DAY.isoformat()}, "run-other")
    registry.switch(other, "promoted by another run meanwhile", None)
    # Made before that switch, the decision is stale: the rerun judges against the champion serving now.
    again = evaluate_run(tracking, plan)
    assert again["champion"]["version"] == other
    # Carrying out the stale decision: the switch is refused, the decision is made again, and that one holds.
    outcome = promote_run(tracking, plan)
    final = json.loads((root.experiment_run(plan.run_id) / "decision.json").read_text())
    assert final["champion"]["version"] == other and final["verdict"] == outcome["verdict"]
    serving = registry.champion().version
    assert serving == (outcome["version"] if outcome["verdict"] == "promote" else other)
    if outcome["verdict"] == "promote":
        assert registry.history()[-1]["previous"] == other


def _promoted_first_day(root, backend, tracking) -> tuple[RunPlan, str]:
    plan = _whole_run(root, backend, tracking, DAY)
    assert plan.mode == "full" and "no champion yet" in plan.mode_reason  # the dataset's first run: cold
    assert evaluate_run(tracking, plan)["verdict"] == "promote"
    return plan, promote_run(tracking, plan)["version"]


def _next_day_with_holdout(root, day: dt.date) -> None:
    processed_day(root, day, seed=day.day)
    target = root.processed("clicks", day)
    shutil.copytree(target / "shards" / "valid", target / "shards" / "test")


def test_a_healthy_champion_skips_training_and_a_rerun_changes_nothing(root, backend, tracking):
    from sda.monitor import monitor_day

    _, version = _promoted_first_day(root, backend, tracking)
    following = DAY + dt.timedelta(days=1)
    _next_day_with_holdout(root, following)
    served = monitor_day(root, tracking, "clicks", following.isoformat())
    assert served.served_auc is not None and served.champion_version == version
    # A tolerant policy: the champion is healthy (and learned from as many days as a 1-day window holds).
    plan = plan_run(root, request(following, decay_tolerance=0.5, window_days=1))
    assert (plan.mode, plan.searches, plan.recipe_path) == ("skip", False, "") and "healthy" in plan.mode_reason
    assert open_experiment(root, backend, tracking, plan) == []
    best = select_best(root, backend, plan)
    assert best["best"] is None and best["mode"] == "skip" and best["reason"].startswith("mode skip: ")
    decision = evaluate_run(tracking, plan)
    assert decision["verdict"] == "keep" and decision["mode"] == "skip"
    assert promote_run(tracking, plan)["verdict"] == "keep"
    assert Registry(tracking, "clicks").champion().version == version
    recorded = json.loads((root.experiments() / "_modes" / "clicks" / "dlrm" / f"{following}.json").read_text())
    assert recorded["mode"] == "skip" and recorded["run_id"] == plan.run_id
    # A rerun: the same plan, no training.
    assert plan_run(root, request(following, decay_tolerance=0.5, window_days=1)) == plan


def test_a_search_gets_a_share_of_the_budget_and_a_full_search_starts_cold(root, backend, tracking):
    first, version = _promoted_first_day(root, backend, tracking)
    following = DAY + dt.timedelta(days=1)
    _next_day_with_holdout(root, following)
    drift = [{"column": c, "kind": "dense_psi", "value": 0.4, "soft_max": 0.25, "hard_max": 2.0, "severity": "soft"}
             for c in ("I1", "I2", "I3")]  # more than a refresh answers
    root.served("clicks", following).parent.mkdir(parents=True, exist_ok=True)
    root.served("clicks", following).write_text(json.dumps({
        "champion_version": version, "champion_auc": 0.7, "served_auc": 0.7, "drift": drift,
        "validation_status": "passed"}))
    searched = plan_run(root, request(following, max_trials=4, champion_auc=0.8))
    assert searched.mode == "search" and "3 column(s): I1, I2, I3" in searched.mode_reason
    # The threshold follows what the champion serves now (0.7), not the 0.8 it was chosen with: after a shift,
    # a bar at the old level would keep every challenger out.
    thresholds = {m.name: m.threshold for m in load_recipe(Path(searched.recipe_path)).experiment.metrics}
    assert thresholds["auc"] == pytest.approx(0.7 - 0.002)
    assert searched.observation_budget == 3  # 0.25 + 0.75 * 3/5 = 0.7 of the advised 4
    recipe = load_recipe(Path(searched.recipe_path))
    assert recipe.retrain.mode == "auto" and recipe.experiment.observation_budget == 3
    open_experiment(root, backend, tracking, searched)
    front = [o.assignments for o in backend.best_assignments(first.experiment)]
    space = load_recipe(Path(searched.recipe_path)).experiment
    warm = backend.suggest(searched.experiment).assignments  # warm: the previous best first, as far as it fits
    assert any(fitting_assignments(space, a).items() <= warm.items() for a in front)

    cold = plan_run(root, request(following, run_id="manual__cold", mode="full", max_trials=3))
    assert cold.mode == "full" and cold.observation_budget == 3
    open_experiment(root, backend, tracking, cold)
    assert backend.suggest(cold.experiment).assignments == load_recipe(Path(cold.recipe_path)).queued_suggestions[0]


def test_trials_on_a_sample_then_one_final_fit_on_the_whole_window(root, backend, tracking):
    from sda.retrain import final_fit

    processed_day(root, DAY)
    target = root.processed("clicks", DAY)
    shutil.copytree(target / "shards" / "valid", target / "shards" / "test")
    plan = plan_run(root, request(min_delta=0.0, trial_sample_rows=4000))  # the window holds 12,000 rows
    assert load_recipe(Path(plan.recipe_path)).training.sample_rows == 4000
    for slot in open_experiment(root, backend, tracking, plan):
        report = run_slot(backend, tracking, plan, slot)
        assert all(t.metrics["samples"] == 4000 for t in report.trials if t.status == "ok")
    chosen = select_best(root, backend, plan)["best"]
    outcome = final_fit(plan)
    assert outcome["final_fit"] and outcome["suggestion"] == chosen["suggestion"] and outcome["rows"] == 12_000
    best = json.loads((root.experiment_run(plan.run_id) / "best.json").read_text())
    final_model = root.experiment_run(plan.run_id) / "final" / "model.pt"
    assert best["best"]["model_path"] == str(final_model) and final_model.is_file()
    trials = root.experiment_run(plan.run_id) / "trials"
    assert chosen["model_path"] is None and best["best"]["trial"]["model_path"] is None
    assert not list(trials.glob("*/model.pt"))  # sampled trials keep no model: only the final fit is promoted
    trial_run = json.loads((trials / f"trial-{chosen['suggestion']}" / "result.json").read_text())["mlflow_run"]
    final_result = json.loads((final_model.parent / "result.json").read_text())
    assert trial_run and final_result["mlflow_run"] == trial_run
    assert best["best"]["values"]["auc"] == outcome["values"]["auc"] and best["final_fit"]["rows"] == 12_000
    again = final_fit(plan)  # a rerun: applied again, not fitted again
    assert again == outcome and final_model.stat().st_mtime_ns == Path(best["best"]["model_path"]).stat().st_mtime_ns
    decision = evaluate_run(tracking, plan)  # the final model is the challenger
    assert decision["verdict"] == "promote" and decision["challenger"]["auc"] > 0.6
    version = promote_run(tracking, plan)["version"]
    champion = Registry(tracking, "clicks").champion()
    assert champion.version == version
    assert float(champion.tags["recsys.metric.auc"]) == pytest.approx(outcome["values"]["auc"], abs=1e-6)
    unsampled = plan_run(root, request(DAY, run_id="manual__whole", max_trials=2))
    assert final_fit(unsampled) == {"final_fit": False, "reason": "the trials trained on the whole window"}


def _refresh_day(root, backend, tracking, deadline_seconds: float | None = None,
                 **shape) -> tuple[RunPlan, str, dt.date]:
    """Day 1 searched and promoted; day 2 (`shape`) with a mild decay of the champion: auto refreshes."""
    _, version = _promoted_first_day(root, backend, tracking)
    following = DAY + dt.timedelta(days=1)
    processed_day(root, following, seed=DAY.day, **shape)  # the same world as day 1, its next day
    target = root.processed("clicks", following)
    shutil.copytree(target / "shards" / "valid", target / "shards" / "test")
    champion = Registry(tracking, "clicks").champion()
    recorded = float(champion.tags["recsys.metric.auc"])
    root.served("clicks", following).parent.mkdir(parents=True, exist_ok=True)
    root.served("clicks", following).write_text(json.dumps({  # 0.003 below its recorded AUC: mild
        "champion_version": version, "champion_auc": recorded, "served_auc": recorded - 0.003, "drift": [],
        "validation_status": "passed"}))
    plan = plan_run(root, request(following, min_delta=0.0, deadline_seconds=deadline_seconds), tracking)
    return plan, version, following


def test_a_refresh_fine_tunes_the_champion_on_the_new_day_with_its_tables_grown(root, backend, tracking):
    from sda.models import load_model
    from sda.retrain import final_fit

    plan, version, following = _refresh_day(root, backend, tracking, sizes={"c1": 65, "c3": 11}, vocab_version=2)
    assert plan.mode == "refresh" and "mild" in plan.mode_reason and plan.experiment == f"refresh of version {version}"
    assert [Path(d).name for d in plan.day_dirs] == [f"day={following}"]  # only the days since the champion's
    assert open_experiment(root, backend, tracking, plan) == []
    assert select_best(root, backend, plan)["best"] is None
    outcome = final_fit(plan)
    assert outcome["refresh"] and outcome["rows"] == 12_000
    best = json.loads((root.experiment_run(plan.run_id) / "best.json").read_text())
    refreshed = Path(best["best"]["model_path"])
    assert refreshed == root.experiment_run(plan.run_id) / "refresh" / "model.pt"
    _, config, shape = load_model(refreshed)
    champion_config = load_model(root.experiment_run(plan.run_id) / "champion" / "model.pt")[1]
    assert config == champion_config and shape.table_sizes == (65, 20, 11)  # grown: the new ids have rows
    fitted_at = refreshed.stat().st_mtime_ns
    assert final_fit(plan) == outcome and refreshed.stat().st_mtime_ns == fitted_at  # a rerun: not fitted again
    decision = evaluate_run(tracking, plan)
    assert decision["mode"] == "refresh"
    # The holdout: this day's test split (the days before it have none in these stats), and its sizes.
    assert decision["holdout"]["days"] == [str(following)] and decision["holdout"]["min_rows"] == 10_000
    assert decision["holdout"]["enough"] == (decision["holdout"]["rows"] >= 10_000
                                             and decision["holdout"]["positives"] >= 300)
    gap = decision["auc_difference"]
    assert gap["difference"] == pytest.approx(decision["challenger"]["auc"] - decision["champion"]["auc"], abs=1e-9)
    assert decision["challenger"]["label"] == f"challenger (refresh of version {version})"
    champion_tags = json.loads((root.experiment_run(plan.run_id) / "champion" / "tags.json").read_text())
    assert champion_tags["recsys.days_learned"] == "1"  # the first day's search learned from its one day
    assert promote_run(tracking, plan)["verdict"] == "promote"  # min_delta 0: one more day of the same world
    refreshed_tags = Registry(tracking, "clicks").champion().tags
    assert refreshed_tags["recsys.refresh_of"] == f"refresh of version {version}"
    assert refreshed_tags["recsys.days_learned"] == "2"  # its champion's day and the one it was refreshed on


def test_a_refresh_that_got_worse_is_kept_out(root, backend, tracking):
    from sda.retrain import final_fit

    plan, version, _ = _refresh_day(root, backend, tracking, invert_train=True)  # the day teaches the opposite
    assert plan.mode == "refresh"
    select_best(root, backend, plan)
    final_fit(plan)
    decision = evaluate_run(tracking, plan)
    assert decision["verdict"] == "keep" and decision["challenger"]["auc"] < decision["champion"]["auc"]
    assert promote_run(tracking, plan)["verdict"] == "keep"
    assert Registry(tracking, "clicks").champion().version == version


def test_a_refresh_that_cannot_end_before_the_run_deadline_is_refused_at_planning(root, backend, tracking):
    from sda.advisors.knowledge import DeadlineTooShort

    with pytest.raises(DeadlineTooShort, match="a fit on 12,000 training rows"):
        _refresh_day(root, backend, tracking, deadline_seconds=0.5)


def test_a_refresh_needs_a_day_newer_than_the_champion(root, backend, tracking):
    _promoted_first_day(root, backend, tracking)
    with pytest.raises(ValueError, match="no processed day after 2026-04-10"):
        plan_run(root, request(DAY, run_id="manual__again", mode="refresh"), tracking)


def test_the_linear_baseline_is_trained_once_scored_on_the_holdout_and_stands_in_when_it_wins(root, backend,
                                                                                              tracking):
    from sda.retrain import fit_baseline

    plan = _whole_run(root, backend, tracking, DAY)
    outcome = fit_baseline(plan)
    model = root.experiment_run(plan.run_id) / "baseline" / "model.pt"
    assert outcome["baseline"] and outcome["rows"] == 12_000 and model.is_file()
    fitted_at = model.stat().st_mtime_ns
    assert fit_baseline(plan) == outcome and model.stat().st_mtime_ns == fitted_at  # a rerun: not trained again
    decision = evaluate_run(tracking, plan)
    linear = decision["baseline"]
    assert linear["label"] == "linear baseline (logistic)" and 0.5 < linear["auc"] < 1
    assert linear["stands_in"] == (linear["auc"] > linear["challenger_auc"])
    assert linear["challenger_minus_baseline"]["difference"] == pytest.approx(
        linear["challenger_auc"] - linear["auc"], abs=1e-9)
    judged = decision["challenger"]
    assert judged["auc"] == pytest.approx(max(linear["auc"], linear["challenger_auc"]), abs=1e-12)
    assert judged["label"].startswith("linear baseline") == linear["stands_in"]
    version = promote_run(tracking, plan)["version"]
    tags = Registry(tracking, "clicks").champion().tags
    best = json.loads((root.experiment_run(plan.run_id) / "best.json").read_text())
    family = best["best"]["assignments"].get("model", "dlrm")  # on 12k rows the search chooses the family too
    assert tags["recsys.model"] == ("logistic" if linear["stands_in"] else family)
    assert version is not None
    skipped = plan_run(root, request(DAY, run_id="manual__skip", mode="skip"))
    assert fit_baseline(skipped) == {"baseline": False, "reason": "mode skip: no search to compare with a baseline"}
    unasked = plan_run(root, request(DAY, run_id="manual__nobaseline", baseline=False, max_trials=1))
    assert fit_baseline(unasked)["reason"] == "the promotion policy asks for no baseline"
