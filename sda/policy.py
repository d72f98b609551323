"""The run's policies, parts of the recipe and of the DAG's Params: when and how much to retrain (`retrain`,
applied by sda.retrain.mode), and when a challenger replaces the champion (`promotion`, applied by
sda.promote)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["auto", "skip", "refresh", "search", "full", "data"]
MODES: tuple[str, ...] = ("auto", "skip", "refresh", "search", "full", "data")


class PromotionPolicy(BaseModel):
    """When a challenger replaces the champion (the recipe's `promotion` section and the DAG's Params)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    min_delta: float = Field(0.001, ge=0, description="AUC gain over the champion required to promote")
    logloss_tolerance: float = Field(0.002, ge=0, description="how much worse the logloss may be")
    min_auc: float = Field(0.6, ge=0, le=1, description="absolute AUC floor")
    max_logloss: float | None = Field(None, gt=0, description="absolute logloss ceiling")
    max_training_seconds: float | None = Field(None, gt=0)
    max_model_bytes: int | None = Field(None, gt=0)
    bootstrap: bool = Field(False, description="require the AUC gain to hold under a paired bootstrap")
    bootstrap_samples: int = Field(200, ge=50, le=10_000)
    confidence: float = Field(0.95, gt=0.5, lt=1, description="of the bootstrap's bound and the AUC difference's "
                              "confidence interval")
    holdout_min_rows: int = Field(10_000, ge=0, description="the holdout's minimum rows: a day with fewer adds the "
                                  "test splits of the days before it")
    holdout_min_positives: int = Field(300, ge=0, description="the holdout's minimum positives, likewise")
    holdout_max_days: int = Field(14, ge=1, description="the most days whose test splits make up the holdout")
    baseline: bool = Field(True, description="train a linear baseline (logistic regression) beside each search; "
                           "a challenger that loses to it on the holdout is replaced by it")


class RetrainPolicy(BaseModel):
    """When and how much to retrain (the recipe's `retrain` section; the DAG's Params override each field).

    - mode: auto (default) chooses per run; any other value forces that mode.
    - decay_tolerance (0.002): the champion is healthy while its served AUC on the new day is at most this
      below its AUC on its own day's holdout (or, for a champion from before that was recorded, the AUC it was
      chosen with)...
    - decay_noise_z (2.0): ...or at most this many standard errors (Hanley-McNeil) of the difference of those
      two AUCs, when that is more: a decay the holdouts' sizes explain is noise, not decay.
    - refresh_max_decay (0.005): a decay beyond what is allowed by up to this much, with at most
      refresh_max_drift_columns (2) drifted columns, is met by a refresh: the champion fine-tuned on the new
      days with its own settings, one fit instead of a search.
    - full_decay (0.01): a decay of this much beyond what is allowed gets a search the whole advised budget.
    - full_drift_columns (5): so do this many columns drifted beyond the spec's soft limits.
    - search_floor (0.25): the share of the advised budget the mildest search gets.
    - full_every_days (30): a cold search at least this often, whatever the champion's health.
    - refresh_every_days (3): a healthy champion whose newest training day is this many days old is refreshed
      (fine-tuned on the days since, one fit, promoted only if it beats it on the same holdout): a slow drift
      lowers the served AUC by less than the holdouts' noise lets the decay test see, and fresh data still
      pays. None: healthy champions are only ever skipped.
    - fill_window (True): a healthy champion that learned from fewer days than the training window holds (its
      window was cut at a shift, or the history was short) is refreshed on each new day until it has learned
      from a full window: right after a shift, the model trained on the shift's day alone is the one most
      improved by the next days, which a daily search would have trained on.
    - window_from_shift (True): a day with an abrupt shift (a decay of full_decay beyond what is allowed, or
      accepted past the hard drift limits) starts the training windows of its run and of the runs after it,
      until the window has moved past it: days before a shift teach a world that is gone.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    mode: Mode = "auto"
    decay_tolerance: float = Field(0.002, ge=0, le=0.5)
    decay_noise_z: float = Field(2.0, ge=0, le=10)
    refresh_max_decay: float = Field(0.005, ge=0, le=0.5)
    refresh_max_drift_columns: int = Field(2, ge=0)
    full_decay: float = Field(0.01, gt=0, le=0.5)
    full_drift_columns: int = Field(5, ge=1)
    search_floor: float = Field(0.25, gt=0, le=1)
    full_every_days: int = Field(30, ge=1)
    refresh_every_days: int | None = Field(3, ge=1)
    fill_window: bool = True
    window_from_shift: bool = True
