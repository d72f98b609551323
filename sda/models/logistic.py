"""Logistic regression on one-hot ids and the dense values: the linear baseline, and a complete model in one
file (docs/MODELS.md walks through it): its config, its torch module, its advisor part and its registration."""

from __future__ import annotations

from typing import Any, Literal

from sda.models.config import ModelConfigBase
from sda.models.registry import ModelAdvice, ModelEntry, register_model


class LogisticConfig(ModelConfigBase):
    """One weight per categorical id and per dense column, and a bias: nothing to size but the data."""

    name: Literal["logistic"] = "logistic"


def build(config: LogisticConfig, shape: Any, sparse: bool = False) -> Any:
    import torch
    from torch import nn

    from sda.models.layers import IdWeights  # fused over tables: a refresh grows it like any embedding table

    class Logistic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ids = IdWeights(list(shape.table_sizes), sparse)
            self.dense = nn.Linear(len(shape.dense_columns), 1)

        def forward(self, dense: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
            return self.ids(cat) + self.dense(dense).squeeze(1)

    return Logistic()


def advise(facts: Any) -> ModelAdvice:
    """Nothing of its own to tune: the shared space (learning rate, batch size) is the whole search."""
    return {"name": "logistic"}, []


# Measured: 196,829 samples/s on 2 cores, one epoch of 1M rows at Criteo's full cardinalities, the trainer's
# defaults (make bench-quality --models logistic,dlrm; docs/benchmarks/quality-logistic.json, where DLRM ran at
# 32,674 and is registered at 30,000); registered below the measurement, as the others are.
register_model(ModelEntry("logistic", LogisticConfig, build, advise, 150_000,
                          "logistic regression on one-hot ids and dense values (the linear baseline)"))
