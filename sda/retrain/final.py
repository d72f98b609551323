"""The one fit after planning or searching, whose model is the challenger:

- final fit: when a search's trials trained on a sample of the window (the recipe's `training.sample_rows`),
  the chosen assignments are trained once on the whole window. best.json then names the final model, its
  metrics and training seconds; the trial's stay beside them (`trial`). Nothing happens when the trials saw
  every row, or when no trial was chosen.
- refresh (mode refresh): the champion, its embedding tables grown to the window's vocabulary (new ids get
  new rows, old rows are kept), fine-tuned with its own settings on the days since its own; best.json
  names the refreshed model as the run's one candidate, judged by the same holdout rule as any challenger.

A rerun finds final/result.json (or refresh/result.json) and applies it again without training.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recdp.storage import write_json_atomic
from sda.models import ModelConfig, save_model
from sda.pruning import encode_curve
from sda.recipe import load_recipe
from sda.retrain.planning import RunPlan
from sda.retrain.slots import trial_folder
from sda.train import TrainResult, train
from sda.trials import configs_for

log = logging.getLogger(__name__)


def final_fit(plan: RunPlan) -> dict[str, Any]:
    """Fit the chosen assignments on the whole window when the trials sampled it; returns what was done."""
    run_dir = Path(plan.run_dir)
    if plan.mode == "refresh":
        return _refresh(plan)
    if not plan.searches:
        return {"final_fit": False, "reason": f"mode {plan.mode}: nothing was trained"}
    recipe = load_recipe(Path(plan.recipe_path))
    if recipe.training.sample_rows is None:
        return {"final_fit": False, "reason": "the trials trained on the whole window"}
    best = json.loads((run_dir / "best.json").read_text())
    chosen = best.get("best")
    if chosen is None:
        return {"final_fit": False, "reason": f"no trial was chosen: {best.get('reason')}"}
    folder = run_dir / "final"
    result_path = folder / "result.json"
    earlier = json.loads(result_path.read_text()) if result_path.is_file() else None
    if earlier is None or earlier.get("suggestion") != chosen["suggestion"]:
        earlier = _fit(recipe, plan, chosen, folder)
    if chosen.get("model_path") != earlier["model_path"]:  # best.json not yet pointing at the final model
        best["best"] = {**chosen, "trial": {k: chosen.get(k) for k in ("model_path", "values", "training_seconds")},
                        "model_path": earlier["model_path"], "training_seconds": earlier["training_seconds"],
                        "values": {**(chosen.get("values") or {}), **earlier["values"]}}
        best["final_fit"] = {k: earlier[k] for k in ("rows", "training_seconds", "values")}
        write_json_atomic(run_dir / "best.json", best)
    return {"final_fit": True, "suggestion": chosen["suggestion"], **{k: earlier[k] for k in ("rows", "values")}}


def _fit(recipe, plan: RunPlan, chosen: dict[str, Any], folder: Path) -> dict[str, Any]:
    model_config, training = configs_for(recipe, chosen["assignments"])
    training = training.model_copy(update={"sample_rows": None})
    log.info("final fit of trial %s on the whole window (%d day(s)), trials sampled %d rows", chosen["suggestion"],
             len(plan.day_dirs), recipe.training.sample_rows)
    result = train(model_config, training, [Path(d) for d in plan.day_dirs])
    if result.status != "ok" or result.model is None:
        raise RuntimeError(f"the final fit of trial {chosen['suggestion']} failed: {result.reason}")
    trial_result = trial_folder(plan, chosen["suggestion"]) / "result.json"
    trial_run = json.loads(trial_result.read_text()).get("mlflow_run") if trial_result.is_file() else None
    document = recorded_fit(result, model_config, folder, [m.name for m in recipe.experiment.metrics],
                         suggestion=chosen["suggestion"], mlflow_run=trial_run)
    log.info("final fit: AUC %.4f on %d rows in %.1fs (the trial: AUC %.4f)", document["values"].get("auc", 0.0),
             document["rows"], document["training_seconds"], (chosen.get("values") or {}).get("auc", 0.0))
    return document


def _refresh(plan: RunPlan) -> dict[str, Any]:
    run_dir = Path(plan.run_dir)
    folder = run_dir / "refresh"
    result_path = folder / "result.json"
    if result_path.is_file():
        document = json.loads(result_path.read_text())
    else:
        recipe = load_recipe(Path(plan.recipe_path))
        champion = run_dir / "champion" / "model.pt"
        log.info("refresh: %s fine-tuned on %d day(s) (%s)", plan.experiment, len(plan.day_dirs),
                 ", ".join(Path(d).name for d in plan.day_dirs))
        result = train(recipe.model, recipe.training, [Path(d) for d in plan.day_dirs], init_from=champion)
        document = recorded_fit(result, recipe.model, folder, ("auc", "logloss", "training_time"), suggestion=None)
    best_path = run_dir / "best.json"
    best = json.loads(best_path.read_text())
    if document["model_path"] is None:
        reason = f"the refresh failed: {document['reason']}"
        if best.get("reason") != reason:
            write_json_atomic(best_path, {**best, "best": None, "reason": reason})
        return {"final_fit": False, "refresh": True, "reason": reason}
    candidate = {"suggestion": None, "refresh_of": plan.experiment, "assignments": {},
                 "values": document["values"], "model_path": document["model_path"],
                 "training_seconds": document["training_seconds"]}
    if best.get("best") != candidate:
        write_json_atomic(best_path, {**best, "best": candidate, "training_seconds": document["training_seconds"],
                                      "reason": None})
    log.info("refresh: AUC %.4f on %d rows in %.1fs", document["values"].get("auc", 0.0), document["rows"],
             document["training_seconds"])
    return {"final_fit": False, "refresh": True, "rows": document["rows"], "values": document["values"]}


def recorded_fit(result: TrainResult, model_config: ModelConfig, folder: Path, value_names: Sequence[str],
              **fields: Any) -> dict[str, Any]:
    """One fit's model.pt (when it trained) and result.json: rows, seconds, the named values, every metric and
    the curve. result.json comes after the model, so a rerun that finds it needs no fit."""
    document = {**fields, "status": result.status, "reason": result.reason, "model_path": None, "values": {},
                "rows": int(result.metrics.get("samples", 0)),
                "training_seconds": round(result.metrics["training_time"], 3),
                "metrics": {k: float(v) for k, v in result.metrics.items()}, "curve": encode_curve(result.curve)}
    if result.status == "ok" and result.model is not None:
        save_model(folder / "model.pt", result.model, model_config, result.shape)
        document.update(model_path=str(folder / "model.pt"),
                        values={k: float(result.metrics[k]) for k in value_names if k in result.metrics})
    write_json_atomic(folder / "result.json", document)
    return document
