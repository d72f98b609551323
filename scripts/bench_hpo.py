"""`make bench-hpo`: what the advisor's knowledge and the second metric buy, on generated data.

In one run, with the same backend (local, Optuna TPE) and the same seeds, several repeats of:
- the advisor's recipe against the naive recipe (the broad space a user writes by hand): the compute (sum of
  trial training seconds, in trial order) each needs to reach an AUC within --auc-gap of the best AUC
  either found in that repeat, and the best AUC and its training time;
- multi-metric (AUC and training_time optimized) against AUC alone (training_time stored): the training
  time of the chosen model, at equal AUC.
Writes var/bench/hpo.json and var/bench/hpo.png (best AUC so far against compute).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import statistics
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from scripts.benchdata import prepared_training_day  # noqa: E402
from sda.advisors import AdviceRequest, advise  # noqa: E402
from sda.hpo import LocalBackend  # noqa: E402
from sda.hpo.runner import optimize  # noqa: E402
from sda.hpo.selection import choose  # noqa: E402
from sda.recipe import Recipe, parse_recipe  # noqa: E402

DAY = dt.date(2026, 5, 2)
COMPUTE_TARGET, SPEED_TARGET = 5.0, 1.25


def warm_up(day_dir: Path) -> None:
    """One short training first, so that no variant pays the process's one-time start-up costs."""
    from sda.models import parse_model_config
    from sda.train import TrainingConfig, train

    train(parse_model_config({"name": "dlrm"}), TrainingConfig(max_steps=50, eval_every=None), [day_dir])


def recipe_for(stats: Path, variant: str, trials: int, repeat: int) -> Recipe:
    advice = AdviceRequest.from_stats_file(stats, dataset="criteo", model="dlrm", budget_seconds=1e6,
                                           max_observations=trials, naive=variant == "naive")
    document = advise(advice).model_dump(mode="json", exclude_none=True)
    document["experiment"]["name"] = f"bench-{variant}-r{repeat}"
    document["experiment"]["parallel_bandwidth"] = 1  # one process runs the trials in order
    if variant == "auc_only":
        for metric in document["experiment"]["metrics"]:
            if metric["name"] == "training_time":
                metric.pop("threshold", None)
                metric["strategy"] = "store"
    return parse_recipe(document, f"{variant} recipe")


def run_experiment(recipe: Recipe, day_dir: Path, storage: str, seed: int) -> dict:
    backend = LocalBackend(storage, seed=seed)
    started = time.monotonic()
    optimize(recipe, [day_dir], backend)
    trials = [{"suggestion": o.suggestion, "failed": o.failed, "reason": o.reason, "assignments": o.assignments,
               "auc": (o.values or {}).get("auc"), "training_time": (o.values or {}).get("training_time"),
               "training_seconds": float((o.metadata or {}).get("training_seconds", 0.0))}
              for o in sorted(backend.observations(recipe.experiment.name), key=lambda o: o.suggestion)]
    chosen = choose(backend.best_assignments(recipe.experiment.name), recipe.experiment, recipe.selection.tolerance)
    return {"trials": trials, "wall_seconds": round(time.monotonic() - started, 1),
            "chosen": None if chosen is None else {"suggestion": chosen.suggestion, **chosen.values,
                                                   "assignments": chosen.assignments}}


def compute_to_reach(trials: list[dict], target_auc: float) -> float | None:
    """Training seconds spent, in trial order, up to and including the first trial at or above target_auc."""
    spent = 0.0
    for trial in trials:
        spent += trial["training_seconds"]
        if trial["auc"] is not None and trial["auc"] >= target_auc:
            return spent
    return None


def best_trial(trials: list[dict]) -> dict | None:
    done = [t for t in trials if t["auc"] is not None]
    return max(done, key=lambda t: t["auc"]) if done else None


