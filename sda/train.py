"""The CPU trainer: memory-mapped shards in, a trained model and its metrics out.

train() never raises for a bad trial: a NaN or exploding loss, or a callback that stops a hopeless trial,
ends it with status "failed" or "stopped" and a reason, so an optimizer can record it and go on.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from sklearn.metrics import log_loss, roc_auc_score
from torch import nn

from sda.data import Batch, BatchStream, open_split
from sda.models import DataShape, ModelConfig, build_model, load_model, model_size
from sda.models.grow import grow_into
from sda.optim import RowWiseAdagrad, finite, lr_factor
from sda.training_config import TrainingConfig

log = logging.getLogger(__name__)

CHECKPOINT_MIN_ROWS = 250_000

# Called with (step, fraction of training done, validation AUC, training seconds so far); returning False
# stops the trial.
ProgressCallback = Callable[[int, float, float, float], bool]


def training_loss(model: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The model's own loss(logits, labels) when it has one (sda.models.registry's contract), else binary
    cross-entropy on its logits."""
    own = getattr(model, "loss", None)
    return own if callable(own) else nn.BCEWithLogitsLoss()


@dataclass
class TrainResult:
    status: Literal["ok", "failed", "stopped"]
    reason: str | None
    metrics: dict[str, float]
    curve: list[dict[str, float]] = field(default_factory=list)
    model: nn.Module | None = None
    shape: DataShape | None = None

    def to_dict(self) -> dict:
        return {"status": self.status, "reason": self.reason, "metrics": self.metrics, "curve": self.curve}


def _optimizers(model: nn.Module, config: TrainingConfig) -> list[torch.optim.Optimizer]:
    sparse = [p for m in model.modules() if isinstance(m, nn.Embedding) and m.sparse for p in m.parameters()]
    sparse_ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if id(p) not in sparse_ids]
    lr = config.learning_rate
    if config.optimizer == "sgd":
        return [torch.optim.SGD(dense + sparse, lr=lr)]
    if config.optimizer == "adagrad":
        optimizers: list[torch.optim.Optimizer] = [torch.optim.Adagrad(dense, lr=lr)]
        return optimizers + ([RowWiseAdagrad(sparse, lr=lr)] if sparse else [])
    optimizers = [torch.optim.Adam(dense, lr=lr)]
    return optimizers + ([torch.optim.SparseAdam(sparse, lr=lr)] if sparse else [])


@torch.no_grad()
def evaluate(model: nn.Module, stream: BatchStream) -> dict[str, float]:
    model.eval()
    scores, labels = [], []
    for batch in stream.epoch():
        scores.append(torch.sigmoid(model(batch.dense, batch.cat)).numpy())
        labels.append(batch.label.numpy())
    model.train()
    probability, label = np.concatenate(scores).astype(np.float64), np.concatenate(labels)
    if label.min() == label.max():
        raise ValueError("the validation split holds one class only: AUC is undefined")
    return {
        "auc": float(roc_auc_score(label, probability)),
        "logloss": float(log_loss(label, np.clip(probability, 1e-7, 1 - 1e-7))),
        "accuracy": float(np.mean((probability >= 0.5) == (label >= 0.5))),
    }


def _shape_of(day_dirs: Sequence[Path]) -> tuple[DataShape, list, list]:
    train_shards = open_split(day_dirs, "train")
    valid_shards = open_split(day_dirs[-1:], "valid")
    headers = [s.header for s in train_shards + valid_shards]
    columns = headers[-1].categorical_columns
    # Ids are append-only, so the largest vocabulary of the window holds every id any day uses.
    sizes = tuple(max(int(h.table_sizes[c]) for h in headers) for c in columns)
    newest = headers[-1]
    shape = DataShape(tuple(newest.dense_columns), tuple(columns), sizes, max(h.vocab_version for h in headers))
    return shape, train_shards, valid_shards


