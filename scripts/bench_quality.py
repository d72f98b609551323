"""`make bench-quality`: each built-in model, with its default config and the trainer's defaults, against
the generator's oracle AUC after one epoch on a 1M-row training set, at each cardinality scale asked for
(default: full Criteo cardinalities, 1.0, and 0.01). Writes docs/benchmarks/quality.json."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from scripts.benchdata import prepared_training_day  # noqa: E402
from scripts.benchreport import scale_arguments, write_report  # noqa: E402
from sda.models import parse_model_config  # noqa: E402
from sda.train import TrainingConfig, train  # noqa: E402

DAY = dt.date(2026, 5, 1)
TARGET_GAP = {"dlrm": 0.01, "wide_deep": 0.015, "dcnv2": 0.015, "deepfm": 0.015}
# Measured for their throughput (the registry's samples_per_second) and AUC, without a target.
MEASURED = ("logistic",)


def quality_at_scale(work: Path, train_rows: int, scale: float, models: list[str]) -> dict:
    processed, oracle = prepared_training_day(work / f"quality_data_scale_{scale:g}", DAY, train_rows, scale)
    stats = json.loads((processed / "stats.json").read_text())
    results = {}
    for name in models:
        result = train(parse_model_config({"name": name}), TrainingConfig(eval_every=None), [processed])
        auc = result.metrics.get("auc")
        target = TARGET_GAP.get(name)
        results[name] = {"status": result.status, "auc": auc, "logloss": result.metrics.get("logloss"),
                         "gap_to_oracle": None if auc is None else round(oracle - auc, 4),
                         "target_gap": target,
                         "met": None if target is None else auc is not None and oracle - auc <= target,
                         "training_time": round(result.metrics["training_time"], 1),
                         "samples_per_second": round(result.metrics["samples_per_second"], 1),
                         "model_parameters": result.metrics.get("model_parameters")}
    return {"cardinality_scale": scale, "train_rows": stats["splits"]["train"]["rows"], "oracle_auc": oracle,
            "freq_threshold": stats["freq_threshold"],
            "embedding_rows": sum(c["vocab_size"] for c in stats["categorical"].values()), "models": results}


def main() -> None:
    parser = scale_arguments(__doc__.splitlines()[0], train_rows=1_000_000)
    parser.add_argument("--models", type=lambda text: text.split(","), default=list(TARGET_GAP),
                        help=f"comma-separated; default the deep models with targets; also {', '.join(MEASURED)}")
    parser.add_argument("--name", default="quality", help="the report's name (<out>/<name>.json)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    scales = args.cardinality_scales
    results = [quality_at_scale(args.work, args.train_rows, scale, args.models) for scale in scales]
    out = write_report(args.name, {"training": TrainingConfig().model_dump(), "scales": results},
                       {"generator": "recdp.synth, criteo spec, seed 7", "train_rows": args.train_rows,
                        "cardinality_scales": scales}, args.out)
    for result in results:
        print(f"\nscale {result['cardinality_scale']:g}: oracle AUC {result['oracle_auc']:.4f} on "
              f"{result['train_rows']} training rows, {result['embedding_rows']:,} embedding rows, one epoch")
        for name, r in result["models"].items():
            verdict = "no target" if r["met"] is None else "met" if r["met"] else "NOT met"
            print(f"{name:<10} AUC {r['auc']:.4f}  gap {r['gap_to_oracle']:.4f} (target <= {r['target_gap']})  "
                  f"{verdict}  {r['training_time']}s, {r['samples_per_second']:,.0f} samples/s")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
