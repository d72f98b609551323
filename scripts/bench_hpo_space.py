"""`make bench-hpo-space`: how much faster any search could make the advised DLRM at an equal AUC.

make bench-hpo asks multi-metric search to choose a model that trains 1.25x faster than AUC-only search
does, at an AUC no more than 0.002 lower. Both searches draw from the advisor's space, and both start from
the advised point. This measures that space's own ceiling on a held-out setting of make bench-hpo: every
combination of its discrete speed knobs (batch size, top MLP width) plus embedding dims the space does not
search, each at the learning rate the advisor's rule gives its batch, trained --rounds times in interleaved
order (machine-speed drift falls on every configuration alike). It reports, per configuration, the median
AUC and training seconds, and the configurations within the tolerance of the best AUC: how much faster the
fastest of them trains than the slowest bounds what choosing by speed can gain over choosing by AUC among
models of equal AUC. Nothing is tuned on it.
Writes docs/benchmarks/hpo-space.json.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from scripts.bench_hpo import HELD_OUT, warm_up  # noqa: E402
from scripts.benchdata import prepared_training_day  # noqa: E402
from scripts.benchreport import RESULTS, write_report  # noqa: E402
from sda.advisors import AdviceRequest, advise, knowledge  # noqa: E402
from sda.train import train  # noqa: E402


def configurations(recipe, train_rows: int, dims: list[int]) -> list[dict]:
    """Every (batch size, top MLP, embedding dim) of the space's grids and the extra dims."""
    space = {p.name: p for p in recipe.experiment.parameters}
    batches = space["batch_size"].grid if "batch_size" in space else [recipe.training.batch_size]
    widths = [value.name for value in space["top_mlp"].categorical_values]
    return [{"batch_size": int(batch), "top_mlp": width, "embedding_dim": dim,
             "learning_rate": knowledge.learning_rate_for(int(batch), train_rows // int(batch))}
            for batch, width, dim in itertools.product(batches, widths, dims)]


def run(recipe, processed: Path, configuration: dict) -> dict:
    dim = configuration["embedding_dim"]
    model = recipe.model.model_copy(update={
        "embedding_dim": dim, "bottom_mlp": (*recipe.model.bottom_mlp[:-1], dim),
        "top_mlp": tuple(int(w) for w in configuration["top_mlp"].split("-")), "dropout": 0.0})
    training = recipe.training.model_copy(update={"batch_size": configuration["batch_size"],
                                                  "learning_rate": configuration["learning_rate"],
                                                  "eval_every": None})
    result = train(type(model).model_validate(model.model_dump()), training, [processed])
    return {"auc": result.metrics.get("auc"), "seconds": result.metrics["training_time"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", default="criteo", help="the dataset of a HELD_OUT setting of bench_hpo")
    parser.add_argument("--dims", default="", help="embedding dims besides the advised one (e.g. 4,8)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=knowledge.SELECTION_AUC_TOLERANCE)
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    setting = next(s for s in HELD_OUT if s.dataset == args.setting)
    processed, oracle = prepared_training_day(args.work / f"hpo_data_{setting.dataset}_s{setting.seed}",
                                              setting.day, setting.train_rows, setting.cardinality_scale,
                                              setting.dataset, setting.seed)
    recipe = advise(AdviceRequest.from_stats_file(processed / "stats.json", dataset=setting.dataset, model="dlrm"))
    dims = sorted({int(d) for d in args.dims.split(",") if d} | {recipe.model.embedding_dim})
    grid = configurations(recipe, setting.train_rows, dims)
    advised = {"batch_size": recipe.training.batch_size, "top_mlp": "-".join(map(str, recipe.model.top_mlp)),
               "embedding_dim": recipe.model.embedding_dim}
    warm_up(processed)
    measured: list[list[dict]] = [[] for _ in grid]
    for round_ in range(args.rounds):
        order = range(len(grid)) if round_ % 2 == 0 else reversed(range(len(grid)))  # drift falls on all alike
        for index in order:
            measured[index].append(run(recipe, processed, grid[index]))
            logging.info("round %d, %s: AUC %.4f in %.2fs", round_, grid[index], measured[index][-1]["auc"] or 0,
                         measured[index][-1]["seconds"])
    rows = []
    for configuration, runs in zip(grid, measured, strict=True):
        aucs = [r["auc"] for r in runs if r["auc"] is not None]
        rows.append({**configuration, "auc": statistics.median(aucs) if aucs else None,
                     "seconds": statistics.median(r["seconds"] for r in runs), "runs": runs})
    done = [r for r in rows if r["auc"] is not None]
    best = max(done, key=lambda r: r["auc"])
    point = next(r for r in rows if all(r[k] == v for k, v in advised.items()))
    equal = sorted((r for r in done if best["auc"] - r["auc"] <= args.tolerance), key=lambda r: r["seconds"])
    # Two selections among models of equal AUC (within the tolerance of the best) differ in speed by at most
    # the slowest of them over the fastest: the most that choosing by speed can gain over choosing by AUC.
    report = {"setting": {"name": setting.name, "dataset": setting.dataset, "seed": setting.seed,
                          "cardinality_scale": setting.cardinality_scale, "train_rows": setting.train_rows},
              "oracle_auc": oracle, "rounds": args.rounds, "tolerance": args.tolerance, "advised": point,
              "best": best, "configurations": rows,
              "equal_auc": [{k: r[k] for k in ("batch_size", "top_mlp", "embedding_dim", "auc", "seconds")}
                            for r in equal],
              "equal_auc_speed_range": equal[-1]["seconds"] / equal[0]["seconds"],
              "fastest_equal_vs_advised": point["seconds"] / equal[0]["seconds"]}
    out = write_report("hpo-space", report, {"setting": report["setting"]}, args.out)
    print(f"\n{setting.name}: {setting.train_rows} training rows, oracle AUC {oracle:.4f}; median of {args.rounds} "
          "interleaved rounds, learning rate by the advisor's rule")
    print(f"{'batch':>6} {'top MLP':>8} {'dim':>4} {'AUC':>7} {'seconds':>8}")
    for r in sorted(rows, key=lambda r: r["seconds"]):
        mark = " (advised)" if r is point else " (best)" if r is best else ""
        auc = f"{r['auc']:.4f}" if r["auc"] is not None else "failed"
        print(f"{r['batch_size']:>6} {r['top_mlp']:>8} {r['embedding_dim']:>4} {auc:>7} {r['seconds']:>8.2f}{mark}")
    print(f"{len(equal)} configuration(s) within {args.tolerance} AUC of the best: the slowest trains "
          f"{report['equal_auc_speed_range']:.2f}x as long as the fastest (batch {equal[0]['batch_size']}, top MLP "
          f"{equal[0]['top_mlp']}, dim {equal[0]['embedding_dim']}), which trains "
          f"{report['fastest_equal_vs_advised']:.2f}x as fast as the advised point")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
