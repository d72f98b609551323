"""`make bench-hpo`: what the advisor's knowledge and the second metric buy, on data the advisor never saw.

The advisor's constants were set on the Criteo spec generated with seed 7 at cardinality scale 0.01 (see
sda/advisors/knowledge.py). This benchmark keeps that data out: each setting in HELD_OUT differs from it in
both generator seed and shape. In each setting, with the same backend (local, Optuna TPE), the same trial
runner and the same seeds, --repeats repeats of:
- the advisor's recipe against a practitioner's wide search (log-uniform learning rate 1e-5..1, batch size
  on the log2 grid 32..16384, the optimizer; same model): the compute (sum of trial training seconds, in
  trial order) each needs to reach an AUC within --auc-gap of the best AUC either found in that repeat;
- multi-metric (AUC and training_time optimized) against AUC alone (training_time a constraint with the
  same threshold): the same selection rule for both (the fastest feasible trial within the recipe's
  tolerance of the best AUC) and the same cost-aware median stopping; only the metric list differs.
Reports medians and interquartile ranges over the repeats; writes docs/benchmarks/hpo.json and hpo.png.

A full run takes hours on 2 cores, so every finished repeat is kept in docs/benchmarks/hpo-repeats/
(committed) with the fingerprint of the code (SEARCH_CODE), the processed data and the arguments that made
it. A rerun with the same ones reuses those and runs only the missing repeats: the benchmark may be
stopped and resumed. Any change to them discards the kept repeats.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from scripts.benchdata import prepared_training_day  # noqa: E402
from scripts.benchreport import RESULTS, code_fingerprint, provenance, write_report  # noqa: E402
from sda.advisors import AdviceRequest, advise  # noqa: E402
from sda.hpo import LocalBackend, Observation  # noqa: E402
from sda.hpo.experiment import Experiment  # noqa: E402
from sda.recipe import Recipe, parse_recipe  # noqa: E402
from sda.trials import optimize  # noqa: E402

COMPUTE_TARGET, SPEED_TARGET = 5.0, 1.25
# The code a repeat's figures depend on, once its data is processed: advisor, optimizer, trainer, models and
# the shard reader, and this benchmark. A change to any of it discards the kept repeats.
SEARCH_CODE = ("sda/advisors", "sda/hpo", "sda/trials.py", "sda/pruning.py", "sda/models", "sda/recipe.py",
               "sda/train.py", "sda/optim.py", "sda/data.py", "recdp/shards.py", "scripts/bench_hpo.py",
               "scripts/benchdata.py")


@dataclass(frozen=True)
class Setting:
    """Data the advisor was not tuned on: another generator seed and another shape than its calibration
    data (Criteo spec, seed 7, cardinality scale 0.01)."""

    name: str
    dataset: str
    seed: int
    cardinality_scale: float
    train_rows: int
    day: dt.date


HELD_OUT = (
    Setting("criteo, full cardinalities", "criteo", seed=1001, cardinality_scale=1.0, train_rows=200_000,
            day=dt.date(2026, 6, 1)),
    Setting("shop_clicks", "shop_clicks", seed=2002, cardinality_scale=1.0, train_rows=400_000,
            day=dt.date(2026, 6, 2)),
)


def warm_up(day_dir: Path) -> None:
    """One short training first, so that no variant pays the process's one-time start-up costs."""
    from sda.models import parse_model_config
    from sda.train import TrainingConfig, train

    train(parse_model_config({"name": "dlrm"}), TrainingConfig(max_steps=50, eval_every=None), [day_dir])


def recipe_for(stats: Path, dataset: str, variant: str, trials: int, label: str) -> Recipe:
    advice = AdviceRequest.from_stats_file(stats, dataset=dataset, model="dlrm", budget_seconds=1e6,
                                           max_observations=trials, naive=variant == "naive")
    document = advise(advice).model_dump(mode="json", exclude_none=True)
    document["experiment"]["name"] = f"bench-{label}-{variant}"
    document["experiment"]["parallel_bandwidth"] = 1  # one process runs the trials in order
    if variant == "auc_only":  # training_time keeps its threshold as a guardrail, but is not optimized
        for metric in document["experiment"]["metrics"]:
            if metric["name"] == "training_time":
                metric["strategy"] = "constraint"
    return parse_recipe(document, f"{variant} recipe")


