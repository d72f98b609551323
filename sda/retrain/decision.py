"""Decide and promote: the chosen trial against the champion on the same holdout (decision.json), and a
`promote` decision carried out in the MLflow registry (an atomic alias switch)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from recdp.storage import run_key, write_json_atomic
from sda.policy import PromotionPolicy
from sda.promote import Candidate, Challenger, ChampionChanged, Decision, Registry, evaluate, lineage_tags, promote
from sda.recipe import FAMILY_CONDITIONAL, load_recipe
from sda.retrain.baseline import baseline_folder
from sda.retrain.holdout import choose_holdout
from sda.retrain.planning import RunPlan
from sda.tracking import Tracking

log = logging.getLogger(__name__)


def _challenger(plan: RunPlan, best: dict[str, Any]) -> Challenger:
    chosen = best["best"]
    trial_dir = Path(chosen["model_path"]).parent
    result = json.loads((trial_dir / "result.json").read_text()) if (trial_dir / "result.json").is_file() else {}
    stats = json.loads((Path(plan.day_dirs[-1]) / "stats.json").read_text())
    recipe_bytes = Path(plan.recipe_path).read_bytes()
    lineage = lineage_tags({
        "dataset": plan.dataset, "day": plan.day, "model": _model_name(plan, chosen), "run_id": plan.run_id,
        "training_window": ",".join(Path(d).name.removeprefix("day=") for d in plan.day_dirs),
        "vocab_version": stats.get("vocab_version"), "recipe_sha256": hashlib.sha256(recipe_bytes).hexdigest(),
        "optimizer_experiment": plan.experiment if plan.searches else None, "trial": chosen["suggestion"],
        "refresh_of": chosen.get("refresh_of"), "days_learned": _days_learned(plan, chosen),
        "mlflow_run": result.get("mlflow_run"),
        **{f"metric.{k}": round(float(v), 6) for k, v in (chosen["values"] or {}).items()},
    })
    model_bytes = result.get("metrics", {}).get("model_bytes")
    label = f"challenger ({chosen['refresh_of']})" if chosen.get("refresh_of") else \
        f"challenger (trial {chosen['suggestion']})"
    return Challenger(Path(chosen["model_path"]), plan.day, label,
                      chosen.get("training_seconds"), int(model_bytes) if model_bytes else None, lineage)


def _baseline(plan: RunPlan) -> Challenger | None:
    """The run's linear baseline (sda.retrain.baseline), when it trained."""
    result_path = baseline_folder(plan) / "result.json"
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if not result.get("model_path"):
        return None
    stats = json.loads((Path(plan.day_dirs[-1]) / "stats.json").read_text())
    lineage = lineage_tags({
        "dataset": plan.dataset, "day": plan.day, "model": result["model"], "run_id": plan.run_id, "baseline": True,
        "training_window": ",".join(Path(d).name.removeprefix("day=") for d in plan.day_dirs),
        "vocab_version": stats.get("vocab_version"), "days_learned": len(plan.day_dirs),
        **{f"metric.{k}": round(float(v), 6) for k, v in result["values"].items()},
    })
    return Challenger(Path(result["model_path"]), plan.day, f"linear baseline ({result['model']})",
                      result.get("training_seconds"), int(result["metrics"].get("model_bytes", 0)) or None, lineage)


def _model_name(plan: RunPlan, chosen: dict[str, Any]) -> str:
    """The model the challenger is: the family its search chose, the refreshed champion's, else the run's."""
    family = (chosen.get("assignments") or {}).get(FAMILY_CONDITIONAL)
    if family:
        return str(family)
    tags_path = Path(plan.run_dir) / "champion" / "tags.json"
    if chosen.get("refresh_of") and tags_path.is_file():
        return json.loads(tags_path.read_text()).get("recsys.model", plan.model)
    return plan.model


def _days_learned(plan: RunPlan, chosen: dict[str, Any]) -> int | None:
    """How many days the model learned from: its window's, plus, for a refresh, the champion's own (None when
    that champion's were not recorded)."""
    if not chosen.get("refresh_of"):
        return len(plan.day_dirs)
    tags_path = Path(plan.run_dir) / "champion" / "tags.json"
    earlier = json.loads(tags_path.read_text()).get("recsys.days_learned") if tags_path.is_file() else None
    return int(earlier) + len(plan.day_dirs) if earlier else None


