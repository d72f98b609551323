"""Run an experiment's trials: suggestion -> recipe with the assignments -> train -> observation."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sda.hpo.backend import BudgetExhausted, Observation, OptimizerBackend, Suggestion
from sda.models import ModelConfig, parse_model_config
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


def check_metrics(recipe: Recipe) -> None:
    unknown = sorted({m.name for m in recipe.experiment.metrics} - TRIAL_METRICS)
    if unknown:
        raise ValueError(f"experiment metrics {unknown} are not reported by trials; use {sorted(TRIAL_METRICS)}")


def configs_for(recipe: Recipe, assignments: dict) -> tuple[ModelConfig, TrainingConfig]:
    """The recipe's model and training sections with a suggestion's assignments applied (and validated)."""
    model = recipe.model.model_dump()
    training = recipe.training.model_dump()
    model_fields = set(type(recipe.model).model_fields)
    for name, value in assignments.items():
        if name in model_fields:
            model[name] = value
        elif name in TrainingConfig.model_fields:
            training[name] = value
    return parse_model_config(model), TrainingConfig.model_validate(training)


def spent_training_seconds(observations: Sequence[Observation]) -> float:
    return sum(float((o.metadata or {}).get("training_seconds", 0.0)) for o in observations)


class MedianStopping:
    """Stop a trial whose intermediate AUC is below the median AUC that the completed trials had at the same
    point of their training (the median stopping rule of Google Vizier, as Optuna's MedianPruner applies it)."""

    def __init__(self, observations: Sequence[Observation], min_trials: int = 3) -> None:
        self.curves = [o.metadata["curve"] for o in observations
                       if not o.failed and o.metadata and o.metadata.get("curve")]
        self.min_trials = min_trials

    def __call__(self, step: int, fraction: float, auc: float) -> bool:
        earlier = []
        for curve in self.curves:
            reached = [p["auc"] for p in curve if p.get("fraction", 1.0) <= fraction + 1e-9]
            if reached:
                earlier.append(reached[-1])
        if len(earlier) < self.min_trials:
            return True
        return auc >= statistics.median(earlier)


def run_trial(backend: OptimizerBackend, experiment_id: str, recipe: Recipe, day_dirs: Sequence[Path],
              suggestion: Suggestion, prune: bool = True) -> TrialOutcome:
    try:
        model, training = configs_for(recipe, suggestion.assignments)
    except ValueError as invalid:  # e.g. an assignment the model's shape rules refuse
        backend.observe(experiment_id, suggestion.id, failed=True, reason=f"invalid assignments: {invalid}")
        raise
    callback = MedianStopping(backend.observations(experiment_id)) if prune else None
    try:
        result = train(model, training, day_dirs, callback=callback)
    except BaseException:
        # A crash of the worker, not of the parameters: give the suggestion back, so it is run again.
        backend.abandon(experiment_id, suggestion.id)
        raise
    metadata = {"curve": result.curve, "training_seconds": result.metrics["training_time"]}
    if result.status != "ok":
        backend.observe(experiment_id, suggestion.id, failed=True, reason=result.reason, metadata=metadata)
        return TrialOutcome(suggestion, result, None)
    values = {m.name: float(result.metrics[m.name]) for m in recipe.experiment.metrics}
    backend.observe(experiment_id, suggestion.id, values, metadata=metadata)
    return TrialOutcome(suggestion, result, values)


def optimize(recipe: Recipe, day_dirs: Sequence[Path], backend: OptimizerBackend,
             warm_start_from: str | None = None) -> list[TrialOutcome]:
    """Run the whole experiment in this process, one trial after another, until the budget is spent.
    With warm_start_from, the best assignments of that (earlier) experiment are tried first."""
    if recipe.experiment is None:
        raise ValueError("the recipe has no experiment section")
    check_metrics(recipe)
    seeds = [o.assignments for o in backend.best_assignments(warm_start_from)] if warm_start_from else []
    experiment_id = backend.create(recipe.experiment, warm_start=seeds)
    outcomes: list[TrialOutcome] = []
    started = time.monotonic()
    while True:
        spent = spent_training_seconds(backend.observations(experiment_id))
        if recipe.budget and spent >= recipe.budget.training_seconds:
            log.info("training budget spent: %.0fs of %.0fs", spent, recipe.budget.training_seconds)
            break
        try:
            suggestion = backend.suggest(experiment_id)
        except BudgetExhausted:
            break
        try:
            outcome = run_trial(backend, experiment_id, recipe, day_dirs, suggestion)
        except ValueError as invalid:
            log.warning("trial %d failed: %s", suggestion.id, invalid)
            continue
        outcomes.append(outcome)
        progress = backend.progress(experiment_id)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in (outcome.observed or {}).items()) or outcome.result.reason
        log.info("trial %d (%d/%s) %s: %s | %s (%.0fs elapsed)", suggestion.id, progress.observation_count,
                 progress.observation_budget, outcome.result.status, suggestion.assignments, shown,
                 time.monotonic() - started)
    return outcomes
