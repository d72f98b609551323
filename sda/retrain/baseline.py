"""The run's linear baseline: logistic regression on the same one-hot ids and dense values, trained once per
search on the rows its trials trained on (the window, or its sample), so that promotion can tell a challenger
that beats the champion from one that is merely not worse than a model any team would try first.

`evaluate` scores it on the same holdout as the challenger and the champion; when it beats the challenger it
stands in for it (PromotionPolicy.baseline). A rerun finds baseline/result.json and trains nothing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sda.advisors import knowledge
from sda.models import parse_model_config
from sda.recipe import load_recipe
from sda.retrain.final import recorded_fit
from sda.retrain.planning import RunPlan
from sda.training_config import TrainingConfig

log = logging.getLogger(__name__)

BASELINE_MODEL = "logistic"
# Adagrad at 0.05, one epoch: logistic regression's classic CTR setting (per-id rates, as FTRL's). Not tuned
# per run on purpose: the baseline is what a team would try first, trained the same way every day.
BASELINE_OPTIMIZER, BASELINE_LEARNING_RATE = "adagrad", 0.05


def baseline_training(rows: int, **fields: Any) -> TrainingConfig:
    """How the baseline trains on `rows` training rows (the same every day; `fields`: sampling, evaluation
    rows, seed)."""
    return TrainingConfig(epochs=1, batch_size=knowledge.batch_size_for(rows), optimizer=BASELINE_OPTIMIZER,
                          learning_rate=BASELINE_LEARNING_RATE, eval_every=None, **fields)


def baseline_folder(plan: RunPlan) -> Path:
    return Path(plan.run_dir) / "baseline"


def fit_baseline(plan: RunPlan) -> dict[str, Any]:
    """Train the baseline for a search (full or search mode) when the recipe's promotion policy asks for one."""
    if not plan.searches:
        return {"baseline": False, "reason": f"mode {plan.mode}: no search to compare with a baseline"}
    recipe = load_recipe(Path(plan.recipe_path))
    if not recipe.promotion.baseline:
        return {"baseline": False, "reason": "the promotion policy asks for no baseline"}
    folder = baseline_folder(plan)
    result_path = folder / "result.json"
    if result_path.is_file():
        document = json.loads(result_path.read_text())
    else:
        from sda.train import train

        rows = recipe.training.sample_rows or sum(
            int(json.loads((Path(d) / "stats.json").read_text())["splits"]["train"]["rows"]) for d in plan.day_dirs)
        training = baseline_training(rows, sample_rows=recipe.training.sample_rows,
                                     eval_rows=recipe.training.eval_rows, seed=recipe.training.seed)
        config = parse_model_config({"name": BASELINE_MODEL})
        log.info("linear baseline: %s on %d day(s)%s", BASELINE_MODEL, len(plan.day_dirs),
                 f", a sample of {rows:,} rows" if recipe.training.sample_rows else "")
        result = train(config, training, [Path(d) for d in plan.day_dirs])
        document = recorded_fit(result, config, folder, ("auc", "logloss", "training_time"), model=BASELINE_MODEL,
                                training=training.model_dump(mode="json", exclude_none=True))
    if document["model_path"] is None:
        log.warning("the linear baseline did not train: %s", document["reason"])
        return {"baseline": False, "reason": f"the baseline failed: {document['reason']}"}
    log.info("linear baseline: AUC %.4f on the validation split, %d rows in %.1fs", document["values"]["auc"],
             document["rows"], document["training_seconds"])
    return {"baseline": True, "rows": document["rows"], "values": document["values"]}
