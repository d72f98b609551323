"""A run's trial slots: the experiment created (or reopened), then one worker per trial that may run at once.

A slot is a worker: it runs trials one after another (suggest -> train -> observe, each an MLflow run) until
the experiment is over. There are exactly parallel_bandwidth slots, so no slot ever waits for a suggestion
that the bandwidth cannot give it; however long a trial lasts (hours on a 100M-row window), the other slots
are trials of their own, not waiters with a deadline.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recdp.storage import DataRoot, write_json_atomic
from sda.hpo.backend import OptimizerBackend
from sda.recipe import Recipe, load_recipe
from sda.retrain.history import previous_experiment
from sda.retrain.planning import RunPlan
from sda.tracking import SLOT_TAG, Tracking
from sda.trials import check_metrics, first_assignments, next_suggestion, run_trial, spent_training_seconds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialReport:
    """One trial a slot ran (trials/trial-N/result.json holds it with its curve)."""

    slot: int
    status: str  # ok | failed | stopped
    suggestion: int
    assignments: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    mlflow_run: str | None = None
    model_path: str | None = None


@dataclass(frozen=True)
class SlotReport:
    """What one slot did: its trials, oldest first (those of earlier attempts included), and why it ended."""

    slot: int
    trials: list[TrialReport]
    ended: str

    @property
    def mlflow_run(self) -> str | None:
        """The MLflow run of the slot's newest trial (the task's link in the Airflow UI)."""
        return self.trials[-1].mlflow_run if self.trials else None

    def to_dict(self) -> dict[str, Any]:
        return {"slot": self.slot, "trials": [asdict(t) for t in self.trials], "ended": self.ended,
                "mlflow_run": self.mlflow_run}


def trial_slots(plan: RunPlan) -> list[int]:
    """One slot per trial that may run at once: the experiment's parallel_bandwidth (never more than its
    observation budget)."""
    return list(range(max(1, min(plan.parallel_bandwidth, plan.observation_budget))))


def trial_folder(plan: RunPlan, suggestion: int) -> Path:
    """Where a run's trial writes result.json (and model.pt, when it keeps its model)."""
    return Path(plan.run_dir) / "trials" / f"trial-{suggestion}"


def open_experiment(root: DataRoot, backend: OptimizerBackend, tracking: Tracking, plan: RunPlan) -> list[int]:
    """Create the experiment (idempotent), warm-started from the previous day's unless the mode is full; returns
    the trial slots (none when the mode does not train)."""
    if not plan.searches:
        log.info("mode %s: no experiment (%s)", plan.mode, plan.mode_reason)
        return []
    recipe = load_recipe(Path(plan.recipe_path))
    check_metrics(recipe)
    previous = previous_experiment(root, plan.dataset, plan.model, plan.day) if plan.mode != "full" else None
    seeds = []
    if previous and previous != plan.experiment:
        try:
            seeds = [o.assignments for o in backend.best_assignments(previous)]
        except Exception as error:  # an old experiment is a hint, not a dependency
            log.warning("no warm start from %s: %s", previous, error)
    backend.create(recipe.experiment, warm_start=first_assignments(recipe, seeds))
    tracking.experiment(plan.mlflow_experiment, tags={"recsys.optimizer_experiment": plan.experiment,
                                                      "recsys.dataset": plan.dataset, "recsys.day": plan.day})
    progress = backend.progress(plan.experiment)
    slots = trial_slots(plan)
    log.info("experiment %s: %d of %s observations made, warm start from %s with %d assignment(s), %d queued by "
             "the recipe; %d slot(s)", plan.experiment, progress.observation_count, progress.observation_budget,
             previous or "nothing", len(seeds), len(recipe.queued_suggestions), len(slots))
    return slots


