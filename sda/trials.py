"""Run an experiment's trials: suggestion -> recipe with the assignments -> train -> observation."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sda.hpo.backend import BandwidthExceeded, BudgetExhausted, Observation, OptimizerBackend, Suggestion
from sda.models import ModelConfig, parse_model_config, save_model
from sda.pruning import MedianStopping, SuccessiveHalving, encode_curve
from sda.recipe import Recipe
from sda.train import TrainingConfig, TrainResult, train

log = logging.getLogger(__name__)

# What a trial can report, by the names recipes use for metrics.
TRIAL_METRICS = {"auc", "logloss", "accuracy", "training_time", "samples_per_second", "peak_memory_mb",
                 "model_bytes", "model_parameters"}


@dataclass(frozen=True)
class TrialOutcome:
    suggestion: Suggestion
    result: TrainResult
    observed: dict[str, float] | None
    model_path: Path | None = None


def check_metrics(recipe: Recipe) -> None:
    unknown = sorted({m.name for m in recipe.experiment.metrics} - TRIAL_METRICS)
    if unknown:
        raise ValueError(f"experiment metrics {unknown} are not reported by trials; use {sorted(TRIAL_METRICS)}")


def configs_for(recipe: Recipe, assignments: dict) -> tuple[ModelConfig, TrainingConfig]:
    """The recipe's model (the family the assignments choose, when the search chooses one) and training
    sections with a suggestion's assignments applied (and validated)."""
    base = recipe.model_for(assignments)
    model = base.model_dump()
    training = recipe.training.model_dump()
    model_fields = set(type(base).model_fields) - {"name"}
    for name, value in assignments.items():
        if name in model_fields:
            # SigOpt parameters are scalars: a layer list is tuned as categorical values such as "256-128".
            if isinstance(model.get(name), list | tuple) and isinstance(value, str):
                value = [int(width) for width in value.split("-")]
            model[name] = value
        elif name in TrainingConfig.model_fields:
            training[name] = value
    return parse_model_config(model), TrainingConfig.model_validate(training)


def spent_training_seconds(observations: Sequence[Observation]) -> float:
    return sum(float((o.metadata or {}).get("training_seconds", 0.0)) for o in observations)


def spent_trial_seconds(observations: Sequence[Observation]) -> float:
    """What the budget counts: the trials' training seconds and their evaluations' (on the 100M-row day, four
    evaluations of 2M rows cost a trial about as much as its training; the models' samples_per_second do not
    count them)."""
    return sum(float((o.metadata or {}).get(key, 0.0)) for o in observations
               for key in ("training_seconds", "eval_seconds"))


def stopping_rule(recipe: Recipe, observations: Callable[[], Sequence[Observation]],
                  cost_aware: bool) -> MedianStopping | SuccessiveHalving | None:
    """The recipe's early-stopping rule for one trial, judged against the experiment's observations."""
    rule = recipe.early_stopping
    if rule.rule == "none":
        return None
    if rule.rule == "successive_halving" and recipe.training.eval_every and recipe.training.eval_every < 1:
        return SuccessiveHalving(observations, recipe.training.eval_every, rule.reduction_factor, rule.min_trials,
                                 cost_aware)
    # The median rule also stands in for successive halving when a trial has no evaluation before its end.
    return MedianStopping(observations(), rule.min_trials, cost_aware)


def run_trial(backend: OptimizerBackend, experiment_id: str, recipe: Recipe, day_dirs: Sequence[Path],
              suggestion: Suggestion, prune: bool = True, model_dir: Path | None = None,
              cost_aware: bool | None = None) -> TrialOutcome:
    """Train the suggestion and observe it. A trial that fails on its parameters (invalid, diverged, stopped
    as hopeless) is observed as failed; any other exception is the worker's, and abandons the suggestion.
    With model_dir, an ok trial's model is saved there before the observation names it. Where the backend
    detects dead workers by their heartbeats, the trial sends them until it is observed."""
    keep_alive = getattr(backend, "keep_alive", None)
    with keep_alive(experiment_id, suggestion.id) if keep_alive else contextlib.nullcontext():
        return _train_and_observe(backend, experiment_id, recipe, day_dirs, suggestion, prune, model_dir, cost_aware)


