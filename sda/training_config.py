"""The recipe's `training` section: a config without torch, so that recipes parse where torch is not loaded
(a DAG file at parse time, the advisor); sda.train runs it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer


class TrainingConfig(BaseModel):
    """The recipe's `training` section."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: int = Field(1, ge=1, le=100)
    batch_size: int = Field(1024, ge=1, le=1 << 20)
    optimizer: Literal["sgd", "adagrad", "adam"] = "adam"
    learning_rate: float = Field(0.002, gt=0.0, le=100.0)
    sparse_embeddings: bool = True
    warmup_steps: int = Field(0, ge=0)
    decay_start_step: int = Field(0, ge=0)
    decay_steps: int = Field(0, ge=0)
    decay_power: float = Field(2.0, gt=0.0)
    grad_clip_norm: float | None = Field(None, gt=0.0)
    seed: int = 0
    eval_every: float | None = Field(0.25, gt=0.0, le=1.0, description="fraction of training between evals")
    target_auc: float | None = Field(None, gt=0.5, le=1.0)
    max_loss: float = Field(50.0, gt=0.0)
    max_steps: int | None = Field(None, ge=1)
    sample_rows: int | None = Field(None, ge=1, description="train on a fixed sample of this many training rows "
                                                             "(a search's trials); None: every row")
    eval_rows: int | None = Field(2_000_000, ge=1000, description="validate on a fixed sample of this many rows "
                                  "of the valid split (None: all of it): an AUC's standard error is about "
                                  "0.0004 at 2M rows, and a 100M-row day's valid split would cost more to "
                                  "score, at every evaluation, than a sampled trial costs to train")
    threads: int | None = Field(None, ge=1)
    log_every_seconds: float = Field(10.0, gt=0.0)

    @model_serializer(mode="wrap")
    def _keep_no_evals(self, handler, info):
        # eval_every None (no evaluation until the end) is not its default: keep it when a dump drops Nones,
        # else a saved recipe (dump_recipe, exclude_none) reads back with eval_every 0.25.
        document = handler(self)
        if self.eval_every is None and info.exclude_none and "eval_every" not in (info.exclude or ()):
            document["eval_every"] = None
        return document
