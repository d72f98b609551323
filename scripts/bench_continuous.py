"""`make bench-continuous`: what continuous retraining costs and what it serves, over replayed days.

Generated Criteo-format days (Criteo's full cardinalities by default) with the generator's slow drift (dense
means on a yearly wave, 2% new values a day) and abrupt, lasting shifts: `new_ids` (each large column's 200
most popular values are replaced by new ones overnight) and `click_model` (what drives a click changes). Every
day is validated (GX; a day that fails on drift alone is accepted as an operator would, with a reason) and
preprocessed by the real Spark job, once; the window's days before the first are prepared the same way, as
history (not counted), so that every replayed day trains on a whole window. Then three policies replay the
same days, each with its own
registry, optimizer store and records, through the optimize half the DAG runs (sda.retrain.inprocess):

    search  (a) today's behaviour before the policy: the advised search every day, its whole budget
    never   (b) the first day's model serves every later day (mode skip)
    auto    (c) the retraining policy: skip, refresh, a scaled search or a full one, as the data asks

For each: CPU-seconds (validate and preprocess, the same for all three, plus its own monitor, plan, trials,
final fit, evaluate and promote, all from recdp.costs), the served AUC per day (the champion of the day
before, on the day's holdout), its mean, its worst day against (a), and the days each shift took to recover.
The shifts are strong enough only if (b) clearly loses after them; the report says whether they were.

Writes var/bench/continuous.json and continuous.png (and, with --publish, docs/benchmarks/).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from recdp.costs import recorded_cost, run_costs  # noqa: E402
from recdp.jobs.jvm import drop_dump, keep_archive, plan_driver_jvm, properties_java_options  # noqa: E402
from recdp.spec import load_spec  # noqa: E402
from recdp.storage import DataRoot  # noqa: E402
from recdp.synth import Shift, SynthConfig, generate_day  # noqa: E402
from scripts.benchdata import SPARK_PROPERTIES, spark_submit_preprocess  # noqa: E402
from scripts.benchreport import RESULTS, write_report  # noqa: E402

POLICIES = {"search": "(a) the advised search every day", "never": "(b) never retrain after the first day",
            "auto": "(c) the adaptive policy"}
SHARED_AREAS = ("raw", "validation", "quarantine", "processed", "vocab")
DATA_RUN = "bench-data"
TARGETS = {"cpu_ratio_max": 0.2, "mean_auc_gap_max": 0.001, "worst_day_gap_max": 0.005,
           "recover_within_days": 2, "recover_gap": 0.002, "shift_loss_min": 0.005}


def _shift(text: str) -> tuple[str, int]:
    kind, _, offset = text.partition("@")
    return kind, int(offset)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows", type=int, default=100_000, help="rows per day")
    parser.add_argument("--cardinality-scale", type=float, default=1.0, help="1.0: Criteo's full cardinalities")
    parser.add_argument("--seed", type=int, default=2002,
                        help="the generated world; the policy's refresh_every_days and window_from_shift were "
                             "added after a replay of seed 1001, so that seed is not the one to judge them on")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2026, 4, 1))
    parser.add_argument("--shift", type=_shift, action="append", dest="shifts",
                        help="KIND@DAY_OFFSET, e.g. new_ids@10 (default: new_ids@10 and click_model@20)")
    parser.add_argument("--window", type=int, default=3, help="training window in days")
    parser.add_argument("--history-days", type=int, help="days prepared (validated, preprocessed) before the "
                                                        "replay, as a backfill in mode data would (default: the "
                                                        "window less one, so the first replayed day trains on a "
                                                        "whole window, as every later one does)")
    parser.add_argument("--budget-seconds", type=float, default=240.0, help="a search's training budget")
    parser.add_argument("--max-trials", type=int, default=8, help="a cap on a search's observation budget")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench" / "continuous")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "var" / "bench")
    parser.add_argument("--publish", action="store_true", help="also write the report to docs/benchmarks/")
    args = parser.parse_args()
    args.shifts = args.shifts or [("new_ids", 10), ("click_model", 20)]
    args.policies = [p for p in args.policies.split(",") if p]
    args.history_days = args.window - 1 if args.history_days is None else args.history_days
    if unknown := set(args.policies) - set(POLICIES):
        parser.error(f"unknown policies {sorted(unknown)}; from {list(POLICIES)}")
    return args


def prepare_day(spec, data: DataRoot, day: dt.date, config: SynthConfig, work: Path) -> dict[str, Any]:
    """Generate, validate (accepting a drift-only failure, with a reason) and preprocess one day, once."""
    from recdp.validate import ValidationFailed, validate_partition

    if (data.processed(spec.name, day) / "_SUCCESS").is_file():
        report = data.validation_report(spec.name, day) or {}
        return {"status": report.get("status"), "drift": len(report.get("drift", [])),
                "cpu_seconds": run_costs(data, spec.name, day.isoformat(), DATA_RUN)}
    generate_day(spec, data, day, config)
    with recorded_cost(data, spec.name, day.isoformat(), DATA_RUN, "validate"):
        try:
            report = validate_partition(spec, data, day)
        except ValidationFailed as failure:
            if not failure.report.drift_only:
                raise
            report = validate_partition(spec, data, day, accept_reason="the shift is real: the world changed",
                                        accepted_by="bench-continuous (as an operator)")
    env = {**os.environ, "RECSYS_DATA": str(data.root), "PYSPARK_PYTHON": sys.executable,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    # The driver JVM as the DAG's ship_job starts it on a local master.
    jvm = plan_driver_jvm(work / "jobs" / "jvm", report.rows_valid,
                          properties_java_options(SPARK_PROPERTIES), f"{DATA_RUN}-{day}")
    command = spark_submit_preprocess(spec, [day], archive_dir=work / "jobs", validated=True, cost_run=DATA_RUN,
                                      java_options=jvm.java_options)
    job = subprocess.run(command, env=env, capture_output=True, text=True)
    if job.returncode != 0:
        drop_dump(jvm)
        raise SystemExit(f"preprocessing {day} failed ({job.returncode}):\n{job.stderr[-3000:]}")
    keep_archive(jvm)
    return {"status": report.status, "drift": len(report.drift),
            "cpu_seconds": run_costs(data, spec.name, day.isoformat(), DATA_RUN)}


def policy_root(work: Path, data: DataRoot, policy: str) -> DataRoot:
    """The policy's own root: its experiments, registry, optimizer store, monitoring and costs; the days'
    data (raw, validation, processed, vocabularies) is the shared one's."""
    root = (work / f"policy-{policy}").resolve()
    root.mkdir(parents=True, exist_ok=True)
    for area in SHARED_AREAS:
        (data.root / area).mkdir(parents=True, exist_ok=True)
        link = root / area
        if not link.is_symlink():
            link.symlink_to(data.root / area, target_is_directory=True)
    return DataRoot(root)


