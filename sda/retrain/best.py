"""Select a run's best trial: the Pareto set -> the chosen trial -> best.json (and a Pareto plot)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from recdp.storage import DataRoot, write_json_atomic
from sda.hpo.backend import Observation, OptimizerBackend
from sda.hpo.selection import choose
from sda.recipe import load_recipe
from sda.retrain.history import record_chosen
from sda.retrain.pareto import plot_pareto
from sda.retrain.planning import RunPlan
from sda.trials import spent_training_seconds

log = logging.getLogger(__name__)


def select_best(root: DataRoot, backend: OptimizerBackend, plan: RunPlan) -> dict[str, Any]:
    """best.json: the chosen trial (or none, with the reason), the Pareto set and the experiment's totals."""
    run = {"dataset": plan.dataset, "day": plan.day, "model": plan.model, "run_id": plan.run_id,
           "mode": plan.mode, "mode_reason": plan.mode_reason}
    if not plan.searches:  # nothing to choose from: a refresh's model comes from final_fit
        document = {**run, "experiment": None, "observations": 0, "failed": 0, "abandoned": 0,
                    "training_seconds": 0.0, "pareto": [], "best": None,
                    "reason": f"mode {plan.mode}: {plan.mode_reason}"}
        write_json_atomic(Path(plan.run_dir) / "best.json", document)
        return document
    recipe = load_recipe(Path(plan.recipe_path))
    experiment = recipe.experiment
    front = backend.best_assignments(plan.experiment)
    observations = backend.observations(plan.experiment)
    chosen = choose(front, experiment, recipe.selection.tolerance)
    progress = backend.progress(plan.experiment)
    document: dict[str, Any] = {
        **run, "experiment": plan.experiment,
        "recipe": plan.recipe_path, "day_dirs": plan.day_dirs,
        "observations": progress.observation_count, "failed": progress.failed_count,
        "abandoned": progress.abandoned_count,
        "training_seconds": round(spent_training_seconds(observations), 3),
        "selection_tolerance": recipe.selection.tolerance,
        "pareto": [_observation_dict(o) for o in front],
        "best": _observation_dict(chosen) if chosen else None,
    }
    if chosen is None:
        thresholds = {m.name: m.threshold for m in experiment.metrics if m.threshold is not None}
        document["reason"] = (f"no observation met every threshold {thresholds}" if observations
                              else "no trial was observed")
        log.warning("experiment %s: %s", plan.experiment, document["reason"])
    run_dir = Path(plan.run_dir)
    if observations:
        plot_pareto(experiment, observations, front, chosen, run_dir / "pareto.png")
        document["pareto_plot"] = str(run_dir / "pareto.png")
    write_json_atomic(run_dir / "best.json", document)
    if chosen is not None:
        record_chosen(root, plan.dataset, plan.model, plan.day, plan.experiment, plan.run_id)
    return document


def _observation_dict(observation: Observation) -> dict[str, Any]:
    metadata = observation.metadata or {}
    return {"suggestion": observation.suggestion, "assignments": observation.assignments,
            "values": observation.values, "model_path": metadata.get("model_path"),
            "training_seconds": metadata.get("training_seconds")}
