"""`make demo`: generate sample partitions, run the retraining DAG for one day on embedded defaults, summarise.

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

from recdp.spec import load_spec  # noqa: E402
from recdp.storage import DataRoot, parse_day  # noqa: E402
from recdp.synth import SynthConfig, generate_day  # noqa: E402


def ensure_partitions(root: DataRoot, dataset: str, day: dt.date, rows: int) -> None:
    spec = load_spec(dataset)
    for offset in (1, 0):  # the day before too, so that a later run of it has a drift baseline
        partition_day = day - dt.timedelta(days=offset)
        if (root.raw(dataset, partition_day) / "_synth.json").is_file():
            continue
        summary = generate_day(spec, root, partition_day, SynthConfig(rows=rows))
        print(f"generated {dataset} day={partition_day}: {rows} rows, oracle AUC {summary['oracle_auc']:.4f}")


def run_dag(dataset: str, day: dt.date) -> dict[str, str]:
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    dag = bag.dags["recsys_retrain"]
    # A fresh logical date per demo run, so a second `make demo` runs again instead of resuming.
    run = dag.test(logical_date=pendulum.now("UTC"), run_conf={"dataset": dataset, "day": day.isoformat()})
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def summary(root: DataRoot, dataset: str, day: dt.date, states: dict[str, str], seconds: float) -> str:
    lines = ["", "=" * 72, f"recsys_retrain demo: {dataset} day={day} in {seconds:.0f}s", "-" * 72]
    order = ["partition_ready", "validate", "gate_dry_run", "preprocess"]
    lines += [f"  {task:<16} {states.get(task, 'not run')}" for task in order]
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
    synth = root.raw(dataset, day) / "_synth.json"
    if synth.is_file():
        lines.append(f"oracle AUC of the day (the ceiling for the models of later stages): "
                     f"{json.loads(synth.read_text())['oracle_auc']:.4f}")
    lines.append("=" * 72)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="criteo")
    parser.add_argument("--day", default="2026-03-02")
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    started = time.monotonic()
    day = parse_day(args.day)
    root = DataRoot.from_env()
    root.root.mkdir(parents=True, exist_ok=True)
    Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True,
                   stdout=subprocess.DEVNULL)
    ensure_partitions(root, args.dataset, day, args.rows)
    states = run_dag(args.dataset, day)
    print(summary(root, args.dataset, day, states, time.monotonic() - started))
    if any(state != "success" for state in states.values()):
        raise SystemExit("the DAG run did not succeed: see the task logs above")


if __name__ == "__main__":
    main()