def mode_of(policy: str, index: int) -> str:
    if policy == "search":
        return "search"  # forced: the whole advised budget, warm-started from the day before
    if policy == "never":
        return "full" if index == 0 else "skip"
    return "auto"


def recovery(days: list[str], served: dict[str, list[float | None]], policy: str, shift_day: str,
             gap: float) -> int | None:
    """Days after the shift until `policy` serves within `gap` of (a), counting the first day a model trained on
    the shifted data can serve as 1; None if it never does within the replay."""
    start = days.index(shift_day)
    for k in range(1, len(days) - start):
        a, c = served["search"][start + k], served[policy][start + k]
        if a is not None and c is not None and c >= a - gap:
            return k
    return None


def summary(days: list[str], served: dict[str, list[float | None]], cpu: dict[str, list[float]],
            data_cpu: list[float], shifts: list[tuple[str, str]]) -> dict[str, Any]:
    report: dict[str, Any] = {"policies": {}}
    scored = [i for i in range(len(days)) if all(served[p][i] is not None for p in served)]
    for policy in served:
        values = [served[policy][i] for i in scored]
        row: dict[str, Any] = {
            "description": POLICIES[policy],
            "cpu_seconds_total": round(sum(cpu[policy]) + sum(data_cpu), 1),
            "cpu_seconds_training_side": round(sum(cpu[policy]), 1),
            "served_auc_mean": round(statistics.fmean(values), 5) if values else None,
            "served_auc_worst": round(min(values), 5) if values else None,
        }
        if "search" in served and policy != "search" and values:
            gaps = [served[policy][i] - served["search"][i] for i in scored]
            worst = min(range(len(gaps)), key=gaps.__getitem__)
            row["mean_gap_to_a"] = round(statistics.fmean(gaps), 5)
            row["worst_day_gap_to_a"] = round(gaps[worst], 5)
            row["worst_day"] = days[scored[worst]]
            row["recovery_days"] = {f"{kind}@{day}": recovery(days, served, policy, day, TARGETS["recover_gap"])
                                    for kind, day in shifts}
            row["loss_after_shifts"] = {
                f"{kind}@{day}": round(statistics.fmean(
                    served["search"][i] - served[policy][i] for i in range(days.index(day) + 1,
                                                                          min(days.index(day) + 4, len(days)))
                    if served[policy][i] is not None and served["search"][i] is not None), 5)
                for kind, day in shifts if days.index(day) + 1 < len(days)}
        report["policies"][policy] = row
    if {"search", "auto"} <= set(served):
        a, c = report["policies"]["search"], report["policies"]["auto"]
        report["cpu_ratio_auto_to_search"] = round(c["cpu_seconds_total"] / a["cpu_seconds_total"], 4)
        report["cpu_ratio_auto_to_search_training_side"] = round(
            c["cpu_seconds_training_side"] / max(a["cpu_seconds_training_side"], 1e-9), 4)
        recoveries = [v for v in c.get("recovery_days", {}).values()]
        report["targets"] = {
            "cpu_at_most_a_fifth": report["cpu_ratio_auto_to_search"] <= TARGETS["cpu_ratio_max"],
            "mean_auc_within_0.001": c.get("mean_gap_to_a", -1) >= -TARGETS["mean_auc_gap_max"],
            "no_day_below_0.005": c.get("worst_day_gap_to_a", -1) >= -TARGETS["worst_day_gap_max"],
            "recovers_within_2_days": all(v is not None and v <= TARGETS["recover_within_days"] for v in recoveries),
        }
    if {"search", "never"} <= set(served):
        losses = report["policies"]["never"].get("loss_after_shifts", {})
        report["shifts_strong_enough"] = bool(losses) and all(v >= TARGETS["shift_loss_min"] for v in losses.values())
    return report


