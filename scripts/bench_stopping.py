"""`make bench-stopping`: what stopping trials early saves in a search, and what it costs in AUC.

Data the advisor was not tuned on (bench-hpo's first held-out setting: the Criteo spec generated with seed 1001
at Criteo's full cardinalities, 200k training rows), the advised DLRM recipe, the same observation budget and
the same optimizer seed in each repeat. The arms differ only in the recipe's early_stopping rule (sda.pruning):

    none                no trial stops early
    median              the median stopping rule, cost-aware: the default, and the baseline to beat
    successive_halving  asynchronous successive halving on the fraction trained (Optuna's pruner), cost-aware

Each trial evaluates at 25%, 50% and 75% of its training; a stopped trial counts as an observation, as in
SigOpt. For each arm: the compute (training seconds of every trial, the stopped ones' part included, as the
budget counts them), the best AUC of a completed trial, and the trial bench-hpo's selection rule chooses (the
fastest within the recipe's tolerance of the best AUC): its AUC and training time.

Writes var/bench/stopping.json (and, with --publish, docs/benchmarks/stopping.json).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from dataclasses import asdict, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from scripts.bench_hpo import HELD_OUT, recipe_for, run_experiment, warm_up  # noqa: E402
from scripts.benchdata import prepared_training_day  # noqa: E402
from scripts.benchreport import RESULTS, write_report  # noqa: E402
from sda.recipe import Recipe, parse_recipe  # noqa: E402

RULES = ("none", "median", "successive_halving")


def with_rule(recipe: Recipe, rule: str, label: str) -> Recipe:
    document = recipe.model_dump(mode="json", exclude_none=True)
    document["early_stopping"] = {**document.get("early_stopping", {}), "rule": rule}
    document["experiment"]["name"] = f"stopping-{label}-{rule}"
    return parse_recipe(document, f"{rule} recipe")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-rows", type=int, default=None)
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "var" / "bench")
    parser.add_argument("--publish", action="store_true", help="also write docs/benchmarks/stopping.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    setting = HELD_OUT[0]
    if args.train_rows:
        setting = replace(setting, train_rows=args.train_rows)
    processed, oracle = prepared_training_day(args.work / f"hpo_data_{setting.dataset}_s{setting.seed}",
                                              setting.day, setting.train_rows, setting.cardinality_scale,
                                              setting.dataset, setting.seed)
    warm_up(processed)
    repeats = []
    for repeat in range(args.repeats):
        label = f"r{repeat}"
        base = recipe_for(processed / "stats.json", setting.dataset, "advised", args.trials, label)
        results = {}
        for rule in RULES:
            store = args.work / f"stopping_{label}_{rule}.db"
            store.unlink(missing_ok=True)
            logging.info("repeat %d: %s, %d trials", repeat, rule, args.trials)
            result = run_experiment(with_rule(base, rule, label), processed, f"sqlite:///{store}", seed=repeat,
                                    guardrails=base.experiment)
            trials = result["trials"]
            done = [t["auc"] for t in trials if t["auc"] is not None]
            result.update(compute=round(sum(t["training_seconds"] for t in trials), 2),
                          best_auc=max(done) if done else None,
                          stopped=sum(1 for t in trials if t["failed"] and "stopped" in (t["reason"] or "")))
            results[rule] = result
        repeats.append(results)

    def median(rule: str, key: str) -> float | None:
        values = [r[rule][key] if key != "chosen_auc" else (r[rule]["chosen"] or {}).get("auc") for r in repeats]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    arms = {rule: {"compute_seconds": median(rule, "compute"), "best_auc": median(rule, "best_auc"),
                   "chosen_auc": median(rule, "chosen_auc"), "stopped_trials": median(rule, "stopped")}
            for rule in RULES}
    baseline = arms["median"]
    for arm in arms.values():
        arm["compute_vs_median_rule"] = (arm["compute_seconds"] / baseline["compute_seconds"]
                                         if baseline["compute_seconds"] else None)
        arm["chosen_auc_vs_median_rule"] = (arm["chosen_auc"] - baseline["chosen_auc"]
                                            if arm["chosen_auc"] is not None and baseline["chosen_auc"] else None)
    report = {"model": "dlrm", "trials": args.trials, "repeats": args.repeats, "arms": arms,
              "per_repeat": repeats, "oracle_auc": oracle}
    data = {"setting": asdict(setting), "calibration_data_excluded": "criteo spec, synth seed 7, cardinality 0.01"}
    path = write_report("stopping", report, data, args.out)
    if args.publish:
        write_report("stopping", report, data, RESULTS)
    print(f"\n{setting.name}: {setting.train_rows:,} training rows, {args.trials} trials, {args.repeats} repeats "
          "(medians)")
    for rule, arm in arms.items():
        print(f"  {rule:<19} compute {arm['compute_seconds']:8.1f}s ({arm['compute_vs_median_rule']:.2f}x the median "
              f"rule's), best AUC {arm['best_auc']:.4f}, chosen AUC {arm['chosen_auc']:.4f} "
              f"({arm['chosen_auc_vs_median_rule']:+.4f}), {arm['stopped_trials']:.0f} stopped")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
