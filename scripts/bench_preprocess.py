"""`make bench-preprocess`: the Spark preprocessing job against a single-process DLRM-style baseline.

Generates N days (default 5 x 1M rows) once under var/bench/data, then in one run times:
  - spark:          one spark-submit of recdp/jobs/preprocess.py over all N days (local[*]),
  - spark_one_day:  the same job over the first day only (does peak memory grow with rows?),
  - baseline:       scripts/baseline_preprocess.py over all N days (line-by-line parse, dict categorify).
Peak memory is the largest resident set of each process tree, sampled every 100 ms.
Writes var/bench/preprocess.json and prints the ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from recdp.spec import load_spec  # noqa: E402
from recdp.storage import DataRoot  # noqa: E402
from scripts.benchdata import ensure_generated, spark_submit_preprocess  # noqa: E402

FIRST_DAY = dt.date(2026, 2, 1)


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def timed(command: list[str], env: dict[str, str], log_path: Path) -> dict:
    """Run a command; return wall seconds and the peak RSS of its process tree."""
    started = time.monotonic()
    with open(log_path, "w") as log:
        child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
        process, peak, done = psutil.Process(child.pid), 0, threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss(process))
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = child.wait()
        done.set()
        sampler.join()
    if code != 0:
        raise SystemExit(f"{' '.join(command[:3])} ... failed with exit code {code}; see {log_path}")
    return {"seconds": round(time.monotonic() - started, 2), "peak_rss_mb": round(peak / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench")
    args = parser.parse_args()
    spec = load_spec("criteo")
    data = DataRoot((args.work / "data").resolve())
    days = [FIRST_DAY + dt.timedelta(days=i) for i in range(args.days)]
    for day in days:
        ensure_generated(spec, data, day, args.rows)
    env = {**os.environ, "RECSYS_DATA": str(data.root)}
    day_args = [x for day in days for x in ("--day", day.isoformat())]

    def fresh_outputs() -> None:
        for area in ("processed", "vocab"):
            shutil.rmtree(data.root / area, ignore_errors=True)

    rows = args.days * args.rows
    results = {}
    fresh_outputs()
    print(f"spark: {args.days} days x {args.rows} rows ...", flush=True)
    results["spark"] = {"rows": rows, **timed(spark_submit_preprocess(spec, days), env, args.work / "spark.log")}
    fresh_outputs()
    print("spark, first day only ...", flush=True)
    results["spark_one_day"] = {"rows": args.rows,
                                **timed(spark_submit_preprocess(spec, days[:1]), env,
                                        args.work / "spark_one_day.log")}
    print("baseline ...", flush=True)
    baseline_out = args.work / "baseline_out"
    results["baseline"] = {"rows": rows, **timed(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "baseline_preprocess.py"), "--data", str(data.root),
         "--out", str(baseline_out), *day_args], env, args.work / "baseline.log")}
    shutil.rmtree(baseline_out, ignore_errors=True)
    for result in results.values():
        result["rows_per_second"] = round(result["rows"] / result["seconds"], 1)
    report = {
        "benchmark": "preprocess",
        "machine": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
        "days": args.days,
        "rows_per_day": args.rows,
        **results,
        "speedup_rows_per_second": round(results["spark"]["rows_per_second"]
                                         / results["baseline"]["rows_per_second"], 2),
        "spark_peak_memory_growth_n_days_vs_one": round(results["spark"]["peak_rss_mb"]
                                                        / results["spark_one_day"]["peak_rss_mb"], 2),
    }
    out = args.work / "preprocess.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\n{'run':<15}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'peak MB':>10}")
    for name, result in results.items():
        print(f"{name:<15}{result['rows']:>12}{result['seconds']:>10}{result['rows_per_second']:>12}"
              f"{result['peak_rss_mb']:>10}")
    print(f"\nspark / baseline rows per second: {report['speedup_rows_per_second']}x; "
          f"spark peak memory, {args.days} days vs 1 day: {report['spark_peak_memory_growth_n_days_vs_one']}x")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
