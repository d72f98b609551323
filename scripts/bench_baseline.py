"""`make bench-baseline`: is the champion the retraining serves ever worse than a linear model retrained
every day on the same window?

For every dataset spec in include/datasets/ (criteo at Criteo's full cardinalities, shop_clicks,
ratings_daily: a few hundred rows a day on a 90-day window), generated days are validated (a day that fails
on drift alone is accepted as an operator would) and preprocessed by the real Spark job, once. Then the days
of the replay go, in order, through the optimize half the DAG runs (sda.retrain.inprocess, mode `auto`, the
spec's model and window). Beside it, the baseline the promotion uses (logistic regression on the same one-hot
ids and dense values, trained the same way, sda.retrain.baseline.baseline_training) is retrained every day on
the same window: the strongest simple alternative, not one trained once.

On each day after the first, both the champion (what the day before's run left serving) and the day before's
baseline score the day's holdout (its test split), as the monitor scores the champion. Reported per spec:
each day's two AUCs, and over all the replayed days' holdout rows pooled, both AUCs and their difference with
DeLong's 95% interval (sda.promote.auc_difference). The goal is met on a spec when the pooled champion AUC is
at least the baseline's.

Writes var/bench/baseline.json (and, with --publish, docs/benchmarks/baseline.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from recdp.spec import DatasetSpec, load_spec  # noqa: E402
from recdp.storage import DataRoot  # noqa: E402
from recdp.synth import SynthConfig, generate_day  # noqa: E402
from scripts.benchdata import spark_submit_preprocess  # noqa: E402
from scripts.benchreport import RESULTS, write_report  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Setting:
    spec: str
    rows: int  # per day
    cardinality_scale: float
    window: int  # days; history days before the replay fill the first window
    replay: int  # days
    seed: int = 3003  # no advisor default or threshold was set on this seed


SETTINGS = {
    "criteo": Setting("criteo", rows=100_000, cardinality_scale=1.0, window=3, replay=8),
    "shop_clicks": Setting("shop_clicks", rows=50_000, cardinality_scale=0.01, window=3, replay=8),
    "ratings_daily": Setting("ratings_daily", rows=300, cardinality_scale=0.001, window=90, replay=15),
}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", default=",".join(SETTINGS), help="comma-separated, from " + ", ".join(SETTINGS))
    parser.add_argument("--rows-scale", type=float, default=1.0, help="multiplies every setting's rows a day")
    parser.add_argument("--replay", type=int, help="replayed days of every setting (default: the setting's)")
    parser.add_argument("--window", type=int, help="training window of every setting (default: the setting's)")
    parser.add_argument("--budget-seconds", type=float, default=240.0, help="a search's training budget")
    parser.add_argument("--max-trials", type=int, default=8, help="a cap on a search's observation budget")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2026, 7, 1))
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench" / "baseline")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "var" / "bench")
    parser.add_argument("--publish", action="store_true", help="also write the report to docs/benchmarks/")
    args = parser.parse_args()
    args.specs = [s for s in args.specs.split(",") if s]
    if unknown := set(args.specs) - set(SETTINGS):
        parser.error(f"unknown specs {sorted(unknown)}; from {list(SETTINGS)}")
    return args


def prepare_days(spec: DatasetSpec, data: DataRoot, days: list[dt.date], config: SynthConfig, work: Path) -> None:
    """Generate and validate every day (accepting a drift-only failure, with a reason), then preprocess them
    all in one spark-submit, in order (the vocabulary grows day by day as in daily runs)."""
    from recdp.validate import ValidationFailed, validate_partition

    for day in days:
        generate_day(spec, data, day, config)
        try:
            validate_partition(spec, data, day)
        except ValidationFailed as failure:
            if not failure.report.drift_only:
                raise
            validate_partition(spec, data, day, accept_reason="noise of a small day, or a real change",
                               accepted_by="bench-baseline (as an operator)")
    env = {**os.environ, "RECSYS_DATA": str(data.root), "PYSPARK_PYTHON": sys.executable,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    job = subprocess.run(spark_submit_preprocess(spec, days, archive_dir=work / "jobs", validated=True), env=env,
                         capture_output=True, text=True)
    if job.returncode != 0:
        raise SystemExit(f"preprocessing {spec.name} failed ({job.returncode}):\n{job.stderr[-3000:]}")


def train_baseline(window: list[Path], folder: Path, seed: int) -> Path:
    """The promotion's baseline, trained the same way, on the window's train splits."""
    import json

    from sda.models import parse_model_config
    from sda.retrain.baseline import BASELINE_MODEL, baseline_training
    from sda.retrain.final import recorded_fit
    from sda.train import train

    rows = sum(int(json.loads((d / "stats.json").read_text())["splits"]["train"]["rows"]) for d in window)
    config = parse_model_config({"name": BASELINE_MODEL})
    result = train(config, baseline_training(rows, seed=seed), window)
    document = recorded_fit(result, config, folder, ("auc",), model=BASELINE_MODEL)
    if document["model_path"] is None:
        raise SystemExit(f"the baseline did not train on {window[-1]}: {document['reason']}")
    return Path(document["model_path"])


def replay(setting: Setting, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from sda.hpo.factory import backend_from_env
    from sda.promote import Registry, auc_difference, holdout_metrics, predict_holdout
    from sda.retrain.inprocess import retrain_day
    from sda.retrain.planning import RunRequest
    from sda.tracking import Tracking

    spec = load_spec(setting.spec)
    window = args.window or setting.window
    replayed = args.replay or setting.replay
    rows = max(1, round(setting.rows * args.rows_scale))
    work = args.work / spec.name
    if work.exists():  # a replay starts from nothing: no champion, no vocabulary
        shutil.rmtree(work)
    root = DataRoot((work / "data").resolve())
    days = [args.start + dt.timedelta(days=i) for i in range(window - 1 + replayed)]
    started = time.monotonic()
    prepare_days(spec, root, days, SynthConfig(rows=rows, seed=setting.seed,
                                               cardinality_scale=setting.cardinality_scale), work)
    print(f"{spec.name}: {len(days)} days of {rows:,} rows prepared in {time.monotonic() - started:.0f}s", flush=True)
    backend, tracking = backend_from_env(root.optimizer_storage()), Tracking.from_env(root.mlflow())
    registry = Registry(tracking, spec.name)
    labels_all: list[np.ndarray] = []
    scores_all: dict[str, list[np.ndarray]] = {"champion": [], "baseline": []}
    log_days: list[dict[str, Any]] = []
    baseline: Path | None = None
    for day in days[window - 1:]:
        entry: dict[str, Any] = {"day": day.isoformat()}
        holdout = root.processed(spec.name, day)
        if baseline is not None and registry.champion() is not None:
            with tempfile.TemporaryDirectory() as tmp:
                labels, champion_scores = predict_holdout(registry.champion_model(Path(tmp)), holdout)
            baseline_labels, baseline_scores = predict_holdout(baseline, holdout)
            if not np.array_equal(labels, baseline_labels):
                raise SystemExit(f"{day}: the two arms were scored on different rows")
            labels_all.append(labels)
            scores_all["champion"].append(champion_scores)
            scores_all["baseline"].append(baseline_scores)
            try:
                entry["champion_auc"] = round(holdout_metrics(labels, champion_scores)["auc"], 5)
                entry["baseline_auc"] = round(holdout_metrics(labels, baseline_scores)["auc"], 5)
            except ValueError as one_class:  # a tiny day's test split can hold one class
                entry["note"] = str(one_class)
            entry["holdout_rows"], entry["holdout_positives"] = int(len(labels)), int(labels.sum())
        request = RunRequest(dataset=spec.name, day=day.isoformat(), run_id=f"bench__baseline__{day}",
                             model=spec.retrain.model, window_days=window, budget_seconds=args.budget_seconds,
                             max_trials=args.max_trials, workers=2, mode="auto")
        outcome = retrain_day(root, backend, tracking, request)
        entry.update(mode=outcome.mode, verdict=outcome.verdict, trials=outcome.trials)
        champion = registry.champion()
        entry["serving_next"] = None if champion is None else champion.tags.get("recsys.model")
        window_dirs = [root.processed(spec.name, d) for d in days if day - dt.timedelta(days=window) < d <= day]
        baseline = train_baseline(window_dirs, work / "baselines" / day.isoformat(), setting.seed)
        log_days.append(entry)
        print(f"{spec.name} {day}: champion {entry.get('champion_auc', '-')} baseline {entry.get('baseline_auc', '-')}"
              f"  mode {outcome.mode} {outcome.verdict}, next served by {entry['serving_next']} "
              f"[{time.monotonic() - started:.0f}s]", flush=True)
    scored = [d for d in log_days if "champion_auc" in d]
    pooled: dict[str, Any] | None = None
    if labels_all:
        labels = np.concatenate(labels_all)
        champion, linear = np.concatenate(scores_all["champion"]), np.concatenate(scores_all["baseline"])
        difference = auc_difference(labels, champion, linear)
        pooled = {"rows": int(len(labels)), "positives": int(labels.sum()),
                  "champion_auc": round(holdout_metrics(labels, champion)["auc"], 5),
                  "baseline_auc": round(holdout_metrics(labels, linear)["auc"], 5),
                  **{k: round(v, 5) if isinstance(v, float) else v for k, v in difference.items()}}
    return {"setting": dataclasses.asdict(setting) | {"rows": rows, "window": window, "replay": replayed},
            "model": spec.retrain.model, "pooled": pooled,
            "days_champion_at_least_baseline": sum(d["champion_auc"] >= d["baseline_auc"] for d in scored),
            "days_scored": len(scored),
            # No champion ever served: the product served nothing where the baseline would have served.
            "goal_met": pooled is not None and pooled["champion_auc"] >= pooled["baseline_auc"],
            "days": log_days, "wall_seconds": round(time.monotonic() - started, 1)}


def main() -> None:
    args = arguments()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.setdefault("SDA_OPTIMIZER_SEED", "3003")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    results = {name: replay(SETTINGS[name], args) for name in args.specs}
    document = {"specs": results, "goal_met_everywhere": all(r["goal_met"] for r in results.values())}
    scale = {"settings": {name: r["setting"] for name, r in results.items()}, "budget_seconds": args.budget_seconds,
             "max_trials": args.max_trials, "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}
    path = write_report("baseline", document, scale, args.out)
    if args.publish:
        write_report("baseline", document, scale, RESULTS)
    for name, result in results.items():
        pooled = result["pooled"]
        if pooled is None:
            print(f"{name:>14}: no champion served any replayed day: goal MISSED")
            continue
        print(f"{name:>14}: champion {pooled['champion_auc']:.4f} vs baseline {pooled['baseline_auc']:.4f} on "
              f"{pooled['rows']:,} pooled holdout rows (difference {pooled['difference']:+.4f}, 95% "
              f"[{pooled['low']:+.4f}, {pooled['high']:+.4f}]); {result['days_champion_at_least_baseline']}/"
              f"{result['days_scored']} days at least the baseline; goal {'met' if result['goal_met'] else 'MISSED'}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
