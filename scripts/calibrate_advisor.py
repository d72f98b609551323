"""`make calibrate-advisor`: the measurements behind the advisor's learning-rate, batch and dropout rules.

Runs only on the advisor's calibration data (the Criteo spec generated with seed 7, day 2026-05-02, at
cardinality scales other than 1.0, as sda/advisors/knowledge.py says), never on make bench-hpo's held-out
settings. For each cardinality scale and training size, it trains the advised DLRM once per (batch size,
learning rate, dropout) of a grid, one epoch, and writes the validation AUC and training seconds of each to
docs/benchmarks/calibration.json.
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

CALIBRATION = {"dataset": "criteo", "seed": 7, "day": dt.date(2026, 5, 2)}  # the cardinality scales are arguments


def calibrate(processed: Path, grid: list[tuple[int, float, float]], label: str) -> dict:
    """The advised DLRM recipe for a processed day, then one epoch for each (batch size, learning rate,
    dropout) of the grid: the advised values and each run's AUC and training seconds."""
    recipe = advise(AdviceRequest.from_stats_file(processed / "stats.json", dataset="criteo", model="dlrm"))
    runs = []
    for batch, rate, dropout in grid:
        config = recipe.training.model_copy(update={"batch_size": batch, "learning_rate": rate, "eval_every": None})
        result = train(recipe.model.model_copy(update={"dropout": dropout}), config, [processed])
        auc = result.metrics.get("auc")
        runs.append({"batch_size": batch, "learning_rate": rate, "dropout": dropout, "status": result.status,
                     "auc": auc, "steps": result.metrics.get("steps"),
                     "training_seconds": round(result.metrics.get("training_time", 0.0), 2)})
        logging.info("%s, batch %d, lr %g, dropout %g: %s AUC %s in %.1fs", label, batch, rate, dropout,
                     result.status, f"{auc:.4f}" if auc is not None else "-", runs[-1]["training_seconds"])
    advised = {**recipe.training.model_dump(include={"batch_size", "learning_rate"}), "dropout": recipe.model.dropout}
    return {"advised": advised, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", default="20000,200000", help="comma-separated training sizes")
    parser.add_argument("--batch-sizes", default="64,128,256,1024")
    parser.add_argument("--learning-rates", default="0.0005,0.001,0.002,0.004")
    parser.add_argument("--dropouts", default="0.0")
    parser.add_argument("--cardinality-scales", default="0.01,0.1",
                        help="the calibration data's cardinality scales (never 1.0: a held-out setting's shape)")
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sizes = [int(x) for x in args.train_rows.split(",")]
    scales = [float(x) for x in args.cardinality_scales.split(",")]
    if 1.0 in scales:
        raise SystemExit("cardinality scale 1.0 is make bench-hpo's held-out Criteo shape: calibrate on another")
    grid = [(int(b), float(r), float(d)) for b in args.batch_sizes.split(",") for r in args.learning_rates.split(",")
            for d in args.dropouts.split(",")]
    results = []
    for scale in scales:
        for rows in sizes:
            processed, oracle = prepared_training_day(args.work / f"calibration_{rows}_c{scale:g}", CALIBRATION["day"],
                                                      rows, scale, CALIBRATION["dataset"], CALIBRATION["seed"])
            results.append({"cardinality_scale": scale, "train_rows": rows, "oracle_auc": oracle,
                            **calibrate(processed, grid, f"scale {scale:g}, {rows} rows")})
    out = write_report("calibration", {"model": "dlrm", "epochs": 1, "sizes": results},
                       {**CALIBRATION, "cardinality_scales": scales, "train_rows": sizes}, args.out)
    for size in results:
        print(f"\nscale {size['cardinality_scale']:g}, {size['train_rows']} training rows (oracle "
              f"{size['oracle_auc']:.4f}); advised {size['advised']}")
        for run in size["runs"]:
            shown = f"{run['auc']:.4f}" if run["auc"] is not None else run["status"]
            print(f"  batch {run['batch_size']:>5}  lr {run['learning_rate']:<8g} dropout "
                  f"{run['dropout']:<5g} AUC {shown}  {run['training_seconds']:.1f}s")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