def plot(days: list[str], served: dict[str, list[float | None]], cpu: dict[str, list[float]],
         data_cpu: list[float], shifts: list[tuple[str, str]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    x = range(len(days))
    for policy, values in served.items():
        top.plot(x, [v if v is not None else float("nan") for v in values], marker=".", label=POLICIES[policy])
        running, total = [], 0.0
        for spent, data in zip(cpu[policy], data_cpu, strict=True):
            total += spent + data
            running.append(total / 3600)
        bottom.plot(x, running, label=POLICIES[policy])
    for kind, day in shifts:
        for axis in (top, bottom):
            axis.axvline(days.index(day), color="grey", linestyle="--", linewidth=0.8)
        top.annotate(kind, (days.index(day), top.get_ylim()[0]), rotation=90, fontsize=8, va="bottom")
    top.set_ylabel("served AUC (the day before's champion)")
    bottom.set_ylabel("cumulative CPU-hours")
    bottom.set_xticks(list(x)[::5], [days[i] for i in list(x)[::5]])
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    args = arguments()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("mlflow", "alembic", "optuna", "great_expectations", "py4j"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.setdefault("SDA_OPTIMIZER_SEED", str(args.seed))
    from sda.hpo.factory import backend_from_env
    from sda.retrain.inprocess import retrain_day
    from sda.retrain.planning import RunRequest
    from sda.tracking import Tracking

    spec = load_spec("criteo")
    dates = [args.start + dt.timedelta(days=i) for i in range(args.days)]
    shifts = [(kind, dates[offset].isoformat()) for kind, offset in args.shifts]
    config = SynthConfig(rows=args.rows, seed=args.seed, cardinality_scale=args.cardinality_scale,
                         shifts=tuple(Shift(dt.date.fromisoformat(day), kind) for kind, day in shifts))
    if args.work.exists():  # a replay starts from nothing: no champion, no vocabulary
        shutil.rmtree(args.work)
    data = DataRoot((args.work / "data").resolve())
    roots = {policy: policy_root(args.work, data, policy) for policy in args.policies}
    days = [d.isoformat() for d in dates]
    served: dict[str, list[float | None]] = {p: [] for p in args.policies}
    cpu: dict[str, list[float]] = {p: [] for p in args.policies}
    log_days: list[dict[str, Any]] = []
    data_cpu: list[float] = []
    started = time.monotonic()
    for offset in range(args.history_days, 0, -1):  # history: data only, for every policy's first window
        prepare_day(spec, data, args.start - dt.timedelta(days=offset), config, args.work)
    for index, day in enumerate(dates):
        prepared = prepare_day(spec, data, day, config, args.work)
        data_cpu.append(sum(prepared["cpu_seconds"].values()))
        entry: dict[str, Any] = {"day": day.isoformat(), "validation": prepared["status"],
                                 "drift_findings": prepared["drift"], "data_cpu_seconds": prepared["cpu_seconds"],
                                 "policies": {}}
        for policy in args.policies:
            root = roots[policy]
            request = RunRequest(dataset=spec.name, day=day.isoformat(), run_id=f"bench__{policy}__{day}",
                                 window_days=args.window, budget_seconds=args.budget_seconds,
                                 max_trials=args.max_trials, workers=2, mode=mode_of(policy, index))
            outcome = retrain_day(root, backend_from_env(root.optimizer_storage()),
                                  Tracking.from_env(root.mlflow()), request)
            served[policy].append(outcome.served.served_auc)
            cpu[policy].append(sum(outcome.cpu_seconds.values()))
            entry["policies"][policy] = {"mode": outcome.mode, "mode_reason": outcome.mode_reason,
                                         "served_auc": outcome.served.served_auc, "trials": outcome.trials,
                                         "verdict": outcome.verdict, "cpu_seconds": outcome.cpu_seconds}
        log_days.append(entry)
        shown = "  ".join(f"{p}: {entry['policies'][p]['mode']} served "
                          f"{(served[p][-1] or float('nan')):.4f} {cpu[p][-1]:.0f} CPU-s" for p in args.policies)
        print(f"[{index + 1}/{len(dates)} {time.monotonic() - started:.0f}s] {day} {prepared['status']} "
              f"(data {data_cpu[-1]:.0f} CPU-s)  {shown}", flush=True)
    report = summary(days, served, cpu, data_cpu, shifts)
    plot_path = args.out / "continuous.png"
    plot(days, served, cpu, data_cpu, shifts, plot_path)
    scale = {"days": args.days, "rows_per_day": args.rows, "cardinality_scale": args.cardinality_scale,
             "seed": args.seed, "shifts": [{"kind": k, "day": d} for k, d in shifts], "window_days": args.window,
             "history_days": args.history_days,
             "budget_seconds": args.budget_seconds, "max_trials": args.max_trials,
             "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"), "torch_threads": _torch_threads()}
    document = {**report, "targets_set": TARGETS, "plot": str(plot_path), "days": log_days,
                "wall_seconds": round(time.monotonic() - started, 1)}
    path = write_report("continuous", document, scale, args.out)
    if args.publish:
        write_report("continuous", document, scale, RESULTS)
        shutil.copyfile(plot_path, RESULTS / "continuous.png")
    for policy, row in report["policies"].items():
        print(f"{policy:>7}: {row['cpu_seconds_total']:9.0f} CPU-s  served AUC mean {row['served_auc_mean']}  "
              f"worst {row['served_auc_worst']}  " + "  ".join(
                  f"{k} {row[k]}" for k in ("mean_gap_to_a", "worst_day_gap_to_a", "recovery_days") if k in row))
    for key in ("cpu_ratio_auto_to_search", "cpu_ratio_auto_to_search_training_side", "targets",
                "shifts_strong_enough"):
        if key in report:
            print(f"{key}: {report[key]}")
    print(f"wrote {path} and {plot_path}")


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
