"""The promotion policy: when a challenger replaces the champion. Part of the recipe (`promotion`) and of
the DAG's Params; applied by sda.promote."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
    confidence: float = Field(0.95, gt=0.5, lt=1)