def evaluate_run(tracking: Tracking, plan: RunPlan) -> dict[str, Any]:
    """decision.json: the chosen trial against the champion on the run's holdout (the newest day's test
    split, which neither trained on, and the days' before it when it is too small: sda.retrain.holdout), by
    the recipe's promotion policy, with the AUC difference's confidence interval."""
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
    promotion = load_recipe(Path(plan.recipe_path)).promotion if plan.recipe_path else PromotionPolicy()
    if best["best"] is None:
        champion = registry.champion()
        document = {"verdict": "keep", "reason": f"no challenger: {best.get('reason')}", "challenger": None,
                    "champion": {"version": champion.version} if champion else None,
                    "policy": promotion.model_dump(), "holdout": None, "checks": [], "bootstrap": None}
    else:
        holdout = choose_holdout(Path(plan.day_dirs[-1]), promotion, plan.holdout_not_before)
        decision = evaluate(registry, _challenger(plan, best), holdout.day_dirs, plan.day, promotion,
                            baseline=_baseline(plan) if promotion.baseline else None)
        document = decision.to_dict()
        measured = document["holdout"]  # counted from the scored rows; the choice's own counts are estimates
        document["holdout"] = {**holdout.to_dict(), **measured,
                               "enough": measured["rows"] >= promotion.holdout_min_rows
                               and measured["positives"] >= promotion.holdout_min_positives}
    document.update({"dataset": plan.dataset, "day": plan.day, "run_id": plan.run_id, "mode": plan.mode,
                     "mode_reason": plan.mode_reason, "registered_model": registry.name, "best_sha256": best_sha256})
    write_json_atomic(run_dir / "decision.json", document)
    log.info("decision for %s day=%s: %s (%s)", plan.dataset, plan.day, document["verdict"], document["reason"])
    if document.get("auc_difference"):
        gap, holdout = document["auc_difference"], document["holdout"]
        log.info("AUC difference %+.4f, %.0f%% interval [%+.4f, %+.4f] on %d rows (%d positives) of %d day(s)",
                 gap["difference"], 100 * gap["confidence"], gap["low"], gap["high"], holdout["rows"],
                 holdout["positives"], len(holdout["days"]))
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
    recipe = load_recipe(Path(plan.recipe_path))
    recipe_document = recipe.model_dump(mode="json", exclude_none=True)
    if (document.get("baseline") or {}).get("stands_in"):
        challenger = _baseline(plan)
        if challenger is None:
            raise RuntimeError(f"decision.json promotes the linear baseline, but {baseline_folder(plan)} has no model")
        # What a later refresh of it reads: its own model and training settings, no assignments to apply.
        result = json.loads((baseline_folder(plan) / "result.json").read_text())
        recipe_document = {**recipe_document, "model": {"name": result["model"]}, "training": result["training"]}
        recipe_document.pop("experiment", None)
        recipe_document.pop("queued_suggestions", None)
        best = {**best, "best": {"suggestion": None, "assignments": {}, "values": result["values"],
                                 "model_path": result["model_path"], "baseline": True}}
    else:
        challenger = _challenger(plan, best)
    # What it scored on its own day's holdout: the reference its served AUC on later days is judged against
    # (sda.retrain.mode), free of the optimism of having been chosen on the validation split.
    holdout = document["holdout"]
    challenger = replace(challenger, lineage={**challenger.lineage, **lineage_tags({
        "holdout.auc": round(document["challenger"]["auc"], 6), "holdout.rows": holdout.get("rows"),
        "holdout.positives": holdout.get("positives")})})
    champion = document.get("champion")
    decision = Decision(document["verdict"], document["reason"], Candidate(**document["challenger"]),
                        Candidate(**champion) if champion else None, PromotionPolicy(**document["policy"]),
                        document["holdout"])
    files = {"decision.json": document, "best.json": best, "recipe.json": recipe_document}
    version = promote(registry, challenger, decision, run_key(plan.run_id), files, before_switch=before_switch)
    document["applied"] = {"version": version, "registered_model": registry.name, "at": int(time.time())}
    write_json_atomic(run_dir / "decision.json", document)
    return {"verdict": "promote", "reason": document["reason"], "version": version}
