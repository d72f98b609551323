"""`make demo`: generate sample partitions, run the retraining DAG for one day on embedded defaults, summarise.

validate -> preprocess (spark-submit) -> advised recipe -> a small multi-metric experiment (4 trials)
-> the chosen trial against the champion on the day's holdout -> promotion in the MLflow registry.

Embedded defaults (set by the Makefile): AIRFLOW_HOME=var/airflow (SQLite), RECSYS_DATA=var/data,
Spark local[*] through the spark_default connection. Nothing to start by hand.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from recdp.costs import run_costs  # noqa: E402
from recdp.spec import load_spec  # noqa: E402
from recdp.storage import DataRoot, parse_day, qualified_run  # noqa: E402
from recdp.synth import SynthConfig, generate_day  # noqa: E402


def ensure_partitions(root: DataRoot, dataset: str, day: dt.date, rows: int) -> None:
    spec = load_spec(dataset)
    for offset in (1, 0):  # the day before too, so that a later run of it has a drift baseline
        partition_day = day - dt.timedelta(days=offset)
        if (root.raw(dataset, partition_day) / "_synth.json").is_file():
            continue
        summary = generate_day(spec, root, partition_day, SynthConfig(rows=rows))
        print(f"generated {dataset} day={partition_day}: {rows} rows, oracle AUC {summary['oracle_auc']:.4f}")


def run_dag(dataset: str, day: dt.date, conf: dict) -> tuple[str, dict[str, str]]:
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    dag = bag.dags[f"recsys_retrain__{dataset}"]  # one DAG per dataset spec
    # A fresh logical date per demo run, so a second `make demo` runs again instead of resuming.
    run = dag.test(logical_date=pendulum.now("UTC"), run_conf={"day": day.isoformat(), **conf})
    states: dict[str, list[str]] = {}
    for ti in sorted(run.get_task_instances(), key=lambda ti: ti.map_index):
        states.setdefault(ti.task_id, []).append(str(ti.state))
    return qualified_run(dag.dag_id, run.run_id), {task: ", ".join(values) for task, values in states.items()}


def summary(root: DataRoot, dataset: str, day: dt.date, run_id: str, states: dict[str, str], seconds: float) -> str:
    lines = ["", "=" * 72, f"recsys_retrain demo: {dataset} day={day} in {seconds:.0f}s", "-" * 72]
    order = ["partition_ready", "validate", "gate_dry_run", "ship_job", "preprocess", "monitor", "plan",
             "create_experiment", "run_trials", "select_best", "final_fit", "evaluate", "promote"]
    lines += [f"  {task:<18} {states.get(task, 'not run')}" for task in order]
    report = root.validation_report(dataset, day)
    if report:
        lines.append(f"validation: {report['status']}, {report['rows_valid']}/{report['rows_total']} rows valid, "
                     f"{report['bad_rows']} malformed; Data Docs: {report['data_docs']}")
    stats_path = root.processed(dataset, day) / "stats.json"
    if stats_path.is_file():
        stats = json.loads(stats_path.read_text())
        splits = ", ".join(f"{name} {s['rows']}" for name, s in stats["splits"].items())
        largest = sorted(stats["categorical"].items(), key=lambda item: -item[1]["vocab_size"])[:3]
        lines.append(f"processed: {stats['rows']} rows ({splits}), positive rate {stats['positive_rate']:.3f}, "
                     f"vocabulary v{stats['vocab_version']}")
        lines.append("largest tables: " + ", ".join(f"{c} {s['vocab_size']} ids ({s['coverage']:.1%} coverage)"
                                                     for c, s in largest))
        lines.append(f"outputs: {root.processed(dataset, day)}")
    lines += optimize_summary(root, run_id)
    costs = run_costs(root, dataset, day.isoformat(), run_id)
    if costs:
        lines.append(f"cost: {sum(costs.values()):.1f} CPU-s (" + ", ".join(f"{stage} {seconds:.1f}"
                                                                       for stage, seconds in costs.items()) + ")")
    synth = root.raw(dataset, day) / "_synth.json"
    if synth.is_file():
        lines.append(f"oracle AUC of the day (the ceiling of any model): "
                     f"{json.loads(synth.read_text())['oracle_auc']:.4f}")
    lines.append("=" * 72)
    return "\n".join(lines)


def optimize_summary(root: DataRoot, run_id: str) -> list[str]:
    run_dir = root.experiment_run(run_id)
    best_path = run_dir / "best.json"
    if not best_path.is_file():
        return []
    best = json.loads(best_path.read_text())
    lines = [f"mode {best.get('mode')}: {best.get('mode_reason')}",
             f"optimizer experiment {best['experiment']}: {best['observations']} trials "
             f"({best['failed']} failed), {best['training_seconds']:.0f}s of training"]
    for trial in sorted((run_dir / "trials").glob("trial-*/result.json")):
        result = json.loads(trial.read_text())
        metrics = result["metrics"]
        shown = (f"AUC {metrics['auc']:.4f}, {metrics['training_time']:.1f}s" if "auc" in metrics
                 else result["reason"])
        lines.append(f"  trial {result['suggestion']:>2} {result['status']:<7} {shown:<24} {result['assignments']}")
    chosen = best["best"]
    if chosen:
        lines.append(f"chosen: trial {chosen['suggestion']} (AUC {chosen['values']['auc']:.4f}, "
                     f"{chosen['values']['training_time']:.1f}s) of a Pareto set of {len(best['pareto'])}; "
                     f"model {chosen['model_path']}")
    else:
        lines.append(f"no trial chosen: {best['reason']}")
    lines.append(f"recipe: {run_dir / 'recipe.yaml'}; Pareto plot: {best.get('pareto_plot')}")
    decision_path = run_dir / "decision.json"
    if decision_path.is_file():
        decision = json.loads(decision_path.read_text())
        applied = decision.get("applied") or {}
        linear = decision.get("baseline")
        if linear:
            lines.append(f"linear baseline: AUC {linear['auc']:.4f} on the holdout against the challenger's "
                         f"{linear['challenger_auc']:.4f}"
                         + ("; it beats the challenger and is judged instead" if linear["stands_in"] else ""))
        lines.append(f"decision: {decision['verdict']} ({decision['reason']})"
                     + (f"; {applied['registered_model']} version {applied['version']} is the champion"
                        if applied.get("version") else ""))
        lines.append(f"  {decision_path}")
    lines.append(f"MLflow: .venv/bin/mlflow ui --backend-store-uri sqlite:///{root.mlflow() / 'mlflow.db'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="criteo")
    parser.add_argument("--day", default="2026-03-02")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--model", default="dlrm")
    parser.add_argument("--trials", type=int, default=4, help="the max_trials Param")
    parser.add_argument("--budget-seconds", type=float, default=120.0)
    args = parser.parse_args()
    started = time.monotonic()
    day = parse_day(args.day)
    root = DataRoot.from_env()
    root.root.mkdir(parents=True, exist_ok=True)
    Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True,
                   stdout=subprocess.DEVNULL)
    ensure_partitions(root, args.dataset, day, args.rows)
    run_id, states = run_dag(args.dataset, day, {"model": args.model, "max_trials": args.trials,
                                                 "budget_seconds": args.budget_seconds})
    print(summary(root, args.dataset, day, run_id, states, time.monotonic() - started))
    if any(state not in ("success", "skipped") for task in states.values() for state in task.split(", ")):
        raise SystemExit("the DAG run did not succeed: see the task logs above")


if __name__ == "__main__":
    main()
