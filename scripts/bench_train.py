"""`make bench-train`: this project's trainer against a loop in the style of Meta's DLRM reference.

Both train DLRM with the architecture of the reference's Criteo Kaggle benchmark (embedding 16, bottom MLP
13-512-256-64-16, top MLP 512-256-1) for one epoch on the same generated data (default 2M training rows):
  (a) baseline: mini-batch 128, SGD lr 0.1, per-batch NumPy indexing, one nn.EmbeddingBag per table fed
      with offsets, one thread of data loading, as dlrm_s_pytorch.py does;
  (b) project: sda.train with fused embedding tables, sparse embedding gradients, Adam (SparseAdam on the
      tables) and large batches.
Reports samples/s, training seconds until each reaches the baseline's final validation AUC, final AUC and
logloss, and the ratio of times to equal AUC. Writes var/bench/train.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import log_loss, roc_auc_score
from torch import nn

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from recdp.shards import read_shards  # noqa: E402
from scripts.benchdata import prepared_training_day  # noqa: E402
from sda.models import parse_model_config  # noqa: E402
from sda.train import TrainingConfig, train  # noqa: E402

DAY = dt.date(2026, 4, 1)
ARCHITECTURE = {"name": "dlrm", "embedding_dim": 16, "bottom_mlp": [512, 256, 64, 16], "top_mlp": [512, 256]}


class ReferenceDLRM(nn.Module):
    """DLRM as the reference builds it: EmbeddingBag per table, dot interaction, sigmoid output."""

    def __init__(self, n_dense: int, sizes: list[int]) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.EmbeddingBag(n, 16, mode="sum", sparse=True) for n in sizes)
        for table, n in zip(self.embeddings, sizes, strict=True):
            nn.init.uniform_(table.weight, -np.sqrt(1 / n), np.sqrt(1 / n))
        layers, width = [], n_dense
        for size in (512, 256, 64, 16):
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.bottom = nn.Sequential(*layers)
        features = len(sizes) + 1
        self.li = torch.tensor([i for i in range(features) for j in range(i)])
        self.lj = torch.tensor([j for i in range(features) for j in range(i)])
        top, width = [], 16 + len(self.li)
        for size in (512, 256):
            top += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.top = nn.Sequential(*top, nn.Linear(width, 1), nn.Sigmoid())

    def forward(self, dense, offsets, indices):
        x = self.bottom(dense)
        embedded = [table(indices[k], offsets[k]) for k, table in enumerate(self.embeddings)]
        t = torch.cat([x] + embedded, dim=1).view(x.shape[0], -1, 16)
        z = torch.bmm(t, t.transpose(1, 2))[:, self.li, self.lj]
        return self.top(torch.cat([x, z], dim=1)).squeeze(1)


def run_reference(train_dir: Path, valid_dir: Path, batch_size: int = 128, lr: float = 0.1) -> dict:
    train_shards, valid_shards = read_shards(train_dir), read_shards(valid_dir)
    sizes = [int(train_shards.header.table_sizes[c]) for c in train_shards.header.categorical_columns]
    torch.manual_seed(0)
    model = ReferenceDLRM(train_shards.dense.shape[1], sizes)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.BCELoss()
    # The reference keeps the day in memory as arrays and indexes them per batch.
    dense_all, cat_all, label_all = (np.asarray(train_shards.dense), np.asarray(train_shards.cat),
                                     np.asarray(train_shards.label))
    order = np.random.default_rng(0).permutation(len(label_all))
    started, n = time.monotonic(), len(label_all)
    for step, s in enumerate(range(0, n, batch_size)):
        idx = order[s:s + batch_size]
        dense = torch.tensor(dense_all[idx])
        cat = torch.tensor(cat_all[idx].astype(np.int64))
        indices = [cat[:, k] for k in range(cat.shape[1])]
        offsets = [torch.arange(len(idx)) for _ in range(cat.shape[1])]
        optimizer.zero_grad()
        loss = loss_fn(model(dense, offsets, indices), torch.tensor(label_all[idx]))
        loss.backward()
        optimizer.step()
        if step % 2000 == 0:
            rate = s / max(time.monotonic() - started, 1e-9)
            logging.info("reference: step %d, %.0f samples/s, loss %.4f", step, rate, loss.item())
    seconds = time.monotonic() - started
    with torch.no_grad():
        model.eval()
        scores = []
        for s in range(0, len(valid_shards), 65_536):
            cat = torch.tensor(np.asarray(valid_shards.cat[s:s + 65_536]).astype(np.int64))
            size = cat.shape[0]
            scores.append(model(torch.tensor(np.asarray(valid_shards.dense[s:s + 65_536])),
                                [torch.arange(size)] * cat.shape[1], [cat[:, k] for k in range(cat.shape[1])]).numpy())
    probability, label = np.concatenate(scores), np.asarray(valid_shards.label)
    return {"samples": n, "seconds": round(seconds, 2), "samples_per_second": round(n / seconds, 1),
            "auc": float(roc_auc_score(label, probability)),
            "logloss": float(log_loss(label, np.clip(probability, 1e-7, 1 - 1e-7)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=2_000_000)
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--learning-rate", type=float, default=0.002)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    processed, oracle = prepared_training_day(args.work / "train_data", DAY, args.train_rows)
    logging.info("baseline (reference-style loop) ...")
    baseline = run_reference(processed / "shards" / "train", processed / "shards" / "valid")
    logging.info("baseline: %s", baseline)
    config = TrainingConfig(batch_size=args.batch_size, learning_rate=args.learning_rate, optimizer=args.optimizer,
                            eval_every=0.05, seed=0)
    result = train(parse_model_config(ARCHITECTURE), config, [processed])
    if result.status == "failed":
        raise SystemExit(f"the project's run failed: {result.reason}")
    reached = next((p for p in result.curve if p["auc"] >= baseline["auc"]), None)
    project = {"samples": int(result.metrics["samples"]),
               "seconds": round(result.metrics["training_time"], 2),
               "samples_per_second": round(result.metrics["samples_per_second"], 1),
               "auc": result.metrics["auc"], "logloss": result.metrics["logloss"],
               "seconds_to_baseline_auc": round(reached["train_seconds"], 2) if reached else None,
               "settings": config.model_dump(include={"batch_size", "learning_rate", "optimizer",
                                                      "sparse_embeddings"})}
    ratio = round(baseline["seconds"] / project["seconds_to_baseline_auc"], 2) if reached else None
    report = {"benchmark": "train", "train_rows": args.train_rows, "oracle_auc": oracle,
              "architecture": ARCHITECTURE, "baseline": baseline, "project": project,
              "time_to_equal_auc_speedup": ratio,
              "samples_per_second_ratio": round(project["samples_per_second"] / baseline["samples_per_second"], 2)}
    out = args.work / "train.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"\ntime to the baseline's AUC ({baseline['auc']:.4f}): baseline {baseline['seconds']}s, project "
          f"{project['seconds_to_baseline_auc']}s -> {ratio}x; samples/s ratio {report['samples_per_second_ratio']}x")


if __name__ == "__main__":
    main()
