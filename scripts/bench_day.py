"""`make bench-day`: one large generated day through the whole retraining DAG, measured.

The real DAG (dags/recsys_retrain.py) runs with `dag.test` on embedded defaults (Spark local[*], SQLite,
files), its Params at their defaults unless given: validation (GX), the Spark preprocessing job, the advised
search (trials on a sample of the window when it is larger than the advisor's trial sample), the final fit on
the whole window, the evaluation on the day's holdout and the promotion. By default the day holds 100M rows
at Criteo's full cardinalities, the scale the product is designed for.

Reported: each task's wall seconds, the CPU-seconds each stage recorded (recdp.costs: the Spark job's driver,
JVM and Python workers included), the run's total against its dagrun_timeout, peak resident memory (this
process, which runs every in-process task, and its largest child, the Spark job), and what the advisor
planned (trials, sample, the final fit's estimate) against what happened.

`dag.test` runs the mapped trial slots one after another in this process, so the trials' wall time is that of
one worker; on the scheduler the slots run in parallel (make bench-scale measures their speedup).

Writes var/bench/day.json (and, with --publish, docs/benchmarks/day-<rows>.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from recdp.costs import run_costs  # noqa: E402
from recdp.spec import load_spec  # noqa: E402
from recdp.storage import DataRoot, qualified_run  # noqa: E402
from scripts.benchdata import ensure_generated  # noqa: E402
from scripts.benchreport import RESULTS, write_report  # noqa: E402


def run_dag(day: dt.date, conf: dict[str, Any]) -> tuple[Any, float, float]:
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    dag = bag.dags["recsys_retrain__criteo"]
    started = time.monotonic()
    run = dag.test(logical_date=pendulum.now("UTC"), run_conf={"day": day.isoformat(), **conf})
    return run, time.monotonic() - started, dag.dagrun_timeout.total_seconds()


def task_times(run) -> list[dict[str, Any]]:
    rows = []
    for ti in sorted(run.get_task_instances(), key=lambda ti: (ti.start_date or ti.end_date or 0, ti.map_index)):
        seconds = (ti.end_date - ti.start_date).total_seconds() if ti.start_date and ti.end_date else None
        rows.append({"task": ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""), "state": str(ti.state),
                     "wall_seconds": round(seconds, 1) if seconds is not None else None})
    return rows


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--cardinality-scale", type=float, default=1.0, help="1.0: Criteo's full cardinalities")
    parser.add_argument("--seed", type=int, default=2003)
    parser.add_argument("--day", default="2026-06-01")
    parser.add_argument("--conf", default="{}", help="DAG Params as JSON, e.g. '{\"budget_seconds\": 900}'")
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench" / "day")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "var" / "bench")
    parser.add_argument("--publish", action="store_true", help="also write docs/benchmarks/day-<rows>.json")
    args = parser.parse_args()
    day = dt.date.fromisoformat(args.day)
    os.environ["AIRFLOW_HOME"] = str((args.work / "airflow").resolve())
    os.environ["RECSYS_DATA"] = str((args.work / "data").resolve())
    root = DataRoot.from_env()
    spec = load_spec("criteo")
    Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True,
                   stdout=subprocess.DEVNULL)
    started = time.monotonic()
    oracle_auc = ensure_generated(spec, root, day, args.rows, args.cardinality_scale, args.seed)
    print(f"day {day}: {args.rows:,} rows at cardinality scale {args.cardinality_scale} "
          f"({time.monotonic() - started:.0f}s to generate or find)", flush=True)
    conf = json.loads(args.conf)
    run, wall, timeout_seconds = run_dag(day, conf)
    tasks = task_times(run)
    costs = run_costs(root, spec.name, day.isoformat(), qualified_run(run.dag_id, run.run_id))
    run_dir = root.experiment_run(qualified_run(run.dag_id, run.run_id))
    best, decision = _json(run_dir / "best.json"), _json(run_dir / "decision.json")
    recipe_budget = {}
    if (run_dir / "recipe.yaml").is_file():
        import yaml

        recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
        recipe_budget = {**recipe.get("budget", {}), "observation_budget": recipe["experiment"]["observation_budget"],
                         "parallel_bandwidth": recipe["experiment"]["parallel_bandwidth"],
                         "sample_rows": recipe["training"].get("sample_rows"), "model": recipe["model"]}
    stats = _json(root.processed(spec.name, day) / "stats.json")
    total_cpu = sum(costs.values())
    report = {
        "run_id": run.run_id, "state": str(run.state), "wall_seconds": round(wall, 1),
        "dagrun_timeout_seconds": timeout_seconds, "within_timeout": wall <= timeout_seconds,
        "cpu_seconds_by_stage": {k: round(v, 1) for k, v in costs.items()},
        "cpu_seconds": round(total_cpu, 1), "cpu_hours": round(total_cpu / 3600, 3),
        "tasks": tasks,
        "peak_rss_mb": {"in_process_tasks": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                        "largest_child": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)},
        "advice": recipe_budget,
        "search": {k: best.get(k) for k in ("observations", "failed", "training_seconds", "final_fit")},
        "chosen": (best.get("best") or {}).get("values"),
        "decision": {k: decision.get(k) for k in ("verdict", "reason")},
        "vocabulary": {c: s["vocab_size"] for c, s in stats.get("categorical", {}).items()},
        "splits": {name: s["rows"] for name, s in stats.get("splits", {}).items()},
        "oracle_auc": oracle_auc,
    }
    data = {"dataset": spec.name, "day": day.isoformat(), "rows": args.rows,
            "cardinality_scale": args.cardinality_scale, "seed": args.seed, "params": conf}
    path = write_report("day", report, data, args.out)
    if args.publish:
        write_report(f"day-{args.rows}", report, data, RESULTS)
    print("\n" + "=" * 72)
    print(f"{args.rows:,} rows, cardinality scale {args.cardinality_scale}: run {report['state']} in {wall:.0f}s "
          f"({wall / timeout_seconds:.0%} of the {timeout_seconds / 3600:.0f} h dagrun_timeout), "
          f"{total_cpu:,.0f} CPU-s = "
          f"{total_cpu / 3600:.2f} CPU-hours")
    for stage, seconds in costs.items():
        print(f"  {stage:<12} {seconds:>10,.0f} CPU-s")
    for task in tasks:
        print(f"  {task['task']:<22} {task['state']:<10} {task['wall_seconds']} s")
    print(f"advice: {recipe_budget}")
    print(f"decision: {report['decision']}; peak RSS {report['peak_rss_mb']} MB -> {path}")
    if report["state"] != "success":
        raise SystemExit("the DAG run did not succeed")


if __name__ == "__main__":
    main()
