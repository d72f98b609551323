"""Expert knowledge shared by every model's advisor: each rule says where it comes from.

Inputs are the data statistics (stats.json of the newest processed day, times the training window), the
compute budget and the workers; outputs are model sizes, training settings, a narrow search space around
them, the metrics with thresholds, and the experiment's budget and bandwidth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Measured by `make bench-quality` on 2 cores (training samples per second of each default model); used
# to estimate a trial's seconds from the rows it trains on.
SAMPLES_PER_SECOND = {"dlrm": 30_000, "wide_deep": 70_000, "dcnv2": 28_000, "deepfm": 60_000}
MIN_OBSERVATIONS, MAX_OBSERVATIONS = 4, 60
# Among trials whose AUC is within this of the best, the one that trains fastest is chosen: the issue's
# own notion of an equal AUC, and about the spread of AUCs that make bench-hpo measures between
# configurations of equal quality (0.838-0.840 on 200k rows).
SELECTION_AUC_TOLERANCE = 0.002


@dataclass(frozen=True)
class DataFacts:
    train_rows: int
    positive_rate: float
    vocab_sizes: dict[str, int]
    n_dense: int

    @classmethod
    def from_stats(cls, stats: dict, window_days: int = 1) -> DataFacts:
        return cls(
            train_rows=int(stats["splits"]["train"]["rows"]) * window_days,
            positive_rate=float(stats["positive_rate"]),
            vocab_sizes={c: int(v["vocab_size"]) for c, v in stats["categorical"].items()},
            n_dense=len(stats["dense"]),
        )


def max_embedding_dim(train_rows: int) -> int:
    """Wide embeddings need rows to be learnt: 16 below 2M training rows, 32 below 20M, else 64."""
    return 16 if train_rows < 2_000_000 else 32 if train_rows < 20_000_000 else 64


def embedding_dim_for(vocab_size: int, train_rows: int) -> int:
    """Google's rule of thumb (dim ~ 6 * vocab^(1/4)) as a power of two, between 4 and what the rows allow."""
    raw = 6 * max(vocab_size, 2) ** 0.25
    return int(min(max_embedding_dim(train_rows), max(4, 2 ** round(math.log2(raw)))))


def shared_embedding_dim(facts: DataFacts) -> int:
    """One dim for models that need equal dims: the rule applied to the median table size."""
    sizes = sorted(facts.vocab_sizes.values())
    return embedding_dim_for(sizes[len(sizes) // 2], facts.train_rows) if sizes else 8


def mlp_for(train_rows: int) -> tuple[int, ...]:
    """Wider MLPs only when there are rows to fit them (the SDA DLRM recipes scale width with data)."""
    if train_rows < 200_000:
        return (64, 32)
    if train_rows < 2_000_000:
        return (256, 128)
    return (512, 256, 128)


def batch_size_for(train_rows: int) -> int:
    """About 1,000 steps an epoch, between 256 and 8192, a power of two (large batches pay on CPUs)."""
    target = max(256, min(8192, train_rows // 1000))
    return int(2 ** round(math.log2(target)))


def learning_rate_for(batch_size: int) -> float:
    """Adam at 0.002 for batch 1024 (make bench-quality), scaled with sqrt(batch / 1024)."""
    return 0.002 * math.sqrt(batch_size / 1024)


def trial_seconds(model: str, train_rows: int, epochs: int) -> float:
    return train_rows * epochs / SAMPLES_PER_SECOND[model]


def budget_and_bandwidth(model: str, facts: DataFacts, epochs: int, budget_seconds: float, workers: int,
                         max_observations: int | None = None) -> tuple[int, int, float]:
    """Observations the budget pays for, trials to run at once, and each trial's share of seconds."""
    estimate = trial_seconds(model, facts.train_rows, epochs)
    observations = int(min(MAX_OBSERVATIONS, max(MIN_OBSERVATIONS, budget_seconds // max(estimate, 1e-9))))
    if max_observations is not None:
        observations = min(observations, max_observations)
    # SigOpt's advice: a bandwidth of at most a quarter of the budget keeps the search adaptive.
    bandwidth = max(1, min(workers, observations // 4))
    return observations, bandwidth, budget_seconds / observations


def metrics(champion_auc: float | None, auc_tolerance: float, trial_share_seconds: float,
            max_model_bytes: int | None) -> list[dict]:
    auc = {"name": "auc", "objective": "maximize", "strategy": "optimize"}
    if champion_auc is not None:
        auc["threshold"] = round(champion_auc - auc_tolerance, 6)
    result = [
        auc,
        # A trial may take up to twice its share: the budget, not each trial, is the hard limit.
        {"name": "training_time", "objective": "minimize", "strategy": "optimize",
         "threshold": round(2 * trial_share_seconds, 3)},
        {"name": "logloss", "objective": "minimize", "strategy": "store"},
    ]
    if max_model_bytes is not None:
        result.append({"name": "model_bytes", "objective": "minimize", "strategy": "constraint",
                       "threshold": float(max_model_bytes)})
    return result


MIN_STEPS_PER_EPOCH = 100


def narrow_space(learning_rate: float, batch_size: int, train_rows: int) -> list[dict]:
    """Around the known-good values: a factor 3 on the learning rate; half to 4 times the batch size
    (larger batches train faster on CPUs at a small AUC cost, a trade the multi-metric search weighs), but
    none that leaves fewer than MIN_STEPS_PER_EPOCH steps an epoch: too few updates for Adam to converge."""
    batches = {max(64, batch_size // 2), batch_size}
    batches |= {b for b in (batch_size * 2, batch_size * 4) if train_rows // b >= MIN_STEPS_PER_EPOCH}
    space = [{"name": "learning_rate", "type": "double", "transformation": "log",
              "bounds": {"min": round(learning_rate / 3, 8), "max": round(learning_rate * 3, 8)}}]
    if len(batches) > 1:
        space.append({"name": "batch_size", "type": "int", "grid": sorted(batches)})
    return space


def mlp_choices(name: str, widths: tuple[int, ...]) -> dict:
    """Half, the advised and double widths of an MLP, as categorical values ("256-128"; SigOpt parameters
    are scalars). Capacity is what trades AUC for training time: measured on 200k rows, DLRM's top MLP at
    64-32 trains 1.7x faster than at 512-256 for the same AUC within 0.001."""
    scales = [[max(8, w // 2) for w in widths], list(widths), [w * 2 for w in widths]]
    return {"name": name, "type": "categorical",
            "categorical_values": list(dict.fromkeys("-".join(map(str, s)) for s in scales))}


def naive_space(tunes_embedding_dim: bool) -> list[dict]:
    """The broad space a user writes without knowledge of the model or the data."""
    space = [
        {"name": "learning_rate", "type": "double", "transformation": "log", "bounds": {"min": 1e-5, "max": 1.0}},
        {"name": "batch_size", "type": "int", "bounds": {"min": 32, "max": 16384}},
        {"name": "optimizer", "type": "categorical", "categorical_values": ["sgd", "adagrad", "adam"]},
    ]
    if tunes_embedding_dim:
        space.append({"name": "embedding_dim", "type": "int", "bounds": {"min": 2, "max": 128}})
    return space