def fastest_within(observations: list[Observation], experiment: Experiment, tolerance: float) -> Observation | None:
    """The selection rule of both arms: among the feasible observations (every threshold met) within
    `tolerance` of the best AUC, the one that trained fastest."""
    def meets(observation: Observation) -> bool:
        return all(observation.values[m.name] >= m.threshold if m.objective == "maximize"
                   else observation.values[m.name] <= m.threshold
                   for m in experiment.metrics if m.threshold is not None)

    feasible = [o for o in observations if not o.failed and o.values and meets(o)]
    if not feasible:
        return None
    top = max(o.values["auc"] for o in feasible)
    return min((o for o in feasible if top - o.values["auc"] <= tolerance), key=lambda o: o.values["training_time"])


def run_experiment(recipe: Recipe, day_dir: Path, storage: str, seed: int, guardrails: Experiment) -> dict:
    backend = LocalBackend(storage, seed=seed)
    started = time.monotonic()
    optimize(recipe, [day_dir], backend, cost_aware=True)
    observations = sorted(backend.observations(recipe.experiment.name), key=lambda o: o.suggestion)
    trials = [{"suggestion": o.suggestion, "failed": o.failed, "reason": o.reason, "assignments": o.assignments,
               "auc": (o.values or {}).get("auc"), "training_time": (o.values or {}).get("training_time"),
               "training_seconds": float((o.metadata or {}).get("training_seconds", 0.0))} for o in observations]
    chosen = fastest_within(observations, guardrails, recipe.selection.tolerance)
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


def summary(values: list[float]) -> dict:
    """Median and interquartile range (quartiles by the inclusive method) of the repeats."""
    if not values:
        return {"median": None, "q1": None, "q3": None, "n": 0}
    if len(values) == 1:
        return {"median": values[0], "q1": values[0], "q3": values[0], "n": 1}
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": statistics.median(values), "q1": q1, "q3": q3, "n": len(values)}


def one_repeat(stats: Path, setting: Setting, processed: Path, storage: str, repeat: int, args) -> dict:
    label = f"{setting.dataset}-s{setting.seed}-r{repeat}"
    recipes = {variant: recipe_for(stats, setting.dataset, variant,
                                   args.naive_trials if variant == "naive" else args.trials, label)
               for variant in ("advised", "naive", "auc_only")}
    guardrails = recipes["advised"].experiment
    results: dict = {}
    for variant, recipe in recipes.items():
        logging.info("%s, repeat %d: %s recipe, %d trials", setting.name, repeat, variant,
                     recipe.experiment.observation_budget)
        results[variant] = run_experiment(recipe, processed, storage, seed=repeat, guardrails=guardrails)
    # Advised vs naive: compute to reach the best AUC either found, less the gap.
    best_auc = max(t["auc"] for v in ("advised", "naive") for t in results[v]["trials"] if t["auc"] is not None)
    for variant in ("advised", "naive"):
        trials = results[variant]["trials"]
        top = best_trial(trials)
        results[variant]["compute_to_target"] = compute_to_reach(trials, best_auc - args.auc_gap)
        results[variant]["total_compute"] = round(sum(t["training_seconds"] for t in trials), 2)
        results[variant]["best_auc"] = top["auc"] if top else None
        results[variant]["failed"] = sum(t["failed"] for t in trials)
    advised, naive = results["advised"]["compute_to_target"], results["naive"]["compute_to_target"]
    # A search that never got there spent all it had: its whole compute is a lower bound of its need. So
    # the ratio is a lower bound when the naive one missed, and an upper bound (counted, not dropped: it
    # goes against the advisor) when the advised one missed.
    naive_need = naive if naive is not None else results["naive"]["total_compute"]
    advised_need = advised if advised is not None else results["advised"]["total_compute"]
    results["compute_ratio"] = naive_need / advised_need if advised_need else None
    results["compute_ratio_bound"] = "lower" if naive is None else "upper" if advised is None else None
    results["target_auc"] = best_auc - args.auc_gap
    multi, single = results["advised"]["chosen"], results["auc_only"]["chosen"]
    if multi and single:
        results["chosen_auc_difference"] = multi["auc"] - single["auc"]
        results["speedup"] = single["training_time"] / multi["training_time"]
    return results


