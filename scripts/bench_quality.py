"""`make bench-quality`: each built-in model, with its default config and the trainer's defaults, against
the generator's oracle AUC after one epoch on a 1M-row training set. Writes var/bench/quality.json."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from scripts.benchdata import prepared_training_day  # noqa: E402
from sda.models import MODEL_NAMES, parse_model_config  # noqa: E402
from sda.train import TrainingConfig, train  # noqa: E402

DAY = dt.date(2026, 5, 1)
TARGET_GAP = {"dlrm": 0.01, "wide_deep": 0.015, "dcnv2": 0.015, "deepfm": 0.015}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    processed, oracle = prepared_training_day(args.work / "quality_data", DAY, args.train_rows)
    results = {}
    for name in MODEL_NAMES:
        result = train(parse_model_config({"name": name}), TrainingConfig(eval_every=None), [processed])
        auc = result.metrics.get("auc")
        results[name] = {"status": result.status, "auc": auc, "logloss": result.metrics.get("logloss"),
                         "gap_to_oracle": None if auc is None else round(oracle - auc, 4),
                         "target_gap": TARGET_GAP[name],
                         "met": auc is not None and oracle - auc <= TARGET_GAP[name],
                         "training_time": round(result.metrics["training_time"], 1),
                         "samples_per_second": round(result.metrics["samples_per_second"], 1)}
    report = {"benchmark": "quality", "train_rows": json.loads((processed / "stats.json").read_text())
              ["splits"]["train"]["rows"], "oracle_auc": oracle, "training": TrainingConfig().model_dump(),
              "models": results}
    out = args.work / "quality.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\noracle AUC {oracle:.4f} on {report['train_rows']} training rows, one epoch, default configs")
    for name, r in results.items():
        print(f"{name:<10} AUC {r['auc']:.4f}  gap {r['gap_to_oracle']:.4f} (target <= {r['target_gap']})  "
              f"{'met' if r['met'] else 'NOT met'}  {r['training_time']}s")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
