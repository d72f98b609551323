"""`make bench-validate`: streamed GX validation against GX's documented pandas way, on the same days.

Data: the generated Criteo-format days of bench-preprocess (recdp.synth, seed 7; same folders, so one
generation serves both), at full Criteo cardinalities by default. In one run, on the same rows:
  - streamed:  `python -m recdp.validate` over the N days in one process (as a backfill would run it): one
               pass of Arrow batches through the parser, the suite's exact metrics judged by GX, bounded drift
               sketches, Data Docs and reports written;
  - classic:   scripts/classic_validate.py over the same days in one process: the same parser and suite, each
               whole day in a pandas DataFrame (categoricals as pandas categories) under a GX checkpoint, the
               drift profile exact from the whole table. It writes no Data Docs (less work than the streamed arm).
Both arms start from empty validation/ and quarantine/ folders; day k's drift is against day k-1 in both.
The verdicts are compared expectation by expectation (success and unexpected count), and the drift figures
(the sketches' against the exact ones). Then, for memory against rows, the streamed arm alone on one day of
--rows and one of --big-day-rows. Peak memory is the largest resident set of the process, sampled every 100 ms.
Writes docs/benchmarks/validate.json and prints the ratios.
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
from recdp.storage import VALIDATION_REPORT, DataRoot  # noqa: E402
from scripts.bench_preprocess import BIG_DAY, FIRST_DAY  # noqa: E402
from scripts.benchdata import ensure_generated, generated_days  # noqa: E402
from scripts.benchproc import memory_against_rows, timed  # noqa: E402
from scripts.benchreport import RESULTS, write_report  # noqa: E402

ROWS_PER_SECOND_TARGET = 250_000
PEAK_MB_TARGET = 2048


def fresh_reports(data: DataRoot) -> None:
    for area in ("validation", "quarantine"):
        shutil.rmtree(data.root / area, ignore_errors=True)


def streamed_run(spec, data: DataRoot, days: list[dt.date], work: Path, name: str) -> dict:
    fresh_reports(data)
    command = [sys.executable, "-m", "recdp.validate", "--dataset", spec.name, "--data", str(data.root),
               *[x for day in days for x in ("--day", day.isoformat())]]
    result = timed(command, {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, work / f"{name}.log")
    result.pop("last_line")
    reports = {day.isoformat(): json.loads((data.validation(spec.name, day) / VALIDATION_REPORT).read_text())
               for day in days}
    return {**result, "rows": sum(r["rows_total"] for r in reports.values()),
            "in_process_seconds": round(sum(r["seconds"] for r in reports.values()), 2), "reports": reports}


def classic_run(spec, data: DataRoot, days: list[dt.date], work: Path) -> dict:
    fresh_reports(data)
    command = [sys.executable, str(PROJECT_ROOT / "scripts" / "classic_validate.py"), "--dataset", spec.name,
               "--data", str(data.root), *[x for day in days for x in ("--day", day.isoformat())]]
    result = timed(command, dict(os.environ), work / "classic.log")
    summary = json.loads(result.pop("last_line"))
    return {**result, "rows": summary["rows"], "days": summary["days"]}


def compare(streamed: dict, classic: dict) -> dict:
    """Verdicts must agree exactly; drift figures are the sketches' against the exact ones."""
    verdict_mismatches, drift_gaps = [], {}
    for day, document in streamed["reports"].items():
        reference = classic["days"][day]
        for check in document["checks"]:
            key = f"{check['check']}:{check['column']}"
            if key in reference["verdicts"]:
                expected = reference["verdicts"][key]
                ours = {"success": check["success"], "unexpected_count": check["details"].get("unexpected_count")}
                if ours != expected:
                    verdict_mismatches.append({"day": day, "check": key, "streamed": ours, "classic": expected})
            elif check["check"].startswith("drift_"):
                kind = check["check"].removeprefix("drift_").removesuffix("_at_most")
                exact = reference["drift"].get(f"{kind}:{check['column']}")
                if exact is not None:
                    drift_gaps[f"{day}:{kind}:{check['column']}"] = abs(check["details"]["observed_value"] - exact)
    return {"verdicts_compared": sum(len(d["verdicts"]) for d in classic["days"].values()),
            "verdict_mismatches": verdict_mismatches,
            "drift_figures_compared": len(drift_gaps),
            "drift_max_abs_difference": round(max(drift_gaps.values(), default=0.0), 6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--big-day-rows", type=int, default=20_000_000, help="0 skips the memory-against-rows run")
    parser.add_argument("--cardinality-scale", type=float, default=1.0, help="1.0: Criteo's full cardinalities")
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench" / "preprocess",
                        help="bench-preprocess's folder: its generated days serve here too")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    spec = load_spec("criteo")
    data, days = generated_days(spec, args.work, FIRST_DAY, args.days, args.rows, args.cardinality_scale)

    print("streamed ...", flush=True)
    streamed = streamed_run(spec, data, days, args.work, "validate_streamed")
    print("classic (GX on pandas) ...", flush=True)
    classic = classic_run(spec, data, days, args.work)
    agreement = compare(streamed, classic)
    arms = {"streamed": streamed, "classic": classic}
    for result in arms.values():
        result["rows_per_second"] = round(result["rows"] / result["seconds"], 1)
    streamed["in_process_rows_per_second"] = round(streamed["rows"] / streamed["in_process_seconds"], 1)

    memory = {}
    if args.big_day_rows:
        big = DataRoot((args.work / "big").resolve())
        memory = memory_against_rows(
            "streamed", args.big_day_rows,
            lambda: ensure_generated(spec, big, BIG_DAY, args.big_day_rows, args.cardinality_scale),
            lambda: streamed_run(spec, data, days[:1], args.work, "validate_small_day"),
            lambda: streamed_run(spec, big, [BIG_DAY], args.work, "validate_big_day"))
        for result in (memory["small_day"], memory["big_day"]):
            result.pop("reports")
            result["in_process_rows_per_second"] = round(result["rows"] / result["in_process_seconds"], 1)
    streamed.pop("reports")
    classic.pop("days")

    report = {
        "days": args.days, "rows_per_day": args.rows, **arms, "outputs_agree": agreement,
        "streamed_vs_classic_rows_per_second": round(streamed["rows_per_second"] / classic["rows_per_second"], 2),
        "streamed_vs_classic_peak_memory": round(streamed["peak_rss_mb"] / classic["peak_rss_mb"], 2),
        "memory_against_rows": memory,
        "targets": {"rows_per_second": ROWS_PER_SECOND_TARGET, "peak_rss_mb": PEAK_MB_TARGET,
                    "peak_memory_ratio_big_vs_small": 1.2},
    }
    out = write_report("validate", report, {
        "generator": "recdp.synth, criteo spec, seed 7", "cardinality_scale": args.cardinality_scale,
        "rows": args.days * args.rows, "big_day_rows": args.big_day_rows}, args.out)

    print(f"\n{'arm':<10}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'peak MB':>10}")
    for name, result in arms.items():
        print(f"{name:<10}{result['rows']:>12,}{result['seconds']:>10}{result['rows_per_second']:>12,.0f}"
              f"{result['peak_rss_mb']:>10,.0f}")
    print(f"\nstreamed / classic rows per second: {report['streamed_vs_classic_rows_per_second']}x; peak memory "
          f"{report['streamed_vs_classic_peak_memory']}x. Streamed, process start and GX import included: "
          f"{streamed['rows_per_second']:,.0f} rows/s ({streamed['in_process_rows_per_second']:,.0f} inside "
          f"validate_partition; target {ROWS_PER_SECOND_TARGET:,}), peak {streamed['peak_rss_mb']:,.0f} MB "
          f"(target under {PEAK_MB_TARGET:,})")
    print(f"verdicts: {agreement['verdicts_compared']} compared, {len(agreement['verdict_mismatches'])} differ; "
          f"drift: {agreement['drift_figures_compared']} figures, largest gap sketch vs exact "
          f"{agreement['drift_max_abs_difference']}")
    if memory:
        print(f"streamed peak memory, {memory['big_day']['rows']:,} rows vs {memory['small_day']['rows']:,}: "
              f"{memory['peak_memory_ratio_big_vs_small']}x (target at most 1.2x); big day "
              f"{memory['big_day']['rows_per_second']:,.0f} rows/s, peak {memory['big_day']['peak_rss_mb']:,.0f} MB")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
