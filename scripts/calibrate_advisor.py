"""`make calibrate-advisor`: the measurements behind the advisor's learning-rate and batch-size rules.

Runs only on the advisor's calibration data (the Criteo spec generated with seed 7 at cardinality scale 0.01,
day 2026-05-02, as sda/advisors/knowledge.py says), never on make bench-hpo's held-out settings. For each
training size, it trains the advised DLRM once per (batch size, learning rate) of a grid, one epoch, and
writes the validation AUC and training seconds of each to docs/benchmarks/calibration.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from scripts.benchdata import prepared_training_day  # noqa: E402
from scripts.benchreport import RESULTS, write_report  # noqa: E402
from sda.advisors import AdviceRequest, advise  # noqa: E402
from sda.train import train  # noqa: E402

CALIBRATION = {"dataset": "criteo", "seed": 7, "cardinality_scale": 0.01, "day": dt.date(2026, 5, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", default="20000,200000", help="comma-separated training sizes")
    parser.add_argument("--batch-sizes", default="64,128,256,1024")
    parser.add_argument("--learning-rates", default="0.0005,0.001,0.002,0.004")
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sizes = [int(x) for x in args.train_rows.split(",")]
    batches = [int(x) for x in args.batch_sizes.split(",")]
    rates = [float(x) for x in args.learning_rates.split(",")]
    results = []
    for rows in sizes:
        processed, oracle = prepared_training_day(args.work / f"calibration_{rows}", CALIBRATION["day"], rows,
                                                  CALIBRATION["cardinality_scale"], CALIBRATION["dataset"],
                                                  CALIBRATION["seed"])
        recipe = advise(AdviceRequest.from_stats_file(processed / "stats.json", dataset="criteo", model="dlrm"))
        runs = []
        for batch in batches:
            for rate in rates:
                config = recipe.training.model_copy(update={"batch_size": batch, "learning_rate": rate,
                                                            "eval_every": None})
                result = train(recipe.model, config, [processed])
                auc = result.metrics.get("auc")
                runs.append({"batch_size": batch, "learning_rate": rate, "status": result.status, "auc": auc,
                             "training_seconds": round(result.metrics.get("training_time", 0.0), 2),
                             "steps": result.metrics.get("steps")})
                logging.info("%d rows, batch %d, lr %g: %s AUC %s in %.1fs", rows, batch, rate, result.status,
                             f"{auc:.4f}" if auc is not None else "-", runs[-1]["training_seconds"])
        results.append({"train_rows": rows, "oracle_auc": oracle, "advised": {
            "batch_size": recipe.training.batch_size, "learning_rate": recipe.training.learning_rate}, "runs": runs})
    out = write_report("calibration", {"model": "dlrm", "epochs": 1, "sizes": results},
                       {**CALIBRATION, "train_rows": sizes}, args.out)
    for size in results:
        print(f"\n{size['train_rows']} training rows (oracle {size['oracle_auc']:.4f}); advised batch "
              f"{size['advised']['batch_size']}, lr {size['advised']['learning_rate']:g}")
        print("batch \\ lr " + " ".join(f"{r:>8g}" for r in rates))
        for batch in batches:
            cells = [next(r for r in size["runs"] if r["batch_size"] == batch and r["learning_rate"] == rate)
                     for rate in rates]
            print(f"{batch:>10} " + " ".join(f"{c['auc']:8.4f}" if c["auc"] is not None else f"{'-':>8}"
                                            for c in cells))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
