"""The built-in models' configs: the recipe's `model` section, validated before any tensor is allocated.
Every model's config subclasses ModelConfigBase (sda.models.registry says how a model joins)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ModelConfigBase(BaseModel):
    """What every model's config has: embedding sizes (a model without embeddings ignores them) and dropout.
    A subclass adds `name: Literal["<model>"] = "<model>"` and its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str

    embedding_dim: int = Field(16, ge=1, le=1024)
    # Per-table embedding dims where they differ from embedding_dim (categorical column -> dim).
    table_dims: dict[str, int] = Field(default_factory=dict)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    def dim_of(self, column: str) -> int:
        return self.table_dims.get(column, self.embedding_dim)

    def _require_uniform_dims(self, reason: str) -> None:
        if any(d != self.embedding_dim for d in self.table_dims.values()):
            raise ValueError(f"model.table_dims: {reason} needs every table at embedding_dim")

    def check_columns(self, categorical: list[str]) -> None:
        unknown = sorted(set(self.table_dims) - set(categorical))
        if unknown:
            raise ValueError(f"model.table_dims names columns the data does not have: {unknown}")


def _positive(sizes: tuple[int, ...], where: str) -> None:
    if any(s < 1 for s in sizes):
        raise ValueError(f"{where} layer sizes must be positive, got {list(sizes)}")


class DLRMConfig(ModelConfigBase):
    """Meta's DLRM: bottom MLP on dense features, one embedding per table, pairwise dot interaction."""

    name: Literal["dlrm"] = "dlrm"
    bottom_mlp: tuple[int, ...] = (512, 256, 64, 16)
    top_mlp: tuple[int, ...] = (512, 256)
    self_interaction: bool = False

    @model_validator(mode="after")
    def _shapes(self) -> DLRMConfig:
        _positive(self.bottom_mlp, "model.bottom_mlp")
        _positive(self.top_mlp, "model.top_mlp")
        if not self.bottom_mlp or self.bottom_mlp[-1] != self.embedding_dim:
            raise ValueError(f"model.bottom_mlp must end at embedding_dim {self.embedding_dim} (DLRM dots the "
                             f"dense vector with the embeddings), got {list(self.bottom_mlp)}")
        self._require_uniform_dims("DLRM's dot interaction")
        return self


class _DeepConfig(ModelConfigBase):
    """The models with a deep MLP over [dense, embeddings] (Wide & Deep, DCN-v2, DeepFM)."""

    deep_mlp: tuple[int, ...] = Field((256, 128, 64), min_length=1)

    @model_validator(mode="after")
    def _deep_shape(self) -> _DeepConfig:
        _positive(self.deep_mlp, "model.deep_mlp")
        return self


class WideDeepConfig(_DeepConfig):
    """Wide & Deep: a linear model over categorical ids and dense values plus a deep MLP."""

    name: Literal["wide_deep"] = "wide_deep"


class DCNv2Config(_DeepConfig):
    """DCN-v2: a cross network (full rank or low rank) stacked before, or parallel to, a deep MLP."""

    name: Literal["dcnv2"] = "dcnv2"
    cross_layers: int = Field(3, ge=1, le=16)
    structure: Literal["stacked", "parallel"] = "parallel"
    low_rank: int | None = Field(None, ge=1)


class DeepFMConfig(_DeepConfig):
    """DeepFM: first-order weights plus factorization-machine pairwise terms, and a deep MLP."""

    name: Literal["deepfm"] = "deepfm"

    @model_validator(mode="after")
    def _fm_dims(self) -> DeepFMConfig:
        self._require_uniform_dims("the FM part")
        return self


# Any registered model's config (sda.models.registry.parse_model_config makes one from a recipe's section).
ModelConfig = ModelConfigBase
