"""The optimize half of one retraining run, as plain functions that the DAG's tasks call (no Airflow here).

    plan_run         training window + stats.json -> advised recipe, written to experiments/<run>/recipe.yaml
    open_experiment  create (or reopen) the optimizer experiment, warm-started from the previous day's best
    run_slot         one trial: suggest -> train -> observe, tracked as an MLflow run; many run at once
    select_best      the Pareto set -> the chosen trial -> best.json (+ a Pareto plot)
    evaluate_run     the chosen trial and the champion on the day's holdout, the policy -> decision.json
    promote_run      a `promote` decision carried out in the MLflow registry (atomic alias switch)

A run's files live in experiments/<run key>/ (recipe.yaml, trials/trial-N/{model.pt,result.json},
best.json, pareto.png). The optimizer experiment is named from the dataset, the day, the model and a hash of
the recipe, so a rerun of the same day with the same recipe reopens it and finds its work done.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recdp.storage import DataRoot, parse_day, run_key, write_json_atomic, write_text_atomic
from sda.advisors import AdviceRequest, advise
from sda.hpo.backend import Observation, OptimizerBackend
from sda.hpo.runner import check_metrics, first_assignments, next_suggestion, run_trial, spent_training_seconds
from sda.hpo.selection import choose
from sda.policy import PromotionPolicy
from sda.promote import (
    Candidate,
    Challenger,
    ChampionChanged,
    Decision,
    Registry,
    evaluate,
    lineage_tags,
    promote,
)
from sda.recipe import Recipe, dump_recipe, load_recipe, parse_recipe
from sda.tracking import SLOT_TAG, Tracking

log = logging.getLogger(__name__)

HISTORY = "_history"  # experiments/_history/<dataset>/<model>/<day>.json: each day's experiment, for warm starts


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


@dataclass(frozen=True)
class SlotReport:
    slot: int
    status: str  # ok | failed | stopped | not run
    suggestion: int | None = None
    assignments: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    mlflow_run: str | None = None
    model_path: str | None = None


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


def previous_experiment(root: DataRoot, dataset: str, model: str, day: str) -> str | None:
    """The experiment of the newest earlier day that selected a best trial (for a warm start)."""
    folder = root.experiments() / HISTORY / dataset / model
    earlier = sorted(p for p in folder.glob("*.json") if p.stem < parse_day(day).isoformat()) if folder.is_dir() else []
    return json.loads(earlier[-1].read_text())["experiment"] if earlier else None


def open_experiment(root: DataRoot, backend: OptimizerBackend, tracking: Tracking, plan: RunPlan) -> list[int]:
    """Create the experiment (idempotent), warm-started from the previous day's; returns the trial slots."""
    recipe = load_recipe(Path(plan.recipe_path))
    check_metrics(recipe)
    previous = previous_experiment(root, plan.dataset, plan.model, plan.day)
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
    log.info("experiment %s: %d of %s observations made, warm start from %s with %d assignment(s), %d queued by "
             "the recipe", plan.experiment, progress.observation_count, progress.observation_budget,
             previous or "nothing", len(seeds), len(recipe.queued_suggestions))
    return list(range(plan.observation_budget))


