"""Optimizers and the learning-rate schedule of the trainer."""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer


class RowWiseAdagrad(Optimizer):
    """Adagrad with one accumulator per embedding row (the mean of its squared gradient), as FBGEMM's
    row-wise Adagrad does for DLRM: a fraction of Adagrad's state, and sparse updates touch only the rows
    of the batch."""

    def __init__(self, params, lr: float = 0.01, eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if "sum" not in state:
                    state["sum"] = torch.zeros(param.shape[0], dtype=param.dtype)
                grad = param.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()
                    state["sum"].index_add_(0, rows, values.pow(2).mean(dim=1))
                    scale = group["lr"] / (state["sum"][rows].sqrt() + group["eps"])
                    param.index_add_(0, rows, -values * scale.unsqueeze(1))
                else:
                    state["sum"].add_(grad.pow(2).mean(dim=1))
                    param.addcdiv_(grad, (state["sum"].sqrt() + group["eps"]).unsqueeze(1), value=-group["lr"])
        return None


def lr_factor(step: int, warmup_steps: int, decay_start_step: int, decay_steps: int, power: float) -> float:
    """DLRM's schedule: linear warm-up, constant, then polynomial decay to zero over decay_steps."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay_steps and step >= decay_start_step:
        progress = min(1.0, (step - decay_start_step) / decay_steps)
        return max(0.0, (1.0 - progress) ** power)
    return 1.0


def finite(value: float) -> bool:
    return math.isfinite(value)