def repeat_key(setting: Setting, args, stats: Path | None = None) -> dict:
    """What a kept repeat must have been made with to be reused: the same code, setting, budgets and
    processed data (its stats.json)."""
    data = None
    if stats is not None:  # the processed data's figures, without the time its job took
        figures = {k: v for k, v in json.loads(stats.read_text()).items() if k != "seconds"}
        data = hashlib.sha256(json.dumps(figures, sort_keys=True).encode()).hexdigest()[:16]
    return {"code": code_fingerprint(*SEARCH_CODE),
            "data": data, "setting": asdict(setting), "trials": args.trials, "naive_trials": args.naive_trials,
            "auc_gap": args.auc_gap}


def kept_repeat(path: Path, key: dict) -> dict | None:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return document["result"] if document.get("key") == json.loads(json.dumps(key, default=str)) else None


def bench_setting(setting: Setting, args) -> dict:
    processed, oracle = prepared_training_day(args.work / f"hpo_data_{setting.dataset}_s{setting.seed}",
                                              setting.day, setting.train_rows, setting.cardinality_scale,
                                              setting.dataset, setting.seed)
    stats = processed / "stats.json"
    key = repeat_key(setting, args, stats)
    kept = args.out / "hpo-repeats"  # committed with the results: a later session resumes from them
    kept.mkdir(parents=True, exist_ok=True)
    warmed = False
    repeats = []
    for repeat in range(args.repeats):
        path = kept / f"{setting.dataset}-s{setting.seed}-r{repeat}.json"
        result = kept_repeat(path, key)
        if result is not None:
            logging.info("%s, repeat %d: kept from %s (%s)", setting.name, repeat, path, result["run"]["finished"])
        else:
            if not warmed:
                warm_up(processed)
                warmed = True
            store = args.work / f"hpo_optimizer_{setting.dataset}_r{repeat}.db"
            store.unlink(missing_ok=True)  # an interrupted attempt of this repeat starts again
            result = {**one_repeat(stats, setting, processed, f"sqlite:///{store}", repeat, args),
                      "run": provenance()}
            staged = path.with_suffix(".tmp")
            staged.write_text(json.dumps({"key": key, "result": result}, indent=1, default=str) + "\n")
            staged.replace(path)
        repeats.append(result)

    def values(key: str) -> list[float]:
        return [r[key] for r in repeats if r.get(key) is not None]

    compute, speedup, difference = summary(values("compute_ratio")), summary(values("speedup")), \
        summary(values("chosen_auc_difference"))
    return {"setting": asdict(setting), "oracle_auc": oracle, "repeats": repeats,
            "compute_ratio": compute, "speedup": speedup, "chosen_auc_difference": difference,
            "compute_met": compute["median"] is not None and compute["median"] >= COMPUTE_TARGET,
            "speed_met": (speedup["median"] is not None and speedup["median"] >= SPEED_TARGET
                          and abs(difference["median"]) <= args.auc_gap)}