def run_slot(backend: OptimizerBackend, tracking: Tracking, plan: RunPlan, slot: int,
             wait_seconds: float = 600.0) -> SlotReport:
    """One trial of the experiment, for slot `slot` of this run. A retry of a slot whose earlier attempt was
    killed first abandons that attempt's suggestion (it is suggested again) and marks its MLflow run KILLED."""
    recipe = load_recipe(Path(plan.recipe_path))
    slot_key = f"{plan.run_id}#{slot}"
    mlflow_experiment = tracking.experiment(plan.mlflow_experiment)
    done = _completed_slot(plan, slot)
    if done is not None:  # observed before the attempt died (e.g. MLflow was unreachable): record, no new trial
        report, curve = done
        log.warning("slot %d: trial %s was observed by an earlier attempt; completing its MLflow run", slot,
                    report.suggestion)
        _track_completed(tracking, mlflow_experiment, slot_key, plan, report, curve)
        return report
    for stale in backend.open_suggestions(plan.experiment):
        if (stale.metadata or {}).get("slot") == slot_key:
            log.warning("slot %d: abandoning suggestion %d of an earlier attempt", slot, stale.id)
            backend.abandon(plan.experiment, stale.id)
    tracking.kill_stale_runs(mlflow_experiment, slot_key)
    suggestion = next_suggestion(backend, plan.experiment, recipe, {"slot": slot_key}, wait_seconds=wait_seconds)
    if suggestion is None:
        progress = backend.progress(plan.experiment)
        reason = (f"experiment over: {progress.observation_count}/{progress.observation_budget} observations, "
                  f"{spent_training_seconds(backend.observations(plan.experiment)):.0f}s of training spent")
        return SlotReport(slot, "not run", reason=reason)
    run = tracking.start_trial(mlflow_experiment, slot_key, suggestion.id, suggestion.assignments,
                               {"recsys.optimizer_experiment": plan.experiment, "recsys.day": plan.day})
    trial_dir = Path(plan.run_dir) / "trials" / f"trial-{suggestion.id}"
    try:
        outcome = run_trial(backend, plan.experiment, recipe, [Path(d) for d in plan.day_dirs], suggestion,
                            model_dir=trial_dir)
    except BaseException:
        tracking.client.set_terminated(run, "KILLED")
        raise
    result = outcome.result
    report = SlotReport(slot, result.status, suggestion.id, suggestion.assignments,
                        {k: float(v) for k, v in result.metrics.items()}, result.reason, run,
                        str(outcome.model_path) if outcome.model_path else None)
    write_json_atomic(trial_dir / "result.json", {**asdict(report), "curve": result.curve,
                                                  "experiment": plan.experiment})
    tracking.finish_trial(run, result.status, result.reason, result.metrics, result.curve,
                          {"result.json": {**asdict(report), "curve": result.curve}})
    return report


def _completed_slot(plan: RunPlan, slot: int) -> tuple[SlotReport, list[dict[str, float]]] | None:
    """The report an earlier attempt of this slot wrote after its observation (trials/*/result.json)."""
    for path in sorted((Path(plan.run_dir) / "trials").glob("trial-*/result.json")):
        document = json.loads(path.read_text())
        if document.get("slot") == slot and document.get("status") != "not run":
            curve = document.pop("curve", [])
            document.pop("experiment", None)
            return SlotReport(**document), curve
    return None


def _track_completed(tracking: Tracking, mlflow_experiment: str, slot_key: str, plan: RunPlan,
                     report: SlotReport, curve: list[dict[str, float]]) -> None:
    """Finish the slot's MLflow run for an observed trial, unless an earlier attempt already did."""
    runs = tracking.client.search_runs([mlflow_experiment], filter_string=f"tags.`{SLOT_TAG}` = '{slot_key}'")
    mine = [r for r in runs if r.data.tags.get("recsys.suggestion") == str(report.suggestion)]
    if any(r.info.status in ("FINISHED", "FAILED") for r in mine):
        return
    run = mine[0].info.run_id if mine else tracking.start_trial(
        mlflow_experiment, slot_key, report.suggestion, report.assignments,
        {"recsys.optimizer_experiment": plan.experiment, "recsys.day": plan.day})
    tracking.finish_trial(run, report.status, report.reason, report.metrics, curve,
                          {"result.json": {**asdict(report), "curve": curve}})


