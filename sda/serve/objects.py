"""SigOpt's JSON objects, rendered from the local engine's state (shapes the sigopt 8.x client reads:
ids as strings, times as epoch seconds, categorical values as objects, lists as paginations)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from sda.hpo.backend import Observation, Suggestion
from sda.hpo.experiment import Experiment, Parameter

MAX_PAGE = 1000


def _epoch(moment) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def parameter_json(parameter: Parameter) -> dict[str, Any]:
    return {
        "object": "parameter", "name": parameter.name, "type": parameter.type,
        "bounds": None if parameter.bounds is None else {"object": "bounds", "min": parameter.bounds.min,
                                                          "max": parameter.bounds.max},
        "categorical_values": None if parameter.categorical_values is None else [
            {"object": "categorical_value", "name": v.name, "enum_index": i + 1}
            for i, v in enumerate(parameter.categorical_values)],
        "grid": parameter.grid, "transformation": parameter.transformation,
        "conditions": parameter.conditions or {}, "precision": None, "default_value": None,
    }


def experiment_json(experiment_id: int, experiment: Experiment, state: str, created: int | None,
                    observations: Sequence[tuple[FrozenTrial, Observation]]) -> dict[str, Any]:
    ordered = sorted(observations, key=lambda pair: pair[1].suggestion)
    return {
        "object": "experiment", "id": str(experiment_id), "name": experiment.name, "type": experiment.type,
        "state": state, "created": created, "updated": created, "client": "1", "project": None,
        "development": False, "metadata": experiment.metadata or {},
        "parameters": [parameter_json(p) for p in experiment.parameters],
        "metrics": [{"object": "metric", "name": m.name, "objective": m.objective, "strategy": m.strategy,
                     "threshold": m.threshold} for m in experiment.metrics],
        "conditionals": [{"object": "conditional", "name": c.name, "values": c.values}
                         for c in experiment.conditionals],
        "linear_constraints": [], "num_solutions": 1,
        "observation_budget": experiment.observation_budget, "parallel_bandwidth": experiment.parallel_bandwidth,
        "progress": {
            "object": "progress", "observation_count": len(ordered),
            "observation_budget_consumed": float(len(ordered)),
            "first_observation": observation_json(experiment_id, *ordered[0]) if ordered else None,
            "last_observation": observation_json(experiment_id, *ordered[-1]) if ordered else None,
        },
    }


def suggestion_json(experiment_id: int, trial: FrozenTrial, suggestion: Suggestion) -> dict[str, Any]:
    return {"object": "suggestion", "id": str(suggestion.id), "experiment": str(experiment_id),
            "created": _epoch(trial.datetime_start), "state": "open" if trial.state == TrialState.RUNNING else "closed",
            "assignments": suggestion.assignments, "metadata": suggestion.metadata or {}, "deleted": False}


def queued_json(experiment_id: int, suggestion: Suggestion) -> dict[str, Any]:
    return {"object": "queued_suggestion", "id": str(suggestion.id), "experiment": str(experiment_id),
            "created": None, "assignments": suggestion.assignments}


def values_json(values: dict[str, float] | None) -> list[dict[str, Any]]:
    return [{"object": "metric_evaluation", "name": name, "value": value, "value_stddev": None}
            for name, value in sorted((values or {}).items())]


def observation_json(experiment_id: int, trial: FrozenTrial, observation: Observation) -> dict[str, Any]:
    return {"object": "observation", "id": str(observation.suggestion), "experiment": str(experiment_id),
            "suggestion": None if trial.user_attrs.get("without_suggestion") else str(observation.suggestion),
            "created": _epoch(trial.datetime_complete), "assignments": observation.assignments,
            "failed": observation.failed, "metadata": observation.metadata or {},
            "values": values_json(observation.values), "value": None, "value_stddev": None}


def best_json(observation: Observation) -> dict[str, Any]:
    return {"object": "best_assignments", "id": str(observation.suggestion), "assignments": observation.assignments,
            "values": values_json(observation.values), "value": None, "value_stddev": None}


def pagination(items: Sequence[Any], key: Callable[[Any], int], render: Callable[[Any], dict],
               limit: int | None, before: str | None, after: str | None) -> dict[str, Any]:
    """Newest first (highest id first); `before` pages towards older items, `after` towards newer ones."""
    ordered = sorted(items, key=key, reverse=True)
    if before is not None:
        ordered = [i for i in ordered if key(i) < int(before)]
    if after is not None:
        ordered = [i for i in reversed(ordered) if key(i) > int(after)][::-1]
    size = min(limit or 100, MAX_PAGE)
    page = ordered[-size:] if after is not None else ordered[:size]
    older = page and key(page[-1]) > min((key(i) for i in items), default=0)
    newer = page and key(page[0]) < max((key(i) for i in items), default=0)
    return {"object": "pagination", "count": len(items), "data": [render(i) for i in page],
            "paging": {"before": str(key(page[-1])) if older else None,
                       "after": str(key(page[0])) if newer else None}}