def plot(settings: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, len(settings), figsize=(6.5 * len(settings), 4.5), squeeze=False)
    colors = {"advised": "tab:blue", "naive": "tab:red"}
    for axis, result in zip(axes[0], settings, strict=True):
        finals = []
        for index, repeat in enumerate(result["repeats"]):
            for variant, color in colors.items():
                spent, best, xs, ys = 0.0, None, [], []
                for trial in repeat[variant]["trials"]:
                    spent += trial["training_seconds"]
                    if trial["auc"] is not None:
                        best = trial["auc"] if best is None else max(best, trial["auc"])
                    if best is not None:
                        xs.append(spent)
                        ys.append(best)
                axis.step(xs, ys, where="post", color=color, alpha=0.7, label=variant if index == 0 else None)
                finals += ys[-1:]
        if finals:
            # Zoom on where the searches end up; their first trials (down to 0.5, a failed or random model)
            # would squash every difference that matters into a few pixels.
            span = max(max(finals) - min(finals), 0.005)
            axis.set_ylim(min(finals) - 2 * span, max(finals) + 0.5 * span)
        axis.set_xscale("log")
        axis.set_xlabel("training seconds spent (cumulative, log scale)")
        axis.set_ylabel("best validation AUC so far (early trials below the axis)")
        axis.set_title(f"{result['setting']['name']} (DLRM, one line per repeat)")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16, help="observation budget of each experiment")
    parser.add_argument("--naive-trials", type=int, default=48,
                        help="observation budget of the naive experiments (more, to give it a chance to get there)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--auc-gap", type=float, default=0.002)
    parser.add_argument("--train-rows", type=int, default=None, help="override every setting's training rows")
    parser.add_argument("--settings", default=",".join(s.dataset for s in HELD_OUT),
                        help="comma-separated datasets of HELD_OUT to run")
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    chosen = [s for s in HELD_OUT if s.dataset in args.settings.split(",")]
    if args.train_rows:
        chosen = [Setting(**{**asdict(s), "train_rows": args.train_rows}) for s in chosen]
    results = [bench_setting(setting, args) for setting in chosen]
    report = {"model": "dlrm", "trials": args.trials, "naive_trials": args.naive_trials, "repeats": args.repeats,
              "auc_gap": args.auc_gap, "compute_target": COMPUTE_TARGET, "speed_target": SPEED_TARGET,
              "settings": results}
    out = write_report("hpo", report, {"calibration_data_excluded": "criteo spec, synth seed 7, cardinality 0.01",
                                       "settings": [asdict(s) for s in chosen]}, args.out)
    plot(results, args.out / "hpo.png")
    for result in results:
        setting = result["setting"]
        print(f"\n{setting['name']}: {setting['train_rows']} training rows, seed {setting['seed']}, cardinality "
              f"scale {setting['cardinality_scale']:g}, oracle AUC {result['oracle_auc']:.4f}; {args.trials} trials "
              f"({args.naive_trials} naive), {args.repeats} repeats")
        for index, r in enumerate(result["repeats"]):
            naive_s = r["naive"]["compute_to_target"]
            advised_s = r["advised"]["compute_to_target"]
            advised_shown = advised_s if advised_s is not None else r["advised"]["total_compute"]
            print(f"  repeat {index}: advised {advised_shown:.1f}s"
                  f"{'+' if advised_s is None else ''}, naive "
                  f"{naive_s if naive_s is not None else r['naive']['total_compute']:.1f}s"
                  f"{'+' if naive_s is None else ''} -> {r['compute_ratio'] or float('nan'):.1f}x; chosen "
                  f"{r.get('speedup', float('nan')):.2f}x faster at dAUC "
                  f"{r.get('chosen_auc_difference', float('nan')):+.4f}")
        for key, target, met in (("compute_ratio", COMPUTE_TARGET, result["compute_met"]),
                                 ("speedup", SPEED_TARGET, result["speed_met"])):
            stat = result[key]
            print(f"  {key}: median {stat['median'] or float('nan'):.2f}x (IQR {stat['q1'] or float('nan'):.2f}-"
                  f"{stat['q3'] or float('nan'):.2f}), target {target}x: {'met' if met else 'NOT met'}")
    print("(+: that search never reached the target; its whole compute is a lower bound of its need)")
    print(f"wrote {out} and {args.out / 'hpo.png'}")


if __name__ == "__main__":
    main()