def _train_and_observe(backend: OptimizerBackend, experiment_id: str, recipe: Recipe, day_dirs: Sequence[Path],
                       suggestion: Suggestion, prune: bool, model_dir: Path | None,
                       cost_aware: bool | None) -> TrialOutcome:
    try:
        model, training = configs_for(recipe, suggestion.assignments)
    except ValueError as invalid:  # e.g. an assignment the model's shape rules refuse
        backend.observe(experiment_id, suggestion.id, failed=True, reason=f"invalid assignments: {invalid}")
        return TrialOutcome(suggestion, TrainResult("failed", f"invalid assignments: {invalid}", {}), None)
    if cost_aware is None:  # judge a trial's cost only where the experiment optimizes it
        cost_aware = any(m.name == "training_time" and m.strategy == "optimize" for m in recipe.experiment.metrics)
    callback = stopping_rule(recipe, lambda: backend.observations(experiment_id), cost_aware) if prune else None
    try:
        result = train(model, training, day_dirs, callback=callback)
        model_path = None
        if model_dir is not None and result.status == "ok" and result.model is not None:
            model_path = Path(model_dir) / "model.pt"
            save_model(model_path, result.model, model, result.shape)
    except BaseException:
        # A crash of the worker, not of the parameters: give the suggestion back, so it is run again.
        backend.abandon(experiment_id, suggestion.id)
        raise
    metadata: dict[str, Any] = {"curve": encode_curve(result.curve),
                                "training_seconds": round(result.metrics["training_time"], 3),
                                "eval_seconds": round(result.metrics.get("eval_seconds", 0.0), 3)}
    if model_path is not None:
        metadata["model_path"] = str(model_path)
    if result.status != "ok":
        backend.observe(experiment_id, suggestion.id, failed=True, reason=result.reason, metadata=metadata)
        return TrialOutcome(suggestion, result, None)
    values = {m.name: float(result.metrics[m.name]) for m in recipe.experiment.metrics}
    backend.observe(experiment_id, suggestion.id, values, metadata=metadata)
    return TrialOutcome(suggestion, result, values, model_path)


def next_suggestion(backend: OptimizerBackend, experiment_id: str, recipe: Recipe,
                    metadata: dict[str, Any] | None = None, wait_seconds: float = 600.0,
                    poll_seconds: float = 2.0) -> Suggestion | None:
    """The next suggestion, waiting while parallel_bandwidth suggestions are open, or while the observation
    budget is taken by open suggestions of other workers (one may be given back); None once the experiment is
    over (observation budget or seconds budget spent) or that wait outlasted `wait_seconds`."""
    deadline = time.monotonic() + wait_seconds
    while True:
        spent = spent_trial_seconds(backend.observations(experiment_id))
        if recipe.budget and spent >= recipe.budget.training_seconds:
            log.info("budget spent: %.0fs of trials (evaluations included) of %.0fs", spent,
                     recipe.budget.training_seconds)
            return None
        try:
            suggestion = backend.suggest(experiment_id, metadata=metadata)
        except BudgetExhausted:
            # The budget counts open suggestions: while another worker's is open, it is not spent yet. That
            # worker may have died; its suggestion is given back once its heartbeat is stale, and someone has
            # to run it. So wait while one is open and observations are short of the budget.
            progress = backend.progress(experiment_id)
            short = progress.observation_budget is not None and progress.observation_count < progress.observation_budget
            if not (short and progress.open_suggestions) or time.monotonic() >= deadline:
                return None
            time.sleep(poll_seconds)
            continue
        except BandwidthExceeded:
            if time.monotonic() >= deadline:
                raise
            time.sleep(poll_seconds)
            continue
        beat = getattr(backend, "beat", None)  # backends that detect dead workers by their heartbeats
        if beat is not None:
            beat(experiment_id, suggestion.id)
        return suggestion


def first_assignments(recipe: Recipe, seeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a new experiment tries first: an earlier experiment's best assignments, then the recipe's
    queued suggestions (the advised point)."""
    return [*seeds, *recipe.queued_suggestions]


def optimize(recipe: Recipe, day_dirs: Sequence[Path], backend: OptimizerBackend,
             warm_start_from: str | None = None, worker: str | None = None,
             model_root: Path | None = None,
             on_outcome: Callable[[TrialOutcome], None] | None = None,
             cost_aware: bool | None = None) -> list[TrialOutcome]:
    """Run trials in this process, one after another, until the experiment's budget is spent. Several
    processes may run this on one experiment at once (a shared storage): each is a worker, waiting while
    parallel_bandwidth suggestions are open. With warm_start_from, the best assignments of that (earlier)
    experiment are tried first, then the recipe's queued_suggestions. `cost_aware` sets the stopping rule's
    kind (None: cost-aware exactly when training_time is optimized)."""
    if recipe.experiment is None:
        raise ValueError("the recipe has no experiment section")
    check_metrics(recipe)
    seeds = [o.assignments for o in backend.best_assignments(warm_start_from)] if warm_start_from else []
    experiment_id = backend.create(recipe.experiment, warm_start=first_assignments(recipe, seeds))
    outcomes: list[TrialOutcome] = []
    started = time.monotonic()
    while True:
        suggestion = next_suggestion(backend, experiment_id, recipe, {"worker": worker} if worker else None)
        if suggestion is None:
            break
        model_dir = Path(model_root) / f"trial-{suggestion.id}" if model_root else None
        outcome = run_trial(backend, experiment_id, recipe, day_dirs, suggestion, model_dir=model_dir,
                            cost_aware=cost_aware)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
        progress = backend.progress(experiment_id)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in (outcome.observed or {}).items()) or outcome.result.reason
        log.info("trial %d (%d/%s) %s: %s | %s (%.0fs elapsed)", suggestion.id, progress.observation_count,
                 progress.observation_budget, outcome.result.status, suggestion.assignments, shown,
                 time.monotonic() - started)
    return outcomes