def run_slot(backend: OptimizerBackend, tracking: Tracking, plan: RunPlan, slot: int,
             wait_seconds: float = 600.0) -> SlotReport:
    """Slot `slot` of this run: trials one after another until the experiment is over. A retry of a slot
    whose earlier attempt was killed first completes the MLflow runs of the trials that attempt observed,
    then abandons the suggestion it left open (it is suggested again) and marks its MLflow run KILLED."""
    recipe = load_recipe(Path(plan.recipe_path))
    slot_key = f"{plan.run_id}#{slot}"
    mlflow_experiment = tracking.experiment(plan.mlflow_experiment)
    trials = []
    for report, curve in _observed_trials(plan, slot):  # observed by an earlier attempt: tracked, not rerun
        _track_completed(tracking, mlflow_experiment, slot_key, plan, report, curve)
        trials.append(report)
    if trials:
        log.warning("slot %d: %d trial(s) observed by earlier attempts", slot, len(trials))
    for stale in backend.open_suggestions(plan.experiment):
        if (stale.metadata or {}).get("slot") == slot_key:
            log.warning("slot %d: abandoning suggestion %d of an earlier attempt", slot, stale.id)
            backend.abandon(plan.experiment, stale.id)
    tracking.kill_stale_runs(mlflow_experiment, slot_key)
    while True:
        suggestion = next_suggestion(backend, plan.experiment, recipe, {"slot": slot_key}, wait_seconds=wait_seconds)
        if suggestion is None:
            break
        trials.append(_one_trial(backend, tracking, plan, recipe, mlflow_experiment, slot, suggestion))
    progress = backend.progress(plan.experiment)
    ended = (f"experiment over: {progress.observation_count}/{progress.observation_budget} observations, "
             f"{spent_training_seconds(backend.observations(plan.experiment)):.0f}s of training spent")
    return SlotReport(slot, trials, ended)


def _one_trial(backend: OptimizerBackend, tracking: Tracking, plan: RunPlan, recipe: Recipe,
               mlflow_experiment: str, slot: int, suggestion) -> TrialReport:
    run = tracking.start_trial(mlflow_experiment, f"{plan.run_id}#{slot}", suggestion.id, suggestion.assignments,
                               {"recsys.optimizer_experiment": plan.experiment, "recsys.day": plan.day})
    trial_dir = trial_folder(plan, suggestion.id)
    # A trial on a sample of the window is never promoted (the final fit retrains the chosen assignments on the
    # whole window), so it keeps no model: at full Criteo cardinalities each would take 3.7 GB of disk.
    model_dir = trial_dir if recipe.training.sample_rows is None else None
    try:
        outcome = run_trial(backend, plan.experiment, recipe, [Path(d) for d in plan.day_dirs], suggestion,
                            model_dir=model_dir)
    except BaseException:
        tracking.client.set_terminated(run, "KILLED")
        raise
    result = outcome.result
    report = TrialReport(slot, result.status, suggestion.id, suggestion.assignments,
                         {k: float(v) for k, v in result.metrics.items()}, result.reason, run,
                         str(outcome.model_path) if outcome.model_path else None)
    # Written right after the observation: a retry that finds it completes the MLflow run, not the trial.
    write_json_atomic(trial_dir / "result.json", {**asdict(report), "curve": result.curve,
                                                  "experiment": plan.experiment})
    tracking.finish_trial(run, result.status, result.reason, result.metrics, result.curve,
                          {"result.json": {**asdict(report), "curve": result.curve}})
    shown = {k: round(report.metrics[k], 4) for k in ("auc", "logloss", "training_time") if k in report.metrics}
    log.info("slot %d, trial %d: %s %s %s %s", slot, report.suggestion, report.status, report.assignments, shown,
             report.reason or "")
    return report


def _observed_trials(plan: RunPlan, slot: int) -> list[tuple[TrialReport, list[dict[str, float]]]]:
    """The trials earlier attempts of this slot observed (trials/*/result.json), oldest first."""
    found = []
    for path in (Path(plan.run_dir) / "trials").glob("trial-*/result.json"):
        document = json.loads(path.read_text())
        if document.get("slot") == slot and document.get("experiment") in (None, plan.experiment):
            curve = document.pop("curve", [])
            document.pop("experiment", None)
            found.append((TrialReport(**document), curve))
    return sorted(found, key=lambda pair: pair[0].suggestion)


def _track_completed(tracking: Tracking, mlflow_experiment: str, slot_key: str, plan: RunPlan,
                     report: TrialReport, curve: list[dict[str, float]]) -> None:
    """Finish the MLflow run of an observed trial, unless an earlier attempt already did."""
    runs = tracking.client.search_runs([mlflow_experiment], filter_string=f"tags.`{SLOT_TAG}` = '{slot_key}'")
    mine = [r for r in runs if r.data.tags.get("recsys.suggestion") == str(report.suggestion)]
    if any(r.info.status in ("FINISHED", "FAILED") for r in mine):
        return
    run = mine[0].info.run_id if mine else tracking.start_trial(
        mlflow_experiment, slot_key, report.suggestion, report.assignments,
        {"recsys.optimizer_experiment": plan.experiment, "recsys.day": plan.day})
    tracking.finish_trial(run, report.status, report.reason, report.metrics, curve,
                          {"result.json": {**asdict(report), "curve": curve}})
