"""Plan a run: its training window, its advised recipe and the plan the later tasks share (plan.json).

The plan is made once: a rerun of the same run with the same Params gets the plan its first attempt made.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recdp.storage import DataRoot, parse_day, write_json_atomic, write_text_atomic
from sda.advisors import AdviceRequest, advise
from sda.promote import Registry
from sda.recipe import Recipe, dump_recipe, parse_recipe
from sda.tracking import Tracking

log = logging.getLogger(__name__)


class NoTrainingData(RuntimeError):
    """The run's day has no processed partition to train on."""


@dataclass(frozen=True)
class RunRequest:
    """What a DAG run asks for (its Params and its partition)."""

    dataset: str
    day: str
    run_id: str
    model: str = "dlrm"
    window_days: int = 3
    budget_seconds: float = 1800.0
    max_trials: int | None = None
    workers: int = 2
    champion_auc: float | None = None
    min_delta: float | None = None  # promotion policy overrides (the DAG's Params)
    bootstrap: bool | None = None


@dataclass(frozen=True)
class RunPlan:
    """What the tasks after plan_run share (through XCom)."""

    dataset: str
    day: str
    model: str
    run_id: str
    run_dir: str
    recipe_path: str
    experiment: str
    day_dirs: list[str]
    observation_budget: int
    parallel_bandwidth: int

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> RunPlan:
        return cls(**document)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def mlflow_experiment(self) -> str:
        return f"recsys_retrain/{self.dataset}/{self.run_id}"


def training_days(root: DataRoot, dataset: str, day: str, window_days: int) -> list[Path]:
    """The processed partitions of the window ending at `day`, oldest first (days not processed, e.g.
    quarantined ones, are left out); the day itself must be there."""
    end = parse_day(day)
    days = [end - dt.timedelta(days=offset) for offset in range(window_days - 1, -1, -1)]
    found = [root.processed(dataset, d) for d in days if (root.processed(dataset, d) / "_SUCCESS").is_file()]
    if not found or found[-1] != root.processed(dataset, end):
        raise NoTrainingData(f"{dataset} day={end} has no processed partition (run preprocess first)")
    return found


def _named(recipe: Recipe, request: RunRequest, day_dirs: list[Path]) -> Recipe:
    """The recipe with the run's promotion policy, and its experiment named after what the search depends on
    (not the promotion policy, which only decides what happens after it)."""
    document = recipe.model_dump(mode="json", exclude_none=True)
    overrides = {"min_delta": request.min_delta, "bootstrap": request.bootstrap}
    document["promotion"] = {**document.get("promotion", {}), **{k: v for k, v in overrides.items() if v is not None}}
    searched = {k: v for k, v in document.items() if k != "promotion"}
    searched["experiment"] = {**searched["experiment"], "name": "unnamed"}
    fingerprint = hashlib.sha256((dump_recipe(parse_recipe(searched)) + "\n".join(d.name for d in day_dirs))
                                 .encode()).hexdigest()[:12]
    document["experiment"]["name"] = f"{request.dataset}-{request.day}-{request.model}-{fingerprint}"
    return parse_recipe(document, "advised recipe")


def plan_run(root: DataRoot, request: RunRequest) -> RunPlan:
    """The run's recipe and plan, made once: a rerun of the same run with the same Params gets the plan its
    first attempt made (plan.json), even when the champion (the advisor's AUC threshold) changed since, so
    that it reopens the same experiment instead of starting another."""
    run_dir = root.experiment_run(request.run_id)
    earlier = _standing_plan(run_dir / "plan.json", request)
    if earlier is not None:
        log.info("plan for %s day=%s stands (a rerun): %s", request.dataset, request.day, earlier.experiment)
        return earlier
    day_dirs = training_days(root, request.dataset, request.day, request.window_days)
    advice = AdviceRequest.from_stats_file(
        day_dirs[-1] / "stats.json", dataset=request.dataset, model=request.model,
        budget_seconds=request.budget_seconds, workers=request.workers, window_days=len(day_dirs),
        champion_auc=request.champion_auc, max_observations=request.max_trials)
    recipe = _named(advise(advice), request, day_dirs)
    recipe_path = run_dir / "recipe.yaml"
    write_text_atomic(recipe_path, dump_recipe(recipe))
    experiment = recipe.experiment
    log.info("recipe for %s day=%s on %d day(s): model %s, %d observations, bandwidth %d, %.0f training s -> %s",
             request.dataset, request.day, len(day_dirs), request.model, experiment.observation_budget,
             experiment.parallel_bandwidth, request.budget_seconds, recipe_path)
    plan = RunPlan(request.dataset, request.day, request.model, request.run_id, str(run_dir), str(recipe_path),
                   experiment.name, [str(d) for d in day_dirs], experiment.observation_budget,
                   experiment.parallel_bandwidth)
    write_json_atomic(run_dir / "plan.json", {"request": asdict(request), "plan": plan.to_dict()})
    return plan


def _standing_plan(path: Path, request: RunRequest) -> RunPlan | None:
    """The earlier attempt's plan, if it was made for the same request (the champion's AUC aside) and its
    recipe and training days are still there."""
    if not path.is_file():
        return None
    document = json.loads(path.read_text())
    asked = {k: v for k, v in asdict(request).items() if k != "champion_auc"}
    if {k: v for k, v in document["request"].items() if k != "champion_auc"} != asked:
        return None
    plan = RunPlan.from_dict(document["plan"])
    if not Path(plan.recipe_path).is_file() or not all(Path(d).is_dir() for d in plan.day_dirs):
        return None
    return plan


def champion_auc(tracking: Tracking, dataset: str) -> float | None:
    """The serving champion's AUC as recorded when it was chosen (the advisor's AUC threshold is this less
    a tolerance), or None without a champion."""
    record = Registry(tracking, dataset).champion()
    value = record.tags.get("recsys.metric.auc") if record else None
    return float(value) if value else None
