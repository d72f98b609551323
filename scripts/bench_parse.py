"""`make bench-parse`: how long the DAG folder takes to parse with 1 dataset spec and with 50.

One DAG per spec is built at parse time (dags/recsys_retrain.py), and Airflow's DAG processor parses the file
again every min_file_process_interval (30 s by default) and gives up after dagbag_import_timeout (30 s). Both
arms parse the same DAG folder in the same way: a fresh interpreter per parse, with the Airflow modules the
files import already loaded (as the DAG processor's parsing_pre_import_modules does), and the parse timed by
Airflow's own DagBag statistics (the sum of FileLoadStat.duration over the folder's files: their imports,
recdp/sda imports included).
The specs are copies of the shipped ones under other names (criteo and shop_clicks alternately), each with its
retrain: section. Writes docs/benchmarks/parse.json and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from scripts.benchreport import RESULTS, write_report  # noqa: E402

DATASETS = PROJECT_ROOT / "include" / "datasets"
IMPORT_TIMEOUT_SECONDS = 30.0  # Airflow's [core] dagbag_import_timeout default

PARSE = """
import json, time
import airflow.sdk, airflow.timetables.interval, airflow.providers.apache.spark.operators.spark_submit  # pre-imported
from airflow.dag_processing.dagbag import DagBag
started = time.perf_counter()
bag = DagBag(dag_folder={dags!r})
wall = time.perf_counter() - started
stats = bag.dagbag_stats  # one per file of the folder
print("RESULT " + json.dumps({{"parse_seconds": sum(s.duration.total_seconds() for s in stats), "wall_seconds": wall,
                               "files": len(stats), "dags": len(bag.dags), "tasks": sum(s.task_num for s in stats),
                               "errors": len(bag.import_errors)}}))
"""


def write_specs(folder: Path, count: int) -> None:
    sources = [DATASETS / "criteo.yaml", DATASETS / "shop_clicks.yaml"]
    for index in range(count):
        source = sources[index % 2]
        name = f"{source.stem}_{index:03d}"
        text = source.read_text().replace(f"name: {source.stem}", f"name: {name}", 1)
        (folder / f"{name}.yaml").write_text(text)


def parse_once(spec_dir: Path) -> dict:
    env = {**os.environ, "RECSYS_DATASETS_DIR": str(spec_dir)}
    script = PARSE.format(dags=str(PROJECT_ROOT / "dags"))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600,
                          cwd=PROJECT_ROOT)
    if done.returncode != 0:
        raise SystemExit(f"the parse failed:\n{done.stderr[-3000:]}")
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def measure(count: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"recsys-specs-{count}-") as folder:
        write_specs(Path(folder), count)
        runs = [parse_once(Path(folder)) for _ in range(repeats)]
    if any(run["dags"] != count or run["errors"] for run in runs):
        raise SystemExit(f"{count} specs did not give {count} DAGs: {runs}")
    seconds = [run["parse_seconds"] for run in runs]
    result = {"specs": count, "dags": runs[0]["dags"], "tasks": runs[0]["tasks"], "repeats": repeats,
              "parse_seconds": [round(s, 4) for s in seconds],
              "median_parse_seconds": round(statistics.median(seconds), 4)}
    print(f"{count:>3} spec(s): {result['dags']} DAGs, {result['tasks']} tasks, parse median "
          f"{result['median_parse_seconds']:.3f}s (runs {', '.join(f'{s:.3f}' for s in seconds)})")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", type=lambda text: [int(n) for n in text.split(",")], default=[1, 50],
                        help="comma-separated spec counts; the first is the baseline")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    arms = [measure(count, args.repeats) for count in args.specs]
    baseline, largest = arms[0], arms[-1]
    ratio = largest["median_parse_seconds"] / baseline["median_parse_seconds"]
    extra = largest["specs"] - baseline["specs"]
    per_spec = ((largest["median_parse_seconds"] - baseline["median_parse_seconds"]) / extra) if extra else 0.0
    report = {"arms": arms, "ratio_largest_to_baseline": round(ratio, 2),
              "seconds_per_extra_spec": round(per_spec, 4),
              "share_of_import_timeout": round(largest["median_parse_seconds"] / IMPORT_TIMEOUT_SECONDS, 4)}
    path = write_report("parse", report, {"dag_file": "dags/recsys_retrain.py", "spec_counts": args.specs,
                                          "specs": "copies of include/datasets/{criteo,shop_clicks}.yaml"}, args.out)
    print(f"{largest['specs']} specs parse in {ratio:.2f}x the time of {baseline['specs']}: "
          f"{per_spec * 1000:.1f} ms per extra spec, {report['share_of_import_timeout']:.1%} of the "
          f"{IMPORT_TIMEOUT_SECONDS:.0f}s dagbag_import_timeout; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