def train(model_config: ModelConfig, config: TrainingConfig, day_dirs: Sequence[Path],
          callback: ProgressCallback | None = None, init_from: Path | None = None) -> TrainResult:
    """Train on the train splits of `day_dirs` (oldest first); validate on the newest day's valid split.
    With `init_from` (a saved model of the same config), training starts from its weights, its embedding
    tables grown to the window's vocabulary (a refresh)."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    shape, train_shards, valid_shards = _shape_of([Path(d) for d in day_dirs])
    model = build_model(model_config, shape, sparse=config.sparse_embeddings)
    if init_from is not None:
        old, old_config, old_shape = load_model(Path(init_from))
        if old_config != model_config:
            raise ValueError(f"{init_from} holds a {old_config.name} model of another config than the one to train")
        grow_into(old, old_shape, model, shape)
    optimizers = _optimizers(model, config)
    loss_fn = training_loss(model)
    train_stream = BatchStream(train_shards, config.batch_size, shuffle=True, seed=config.seed,
                               sample_rows=config.sample_rows)
    valid_stream = BatchStream(valid_shards, 65_536, shuffle=False, sample_rows=config.eval_rows)
    # Evaluations during training only steer early stopping (sda.pruning), which compares trials on the same
    # rows: on a large day a quarter of the sample is enough for that (an AUC's standard error stays near
    # 0.001 at 500k rows), and keeps them from costing as much as the training.
    quarter = len(valid_stream) // 4
    checkpoint_stream = (BatchStream(valid_shards, 65_536, shuffle=False, sample_rows=quarter)
                         if quarter >= CHECKPOINT_MIN_ROWS else valid_stream)
    steps_per_epoch = -(-len(train_stream) // config.batch_size)
    total_steps = min(steps_per_epoch * config.epochs, config.max_steps or 1 << 62)
    eval_interval = max(1, round(total_steps * config.eval_every)) if config.eval_every else None
    curve: list[dict[str, float]] = []
    status, reason, step, samples, running, eval_seconds = "ok", None, 0, 0, 0.0, 0.0
    started = last_log = time.monotonic()
    log.info("training %s on %d rows (%d steps of %d), %s", model_config.name, len(train_stream), total_steps,
             config.batch_size, model_size(model))
    model.train()
    for epoch in range(config.epochs):
        for batch in train_stream.epoch(epoch):
            loss = _step(model, optimizers, loss_fn, batch, config, step)
            if not finite(loss) or loss > config.max_loss:
                status, reason = "failed", f"loss became {loss} at step {step}: diverged"
                break
            step, samples = step + 1, samples + len(batch)
            running = loss if step == 1 else 0.98 * running + 0.02 * loss
            now = time.monotonic()
            if now - last_log >= config.log_every_seconds:
                log.info("step %d/%d  %.0f samples/s  loss %.4f  elapsed %.0fs", step, total_steps,
                         samples / max(now - started - eval_seconds, 1e-9), running, now - started)
                last_log = now
            if eval_interval and step % eval_interval == 0 and step < total_steps:
                point = {"step": step, "fraction": step / total_steps, "samples": samples, "loss": running,
                         "train_seconds": now - started - eval_seconds, **evaluate(model, checkpoint_stream)}
                eval_seconds += time.monotonic() - now
                curve.append(point)
                if config.target_auc and point["auc"] >= config.target_auc:
                    reason = f"target AUC {config.target_auc} reached at step {step}"
                    break
                go_on = callback is None or callback(step, step / total_steps, point["auc"], point["train_seconds"])
                if not go_on:
                    status, reason = "stopped", f"stopped by the optimizer at step {step} (AUC {point['auc']:.4f})"
                    break
            if step >= total_steps:
                break
        if status != "ok" or reason or step >= total_steps:
            break
    # Wall seconds of the training loop, without the intermediate validation passes.
    training_time = time.monotonic() - started - eval_seconds
    metrics: dict[str, float] = {
        "training_time": training_time,
        "eval_seconds": eval_seconds,
        "samples_per_second": samples / max(training_time, 1e-9),
        "samples": samples,
        "steps": step,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **{f"model_{k}": v for k, v in model_size(model).items()},
    }
    if status != "failed":
        evaluated = time.monotonic()
        metrics.update(evaluate(model, valid_stream))
        metrics["eval_seconds"] += time.monotonic() - evaluated
        curve.append({"step": step, "fraction": step / total_steps, "samples": samples, "loss": running,
                      "train_seconds": training_time,
                      **{k: metrics[k] for k in ("auc", "logloss", "accuracy")}})
        log.info("%s: AUC %.4f, logloss %.4f, %.0f samples/s, %.1fs", model_config.name, metrics["auc"],
                 metrics["logloss"], metrics["samples_per_second"], training_time)
    else:
        log.warning("trial failed: %s", reason)
    return TrainResult(status, reason, metrics, curve, model if status != "failed" else None, shape)


def _step(model: nn.Module, optimizers: list[torch.optim.Optimizer], loss_fn: nn.Module, batch: Batch,
          config: TrainingConfig, step: int) -> float:
    factor = lr_factor(step, config.warmup_steps, config.decay_start_step, config.decay_steps, config.decay_power)
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * factor
        optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(batch.dense, batch.cat), batch.label)
    value = float(loss.detach())
    if not finite(value):
        return value
    loss.backward()
    if config.grad_clip_norm:
        dense = [p for p in model.parameters() if p.grad is not None and not p.grad.is_sparse]
        torch.nn.utils.clip_grad_norm_(dense, config.grad_clip_norm)
    for optimizer in optimizers:
        optimizer.step()
    return value