def plot(repeats: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    colors = {"advised": "tab:blue", "naive": "tab:red"}
    for index, repeat in enumerate(repeats):
        for variant, color in colors.items():
            spent, best, xs, ys = 0.0, None, [], []
            for trial in repeat[variant]["trials"]:
                spent += trial["training_seconds"]
                if trial["auc"] is not None:
                    best = trial["auc"] if best is None else max(best, trial["auc"])
                if best is not None:
                    xs.append(spent)
                    ys.append(best)
            axis.step(xs, ys, where="post", color=color, alpha=0.8, label=variant if index == 0 else None)
    axis.set_xscale("log")
    axis.set_xlabel("training seconds spent (cumulative, log scale)")
    axis.set_ylabel("best validation AUC so far")
    axis.set_title("advised vs naive search space (DLRM, one line per repeat)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=200_000)
    parser.add_argument("--trials", type=int, default=16, help="observation budget of each experiment")
    parser.add_argument("--naive-trials", type=int, default=48,
                        help="observation budget of the naive experiments (more, to give it a chance to get there)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--auc-gap", type=float, default=0.002)
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    processed, oracle = prepared_training_day(args.work / "hpo_data", DAY, args.train_rows)
    stats = processed / "stats.json"
    store = args.work / "hpo_optimizer.db"
    store.unlink(missing_ok=True)
    storage = f"sqlite:///{store}"
    warm_up(processed)
    repeats = []
    for repeat in range(args.repeats):
        results = {}
        for variant in ("advised", "naive", "auc_only"):
            trials = args.naive_trials if variant == "naive" else args.trials
            logging.info("repeat %d: %s recipe, %d trials", repeat, variant, trials)
            results[variant] = run_experiment(recipe_for(stats, variant, trials, repeat), processed, storage,
                                              seed=repeat)
        # Advised vs naive: compute to reach the best AUC either found, less the gap.
        best_auc = max(t["auc"] for v in ("advised", "naive") for t in results[v]["trials"] if t["auc"] is not None)
        for variant in ("advised", "naive"):
            trials = results[variant]["trials"]
            top = best_trial(trials)
            results[variant]["compute_to_target"] = compute_to_reach(trials, best_auc - args.auc_gap)
            results[variant]["total_compute"] = round(sum(t["training_seconds"] for t in trials), 2)
            results[variant]["best_auc"] = top["auc"] if top else None
            results[variant]["best_auc_training_time"] = top["training_time"] if top else None
            results[variant]["failed"] = sum(t["failed"] for t in trials)
        advised, naive = results["advised"]["compute_to_target"], results["naive"]["compute_to_target"]
        # Not reached: the naive search spent all it had without getting there, a lower bound of its need.
        naive_need = naive if naive is not None else results["naive"]["total_compute"]
        results["compute_ratio"] = naive_need / advised if advised else None
        results["compute_ratio_is_lower_bound"] = naive is None
        results["target_auc"] = best_auc - args.auc_gap
        # Multi-metric vs AUC only: the chosen models.
        multi, single = results["advised"]["chosen"], results["auc_only"]["chosen"]
        if multi and single:
            results["chosen_auc_difference"] = multi["auc"] - single["auc"]
            results["speedup"] = single["training_time"] / multi["training_time"]
        repeats.append(results)

    def median_of(key: str) -> float | None:
        values = [r[key] for r in repeats if r.get(key) is not None]
        return statistics.median(values) if values else None

    compute_ratio, speedup = median_of("compute_ratio"), median_of("speedup")
    auc_difference = median_of("chosen_auc_difference")
    report = {
        "benchmark": "hpo", "oracle_auc": oracle, "train_rows": args.train_rows, "trials": args.trials,
        "naive_trials": args.naive_trials,
        "repeats": repeats, "auc_gap": args.auc_gap,
        "median_compute_ratio": compute_ratio, "compute_target": COMPUTE_TARGET,
        "compute_met": compute_ratio is not None and compute_ratio >= COMPUTE_TARGET,
        "median_speedup": speedup, "median_chosen_auc_difference": auc_difference, "speed_target": SPEED_TARGET,
        "speed_met": speedup is not None and speedup >= SPEED_TARGET and abs(auc_difference) <= args.auc_gap,
    }
    args.work.mkdir(parents=True, exist_ok=True)
    out = args.work / "hpo.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    plot(repeats, args.work / "hpo.png")
    print(f"\nDLRM on {args.train_rows} training rows (oracle AUC {oracle:.4f}), {args.trials} trials per "
          f"experiment ({args.naive_trials} naive), {args.repeats} repeats")
    print(f"{'repeat':<7}{'advised s':>10}{'naive s':>10}{'ratio':>8}  {'best AUC adv/naive':<20}"
          f"{'chosen s multi/auc':>20}{'speedup':>9}{'dAUC':>9}")
    for index, r in enumerate(repeats):
        naive_s = r["naive"]["compute_to_target"]
        print(f"{index:<7}{r['advised']['compute_to_target'] or float('nan'):>10.1f}"
              f"{naive_s if naive_s is not None else r['naive']['total_compute']:>9.1f}"
              f"{'+' if naive_s is None else ' '}{r['compute_ratio'] or float('nan'):>7.1f}x  "
              f"{r['advised']['best_auc']:.4f}/{r['naive']['best_auc'] or float('nan'):.4f}     "
              f"{r['advised']['chosen']['training_time']:>9.1f}/{r['auc_only']['chosen']['training_time']:<9.1f}"
              f"{r.get('speedup', float('nan')):>8.2f}x{r.get('chosen_auc_difference', float('nan')):>9.4f}")
    print("(+: the naive search never reached the target; its whole compute is a lower bound of its need)")
    print(f"median compute ratio naive/advised: {compute_ratio:.1f}x (target >= {COMPUTE_TARGET}x) "
          f"{'met' if report['compute_met'] else 'NOT met'}")
    print(f"median training-time speedup of the multi-metric choice: {speedup:.2f}x at AUC difference "
          f"{auc_difference:+.4f} (target >= {SPEED_TARGET}x) {'met' if report['speed_met'] else 'NOT met'}")
    print(f"wrote {out} and {args.work / 'hpo.png'}")


if __name__ == "__main__":
    main()