def select_best(root: DataRoot, backend: OptimizerBackend, plan: RunPlan) -> dict[str, Any]:
    """best.json: the chosen trial (or none, with the reason), the Pareto set and the experiment's totals."""
    recipe = load_recipe(Path(plan.recipe_path))
    experiment = recipe.experiment
    front = backend.best_assignments(plan.experiment)
    observations = backend.observations(plan.experiment)
    chosen = choose(front, experiment, recipe.selection.tolerance)
    progress = backend.progress(plan.experiment)
    document: dict[str, Any] = {
        "dataset": plan.dataset, "day": plan.day, "model": plan.model, "run_id": plan.run_id,
        "experiment": plan.experiment, "recipe": plan.recipe_path, "day_dirs": plan.day_dirs,
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
        write_json_atomic(root.experiments() / HISTORY / plan.dataset / plan.model / f"{plan.day}.json",
                          {"experiment": plan.experiment, "run_id": plan.run_id})
    return document


def _observation_dict(observation: Observation) -> dict[str, Any]:
    metadata = observation.metadata or {}
    return {"suggestion": observation.suggestion, "assignments": observation.assignments,
            "values": observation.values, "model_path": metadata.get("model_path"),
            "training_seconds": metadata.get("training_seconds")}


def plot_pareto(experiment, observations: list[Observation], front: list[Observation],
                chosen: Observation | None, path: Path) -> None:
    """The first optimized metric against the second (or training seconds): every trial, the feasible
    Pareto front, the thresholds, the chosen trial; failed trials as crosses along the bottom."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    optimized = [m for m in experiment.metrics if m.strategy == "optimize"]
    y_metric = optimized[0]
    x_metric = optimized[1] if len(optimized) > 1 else None

    def x_of(o: Observation) -> float:
        if x_metric is not None and o.values:
            return o.values[x_metric.name]
        return float((o.metadata or {}).get("training_seconds", 0.0))

    done = [o for o in observations if not o.failed]
    failed = [o for o in observations if o.failed]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.scatter([x_of(o) for o in done], [o.values[y_metric.name] for o in done], color="tab:gray",
                 label=f"trials ({len(done)})")
    if front:
        ordered = sorted(front, key=x_of)
        axis.plot([x_of(o) for o in ordered], [o.values[y_metric.name] for o in ordered], "o-",
                  color="tab:blue", label="feasible Pareto front")
    if chosen is not None:
        axis.scatter([x_of(chosen)], [chosen.values[y_metric.name]], s=180, facecolors="none",
                     edgecolors="tab:green", linewidths=2, label=f"chosen (trial {chosen.suggestion})")
    if failed:
        bottom = min([o.values[y_metric.name] for o in done], default=0.5)
        axis.scatter([x_of(o) for o in failed], [bottom] * len(failed), marker="x", color="tab:red",
                     label=f"failed ({len(failed)})")
    if y_metric.threshold is not None:
        axis.axhline(y_metric.threshold, color="tab:orange", linestyle="--", label=f"{y_metric.name} threshold")
    if x_metric is not None and x_metric.threshold is not None:
        widest = max([x_of(o) for o in observations], default=0.0)
        if x_metric.threshold <= 2 * widest:
            axis.axvline(x_metric.threshold, color="tab:purple", linestyle="--", label=f"{x_metric.name} threshold")
        else:  # far right of every trial: named, not drawn, so the trials keep the width of the plot
            axis.plot([], [], " ", label=f"{x_metric.name} threshold {x_metric.threshold:g} (off the chart)")
    axis.set_xlabel(x_metric.name if x_metric else "training seconds")
    axis.set_ylabel(y_metric.name)
    axis.set_title(experiment.name, fontsize=9)
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


# -- promotion ------------------------------------------------------------------------------------------------
def _challenger(plan: RunPlan, best: dict[str, Any]) -> Challenger:
    chosen = best["best"]
    trial_dir = Path(chosen["model_path"]).parent
    result = json.loads((trial_dir / "result.json").read_text()) if (trial_dir / "result.json").is_file() else {}
    stats = json.loads((Path(plan.day_dirs[-1]) / "stats.json").read_text())
    recipe_bytes = Path(plan.recipe_path).read_bytes()
    lineage = lineage_tags({
        "dataset": plan.dataset, "day": plan.day, "model": plan.model, "run_id": plan.run_id,
        "training_window": ",".join(Path(d).name.removeprefix("day=") for d in plan.day_dirs),
        "vocab_version": stats.get("vocab_version"), "recipe_sha256": hashlib.sha256(recipe_bytes).hexdigest(),
        "optimizer_experiment": plan.experiment, "trial": chosen["suggestion"],
        "mlflow_run": result.get("mlflow_run"),
        **{f"metric.{k}": round(float(v), 6) for k, v in (chosen["values"] or {}).items()},
    })
    model_bytes = result.get("metrics", {}).get("model_bytes")
    return Challenger(Path(chosen["model_path"]), plan.day, f"challenger (trial {chosen['suggestion']})",
                      chosen.get("training_seconds"), int(model_bytes) if model_bytes else None, lineage)


def evaluate_run(tracking: Tracking, plan: RunPlan) -> dict[str, Any]:
    """decision.json: the chosen trial against the champion on the run's holdout (the newest day's test
    split, which neither trained on), by the recipe's promotion policy."""
    run_dir = Path(plan.run_dir)
    best_bytes = (run_dir / "best.json").read_bytes()
    best = json.loads(best_bytes)
    best_sha256 = hashlib.sha256(best_bytes).hexdigest()
    registry = Registry(tracking, plan.dataset)
    earlier = _standing_decision(run_dir / "decision.json", best_sha256, registry)
    if earlier is not None:
        log.info("decision for %s day=%s stands (a rerun): %s (%s)", plan.dataset, plan.day, earlier["verdict"],
                 earlier["reason"])
        return earlier
    recipe = load_recipe(Path(plan.recipe_path))
    if best["best"] is None:
        champion = registry.champion()
        document = {"verdict": "keep", "reason": f"no challenger: {best.get('reason')}", "challenger": None,
                    "champion": {"version": champion.version} if champion else None,
                    "policy": recipe.promotion.model_dump(), "holdout": None, "checks": [], "bootstrap": None}
    else:
        decision = evaluate(registry, _challenger(plan, best), Path(plan.day_dirs[-1]), plan.day, recipe.promotion)
        document = decision.to_dict()
    document.update({"dataset": plan.dataset, "day": plan.day, "run_id": plan.run_id,
                     "registered_model": registry.name, "best_sha256": best_sha256})
    write_json_atomic(run_dir / "decision.json", document)
    log.info("decision for %s day=%s: %s (%s)", plan.dataset, plan.day, document["verdict"], document["reason"])
    return document


