"""`make bench-preprocess`: the Spark preprocessing job against its two single-process references.

Data: generated Criteo-format days (recdp.synth, seed 7) at full Criteo cardinalities by default (up to 10M
distinct values a column, Zipf; frequency threshold 2 as the spec says), 4 days of 5M rows (20M rows; a real
Criteo day holds about 45M). In one run, on the same rows:
  - spark:     one spark-submit of the job over all N days (local[*], JVM start included), shipped as the DAG
               ships it, from empty processed/ and vocab/ folders;
  - baseline:  scripts/baseline_preprocess.py, DLRM-style line by line, doing the same work (the same parse
               rules, hex to int, a vocabulary persisted across days);
  - limit:     scripts/limit_preprocess.py, the same work in one process with pyarrow and numpy (no Parquet,
               no persistent vocabulary, a whole day in memory): how fast the work can go here.
The outputs are compared (row counts, vocabulary sizes). Then, for memory against rows, the job alone on one
day of --memory-rows and on one day of --big-day-rows; and for cost against history, --small-days days of
--small-rows rows in one submit, with the time of each day from its stats.json.
Peak memory is the largest resident set of each process tree (JVM and Python workers), sampled every 100 ms.
Writes docs/benchmarks/preprocess.json and prints the ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from recdp.spec import load_spec  # noqa: E402
from recdp.storage import DataRoot  # noqa: E402
from scripts.benchdata import ensure_generated, generated_days, spark_submit_preprocess  # noqa: E402
from scripts.benchproc import memory_against_rows, timed  # noqa: E402
from scripts.benchreport import RESULTS, write_report  # noqa: E402

FIRST_DAY = dt.date(2026, 2, 1)
BIG_DAY = dt.date(2026, 1, 1)
FIRST_SMALL_DAY = dt.date(2025, 6, 1)


def fresh_outputs(data: DataRoot) -> None:
    for area in ("processed", "vocab"):
        shutil.rmtree(data.root / area, ignore_errors=True)


def spark_run(spec, data: DataRoot, days: list[dt.date], work: Path, name: str) -> dict:
    fresh_outputs(data)
    # The venv's bin first (spark-submit finds Spark through its python3), and its Python for the workers.
    env = {**os.environ, "RECSYS_DATA": str(data.root), "PYSPARK_PYTHON": sys.executable,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = timed(spark_submit_preprocess(spec, days), env, work / f"{name}.log")
    stats = [json.loads((data.processed(spec.name, day) / "stats.json").read_text()) for day in days]
    result.pop("last_line")
    return {**result, "rows": sum(s["rows_read"] for s in stats), "well_formed_rows": sum(s["rows"] for s in stats),
            "vocabulary_size": sum(v["vocab_size"] - 2 for v in stats[-1]["categorical"].values()),
            "day_seconds": [s["seconds"] for s in stats]}


def script_run(script: str, data: DataRoot, days: list[dt.date], work: Path) -> dict:
    out = work / f"{script}_out"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, str(PROJECT_ROOT / "scripts" / f"{script}_preprocess.py"), "--data", str(data.root),
               "--out", str(out), *[x for day in days for x in ("--day", day.isoformat())]]
    result = timed(command, dict(os.environ), work / f"{script}.log")
    summary = json.loads(result.pop("last_line"))
    shutil.rmtree(out, ignore_errors=True)
    return {**result, "rows": summary["rows"] + summary["bad_rows"], "well_formed_rows": summary["rows"],
            "vocabulary_size": summary["vocabulary_size"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows a day")
    parser.add_argument("--memory-rows", type=int, default=2_000_000,
                        help="rows of the day the big day's peak memory is compared with")
    parser.add_argument("--big-day-rows", type=int, default=20_000_000, help="0 skips the memory-against-rows run")
    parser.add_argument("--small-days", type=int, default=100, help="0 skips the cost-against-history run")
    parser.add_argument("--small-rows", type=int, default=500)
    parser.add_argument("--cardinality-scale", type=float, default=1.0, help="1.0: Criteo's full cardinalities")
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench" / "preprocess")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    spec = load_spec("criteo")
    data, days = generated_days(spec, args.work, FIRST_DAY, args.days, args.rows, args.cardinality_scale)

    arms = {}
    print("spark ...", flush=True)
    arms["spark"] = spark_run(spec, data, days, args.work, "spark")
    print("baseline ...", flush=True)
    arms["baseline"] = script_run("baseline", data, days, args.work)
    print("limit ...", flush=True)
    arms["limit"] = script_run("limit", data, days, args.work)
    for result in arms.values():
        result["rows_per_second"] = round(result["rows"] / result["seconds"], 1)
    same_rows = len({a["well_formed_rows"] for a in arms.values()}) == 1
    same_vocabulary = len({a["vocabulary_size"] for a in arms.values()}) == 1

    memory = {}
    if args.big_day_rows:
        big = DataRoot((args.work / "big").resolve())
        usual, usual_day = generated_days(spec, args.work, FIRST_DAY, 1, args.memory_rows, args.cardinality_scale)
        memory = memory_against_rows(
            "spark", args.big_day_rows,
            lambda: ensure_generated(spec, big, BIG_DAY, args.big_day_rows, args.cardinality_scale),
            lambda: spark_run(spec, usual, usual_day, args.work, "spark_small_day"),
            lambda: spark_run(spec, big, [BIG_DAY], args.work, "spark_big_day"))

    history = {}
    if args.small_days:
        small = DataRoot((args.work / "small").resolve())
        small_days = [FIRST_SMALL_DAY + dt.timedelta(days=i) for i in range(args.small_days)]
        for day in small_days:
            ensure_generated(spec, small, day, args.small_rows, args.cardinality_scale)
        print(f"spark, {args.small_days} days of {args.small_rows} rows in one submit ...", flush=True)
        run = spark_run(spec, small, small_days, args.work, "spark_small_days")
        tenth = max(1, args.small_days // 10)
        # The first day also pays the Python workers' start and the JIT's warm-up: it is left out.
        first, last = run["day_seconds"][1:tenth + 1], run["day_seconds"][-tenth:]
        history = {"days": args.small_days, "rows_per_day": args.small_rows, "seconds": run["seconds"],
                   "peak_rss_mb": run["peak_rss_mb"], "day_seconds": run["day_seconds"],
                   "first_tenth_mean_day_seconds_after_day_1": round(sum(first) / len(first), 3),
                   "last_tenth_mean_day_seconds": round(sum(last) / len(last), 3)}

    report = {
        "days": args.days, "rows_per_day": args.rows, **arms,
        "outputs_agree": {"well_formed_rows": same_rows, "vocabulary_size": same_vocabulary,
                          "splits": "differ by design: the job hashes the line with xxhash64, the baseline with "
                                    "CRC32, the limit line the row position"},
        "spark_vs_baseline_rows_per_second": round(arms["spark"]["rows_per_second"]
                                                   / arms["baseline"]["rows_per_second"], 2),
        "spark_vs_limit_rows_per_second": round(arms["spark"]["rows_per_second"]
                                                / arms["limit"]["rows_per_second"], 2),
        "memory_against_rows": memory, "cost_against_history": history,
    }
    out = write_report("preprocess", report, {
        "generator": "recdp.synth, criteo spec, seed 7", "cardinality_scale": args.cardinality_scale,
        "rows": args.days * args.rows, "memory_rows": args.memory_rows, "big_day_rows": args.big_day_rows,
        "small_days": args.small_days, "small_rows": args.small_rows}, args.out)

    print(f"\n{'arm':<10}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'peak MB':>10}{'vocabulary':>12}")
    for name, result in arms.items():
        print(f"{name:<10}{result['rows']:>12,}{result['seconds']:>10}{result['rows_per_second']:>12,.0f}"
              f"{result['peak_rss_mb']:>10,.0f}{result['vocabulary_size']:>12,}")
    print(f"\nspark / baseline rows per second: {report['spark_vs_baseline_rows_per_second']}x (target 10x); "
          f"spark / limit: {report['spark_vs_limit_rows_per_second']}x (target 0.5x); outputs agree: "
          f"rows {same_rows}, vocabulary {same_vocabulary}")
    if memory:
        print(f"spark peak memory, {memory['big_day']['rows']:,} rows vs {memory['small_day']['rows']:,}: "
              f"{memory['peak_memory_ratio_big_vs_small']}x (target at most 1.2x)")
        for day in ("small_day", "big_day"):
            parts = ", ".join(f"{kind} {mb:,.0f} MB" for kind, mb in memory[day]["peak_rss_mb_by_process"].items())
            print(f"  at the {day.replace('_', ' ')}'s peak: {parts}")
    if history:
        print(f"{history['days']} days of {history['rows_per_day']} rows in one submit: {history['seconds']} s "
              f"(target under 60 s); mean day {history['first_tenth_mean_day_seconds_after_day_1']} s in the first "
              f"tenth (after day 1), "
              f"{history['last_tenth_mean_day_seconds']} s in the last")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
