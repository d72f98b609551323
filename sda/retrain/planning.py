"""Plan a run: its training window, its advised recipe and the plan the later tasks share (plan.json).

The plan is made once: a rerun of the same run with the same Params gets the plan its first attempt made.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from recdp.storage import DataRoot, parse_day, write_json_atomic, write_text_atomic
from sda.advisors import AdviceRequest, advise, knowledge
from sda.policy import RetrainPolicy
from sda.promote import Registry
from sda.recipe import Recipe, dump_recipe, parse_recipe
from sda.retrain.mode import (
    TRAINING_MODES,
    ModeDecision,
    choose_mode,
    last_full_day,
    last_shift_day,
    mode_recorded,
    record_mode,
    scaled_budget,
)
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
    baseline: bool | None = None  # train the linear baseline a challenger must beat (None: the policy's, yes)
    mode: str = "auto"  # retraining policy overrides (the DAG's Params)
    decay_tolerance: float | None = None
    trial_sample_rows: int | None = None  # trials of a larger window sample it (None: the advisor's default)
    deadline_seconds: float | None = None  # what the run has left before its dagrun_timeout, when planned


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
    mode: str = "search"  # sda.retrain.mode: full | search train; skip | data do not (no recipe, no experiment)
    mode_reason: str = ""
    holdout_not_before: str | None = None  # the newest abrupt shift: the promotion holdout does not reach past it

    @property
    def searches(self) -> bool:
        """Whether the run has an experiment (full, search); refresh trains one model without one."""
        return self.mode in TRAINING_MODES

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> RunPlan:
        return cls(**document)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def mlflow_experiment(self) -> str:
        return f"recsys_retrain/{self.dataset}/{self.run_id}"


def training_days(root: DataRoot, dataset: str, day: str, window_days: int, not_before: str | None = None,
                  ) -> list[Path]:
    """The processed partitions of the window ending at `day`, oldest first (days not processed, e.g.
    quarantined ones, and days before `not_before` are left out); the day itself must be there."""
    end = parse_day(day)
    days = [end - dt.timedelta(days=offset) for offset in range(window_days - 1, -1, -1)]
    if not_before is not None:
        days = [d for d in days if d >= parse_day(not_before)]
    found = [root.processed(dataset, d) for d in days if (root.processed(dataset, d) / "_SUCCESS").is_file()]
    if not found or found[-1] != root.processed(dataset, end):
        raise NoTrainingData(f"{dataset} day={end} has no processed partition (run preprocess first)")
    return found


def _policy(request: RunRequest) -> RetrainPolicy:
    overrides = {"decay_tolerance": request.decay_tolerance}
    return RetrainPolicy(mode=request.mode, **{k: v for k, v in overrides.items() if v is not None})


def _scaled(recipe: Recipe, share: float) -> Recipe:
    """The recipe with its share of the advised observation budget (and a bandwidth that still leaves the
    search adaptive: at most a quarter of the budget, as the advisor sizes it)."""
    document = recipe.model_dump(mode="json", exclude_none=True)
    experiment = document["experiment"]
    budget = scaled_budget(experiment["observation_budget"], share)
    experiment["observation_budget"] = budget
    experiment["parallel_bandwidth"] = max(1, min(experiment["parallel_bandwidth"], budget // 4))
    return parse_recipe(document, "scaled recipe")


def _named(recipe: Recipe, request: RunRequest, day_dirs: list[Path], policy: RetrainPolicy) -> Recipe:
    """The recipe with the run's promotion and retraining policies, and its experiment named after what the
    search depends on (not the policies, which decide what happens around it)."""
    document = recipe.model_dump(mode="json", exclude_none=True)
    document["promotion"] = {**document.get("promotion", {}), **_promotion_overrides(request)}
    document["retrain"] = policy.model_dump(mode="json")
    searched = {k: v for k, v in document.items() if k not in ("promotion", "retrain")}
    searched["experiment"] = {**searched["experiment"], "name": "unnamed"}
    fingerprint = hashlib.sha256((dump_recipe(parse_recipe(searched)) + "\n".join(d.name for d in day_dirs))
                                 .encode()).hexdigest()[:12]
    document["experiment"]["name"] = f"{request.dataset}-{request.day}-{request.model}-{fingerprint}"
    return parse_recipe(document, "advised recipe")


def plan_run(root: DataRoot, request: RunRequest, tracking: Tracking | None = None) -> RunPlan:
    """The run's recipe and plan, made once: a rerun of the same run with the same Params gets the plan its
    first attempt made (plan.json), even when the champion (the advisor's AUC threshold) changed since, so
    that it reopens the same experiment instead of starting another."""
    run_dir = root.experiment_run(request.run_id)
    earlier = _standing_plan(run_dir / "plan.json", request)
    if earlier is not None:
        log.info("plan for %s day=%s stands (a rerun): %s %s", request.dataset, request.day, earlier.mode,
                 earlier.experiment)
        if not mode_recorded(root, request.dataset, request.model, request.day):  # died between the two writes
            record_mode(root, request.dataset, request.model, request.day,
                        ModeDecision(earlier.mode, earlier.mode_reason), request.run_id)
        return earlier
    policy = _policy(request)
    served_path = root.served(request.dataset, request.day)
    served = json.loads(served_path.read_text()) if served_path.is_file() else None
    decision = choose_mode(policy, request.day, served,
                           last_full_day(root, request.dataset, request.model, request.day), request.window_days)
    log.info("mode for %s day=%s: %s (%s)", request.dataset, request.day, decision.mode, decision.reason)
    if decision.mode == "refresh":
        if tracking is None:
            raise ValueError("a refresh plan needs the registry (tracking) to read the champion from")
        return _refresh_plan(root, request, tracking, policy, decision, run_dir)
    if decision.mode not in TRAINING_MODES:
        return _saved(root, request, decision, RunPlan(request.dataset, request.day, request.model, request.run_id,
                                                       str(run_dir), "", "", [], 0, 0, decision.mode, decision.reason))
    shift = request.day if decision.shift else last_shift_day(root, request.dataset, request.model, request.day)
    day_dirs = training_days(root, request.dataset, request.day, request.window_days,
                             not_before=shift if policy.window_from_shift else None)
    advice = AdviceRequest.from_stats_file(
        day_dirs[-1] / "stats.json", dataset=request.dataset, model=request.model,
        budget_seconds=request.budget_seconds, workers=request.workers, window_days=len(day_dirs),
        champion_auc=champion_bar(request.champion_auc, served), max_observations=request.max_trials,
        deadline_seconds=request.deadline_seconds,
        **({"trial_sample_rows": request.trial_sample_rows} if request.trial_sample_rows else {}))
    recipe = advise(advice)
    if decision.mode == "search" and decision.budget_share < 1:
        recipe = _scaled(recipe, decision.budget_share)
    recipe = _named(recipe, request, day_dirs, policy)
    recipe_path = run_dir / "recipe.yaml"
    write_text_atomic(recipe_path, dump_recipe(recipe))
    experiment = recipe.experiment
    log.info("recipe for %s day=%s on %d day(s): model %s, %d observations, bandwidth %d, %.0f training s -> %s",
             request.dataset, request.day, len(day_dirs), request.model, experiment.observation_budget,
             experiment.parallel_bandwidth, request.budget_seconds, recipe_path)
    return _saved(root, request, decision, RunPlan(
        request.dataset, request.day, request.model, request.run_id, str(run_dir), str(recipe_path), experiment.name,
        [str(d) for d in day_dirs], experiment.observation_budget, experiment.parallel_bandwidth, decision.mode,
        decision.reason))


def _refresh_plan(root: DataRoot, request: RunRequest, tracking: Tracking, policy: RetrainPolicy,
                  decision: ModeDecision, run_dir: Path) -> RunPlan:
    """A refresh: the champion's files (model.pt, recipe.json, best.json) in champion/, a recipe of its own
    model and training settings (its chosen assignments applied, no experiment), and the window's days
    newer than the champion's own."""
    from sda.models import load_model
    from sda.trials import configs_for

    registry = Registry(tracking, request.dataset)
    record = registry.champion()
    if record is None:
        raise ValueError(f"mode refresh needs a champion; {registry.name} has none")
    folder = run_dir / "champion"  # model.pt, recipe.json, best.json of the version refreshed
    with tempfile.TemporaryDirectory() as tmp:
        downloaded = registry.champion_model(Path(tmp)).parent
        if not (downloaded / "recipe.json").is_file() or not (downloaded / "best.json").is_file():
            raise ValueError(f"{registry.name} version {record.version} has no recipe.json and best.json to refresh "
                             "from")
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("model.pt", "recipe.json", "best.json"):
            shutil.copyfile(downloaded / name, folder / name)
        write_json_atomic(folder / "tags.json", dict(record.tags))  # its lineage, which the refresh extends
    model_path = folder / "model.pt"
    champion_recipe = parse_recipe(json.loads((folder / "recipe.json").read_text()), "the champion's recipe")
    chosen = json.loads((folder / "best.json").read_text()).get("best") or {}
    _, training = configs_for(champion_recipe, chosen.get("assignments") or {})
    model_config = load_model(model_path)[1]
    trained_for = record.tags.get("recsys.day", "")
    day_dirs = [d for d in training_days(root, request.dataset, request.day, request.window_days)
                if d.name.removeprefix("day=") > trained_for]
    if not day_dirs:
        raise ValueError(f"mode refresh: the window holds no processed day after {trained_for}, the day "
                         f"{registry.name} version {record.version} was trained for")
    if request.deadline_seconds is not None:  # a refresh is one fit on those days: it must end in time too
        rows = sum(int(json.loads((d / "stats.json").read_text())["splits"]["train"]["rows"]) for d in day_dirs)
        knowledge.check_fit(model_config.name, rows, training.epochs, request.deadline_seconds)
    document = {"data": {"dataset": request.dataset, "training_window_days": len(day_dirs)},
                "model": model_config.model_dump(mode="json"),
                "training": training.model_copy(update={"sample_rows": None}).model_dump(mode="json",
                                                                                           exclude_none=True),
                "promotion": {**champion_recipe.promotion.model_dump(mode="json"), **_promotion_overrides(request)},
                "retrain": policy.model_dump(mode="json")}
    recipe_path = run_dir / "recipe.yaml"
    write_text_atomic(recipe_path, dump_recipe(parse_recipe(document, "refresh recipe")))
    log.info("refresh of %s version %s (trained for %s) on %d new day(s)", registry.name, record.version,
             trained_for, len(day_dirs))
    return _saved(root, request, decision, RunPlan(
        request.dataset, request.day, request.model, request.run_id, str(run_dir), str(recipe_path),
        f"refresh of version {record.version}", [str(d) for d in day_dirs], 0, 0, decision.mode, decision.reason))


def _promotion_overrides(request: RunRequest) -> dict[str, Any]:
    """The promotion policy's fields the run's Params set."""
    return {k: v for k, v in {"min_delta": request.min_delta, "bootstrap": request.bootstrap,
                              "baseline": request.baseline}.items() if v is not None}


def _saved(root: DataRoot, request: RunRequest, decision: ModeDecision, plan: RunPlan) -> RunPlan:
    """plan.json (what a rerun finds), then the day's mode record (what later days' `auto` reads)."""
    if _policy(request).window_from_shift:
        shift = request.day if decision.shift else last_shift_day(root, request.dataset, request.model, request.day)
        plan = replace(plan, holdout_not_before=shift)
    write_json_atomic(Path(plan.run_dir) / "plan.json", {"request": asdict(request), "plan": plan.to_dict()})
    record_mode(root, request.dataset, request.model, request.day, decision, request.run_id)
    return plan


def _standing_plan(path: Path, request: RunRequest) -> RunPlan | None:
    """The earlier attempt's plan, if it was made for the same request (the champion's AUC aside) and its
    recipe and training days are still there."""
    if not path.is_file():
        return None
    document = json.loads(path.read_text())
    # The champion's AUC and the time left differ on every attempt; the plan stands on what the run asked for.
    moving = ("champion_auc", "deadline_seconds")
    asked = {k: v for k, v in asdict(request).items() if k not in moving}
    if {k: v for k, v in document["request"].items() if k not in moving} != asked:
        return None
    plan = RunPlan.from_dict(document["plan"])
    if plan.recipe_path and (not Path(plan.recipe_path).is_file() or not all(Path(d).is_dir() for d in plan.day_dirs)):
        return None
    return plan


def champion_bar(recorded: float | None, served: dict[str, Any] | None) -> float | None:
    """The AUC the search's threshold is set from: the champion's AUC as recorded when it was chosen, or what
    it served on this day when that is lower. After a lasting shift the recorded AUC belongs to a world that
    is gone: a bar held there would keep every challenger out, and the decayed champion in, for good."""
    today = (served or {}).get("served_auc")
    if recorded is None or today is None:
        return recorded
    return min(recorded, float(today))


def champion_auc(tracking: Tracking, dataset: str) -> float | None:
    """The serving champion's AUC as recorded when it was chosen (the advisor's AUC threshold is this less
    a tolerance), or None without a champion."""
    record = Registry(tracking, dataset).champion()
    value = record.tags.get("recsys.metric.auc") if record else None
    return float(value) if value else None