def _standing_decision(path: Path, best_sha256: str, registry: Registry) -> dict[str, Any] | None:
    """The run's earlier decision when a rerun must not remake it: it judged the same best.json and was
    either carried out (history: later champions do not rewrite it) or made against the champion that still
    serves (the same inputs give the same verdict). Otherwise the decision is made again."""
    if not path.is_file():
        return None
    document = json.loads(path.read_text())
    if document.get("best_sha256") != best_sha256:
        return None
    if document.get("applied"):
        return document
    champion = registry.champion()
    judged = (document.get("champion") or {}).get("version")
    return document if judged == (champion.version if champion else None) else None


def promote_run(tracking: Tracking, plan: RunPlan, before_switch=None, attempts: int = 3) -> dict[str, Any]:
    """Carry out decision.json. The alias moves only after the version and its files are complete; a crash
    at any point leaves the previous champion serving, and a retry finishes the job. When another run (a
    concurrent backfill day) switched the champion since this decision, the decision is made again against
    the champion serving now, and that one is carried out."""
    for attempt in range(1, attempts + 1):
        try:
            return _carry_out(tracking, plan, before_switch)
        except ChampionChanged as changed:
            if attempt == attempts:
                raise
            log.warning("%s; deciding again (attempt %d/%d)", changed, attempt + 1, attempts)
            evaluate_run(tracking, plan)
    raise AssertionError("unreachable")


def _carry_out(tracking: Tracking, plan: RunPlan, before_switch) -> dict[str, Any]:
    run_dir = Path(plan.run_dir)
    document = json.loads((run_dir / "decision.json").read_text())
    if document["verdict"] != "promote":
        return {"verdict": "keep", "reason": document["reason"], "version": None}
    if document.get("applied"):  # a rerun: this run's promotion happened; a newer champion may serve since
        return {"verdict": "promote", "reason": document["reason"], "version": document["applied"]["version"]}
    registry = Registry(tracking, plan.dataset)
    best = json.loads((run_dir / "best.json").read_text())
    challenger = _challenger(plan, best)
    champion = document.get("champion")
    decision = Decision(document["verdict"], document["reason"], Candidate(**document["challenger"]),
                        Candidate(**champion) if champion else None, PromotionPolicy(**document["policy"]),
                        document["holdout"])
    files = {"decision.json": document, "best.json": best,
             "recipe.json": load_recipe(Path(plan.recipe_path)).model_dump(mode="json", exclude_none=True)}
    version = promote(registry, challenger, decision, run_key(plan.run_id), files, before_switch=before_switch)
    document["applied"] = {"version": version, "registered_model": registry.name, "at": int(time.time())}
    write_json_atomic(run_dir / "decision.json", document)
    return {"verdict": "promote", "reason": document["reason"], "version": version}
