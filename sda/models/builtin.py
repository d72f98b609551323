"""The four built-in CTR models join the registry: DLRM, Wide & Deep, DCN-v2, DeepFM (their modules are
sda.models.nets, imported when one is built; their advisor parts are sda.advisors.models)."""

from __future__ import annotations

from typing import Any

from sda.advisors import models as advice
from sda.models.config import DCNv2Config, DeepFMConfig, DLRMConfig, WideDeepConfig
from sda.models.registry import ModelEntry, register_model


def _sizes(shape: Any) -> tuple[int, list[int]]:
    return len(shape.dense_columns), list(shape.table_sizes)


def build_dlrm(config: DLRMConfig, shape: Any, sparse: bool = False) -> Any:
    from sda.models.nets import DLRM

    return DLRM(config, *_sizes(shape), sparse)


def build_wide_deep(config: WideDeepConfig, shape: Any, sparse: bool = False) -> Any:
    from sda.models.nets import WideDeep

    return WideDeep(config, *_sizes(shape), [config.dim_of(c) for c in shape.categorical_columns], sparse)


def build_dcnv2(config: DCNv2Config, shape: Any, sparse: bool = False) -> Any:
    from sda.models.nets import DCNv2

    return DCNv2(config, *_sizes(shape), [config.dim_of(c) for c in shape.categorical_columns], sparse)


def build_deepfm(config: DeepFMConfig, shape: Any, sparse: bool = False) -> Any:
    from sda.models.nets import DeepFM

    return DeepFM(config, *_sizes(shape), sparse)


# Throughputs: make bench-train on 2 cores at the advised sizes (1% of Criteo's cardinalities).
register_model(ModelEntry("dlrm", DLRMConfig, build_dlrm, advice.dlrm, 30_000,
                          "Meta's DLRM: bottom MLP, embeddings, pairwise dot interaction, top MLP"))
register_model(ModelEntry("wide_deep", WideDeepConfig, build_wide_deep, advice.wide_deep, 70_000,
                          "Wide & Deep: a linear model over ids and dense values plus a deep MLP"))
register_model(ModelEntry("dcnv2", DCNv2Config, build_dcnv2, advice.dcnv2, 28_000,
                          "DCN-v2: a cross network beside (or before) a deep MLP"))
register_model(ModelEntry("deepfm", DeepFMConfig, build_deepfm, advice.deepfm, 60_000,
                          "DeepFM: first-order weights, factorization-machine pairs and a deep MLP"))
