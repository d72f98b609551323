"""CTR models: built-in (DLRM, Wide & Deep, DCN-v2, DeepFM, logistic regression) and any that join the
registry (sda.models.registry); build from a config, save, load.

The configs (pydantic) and the registry import without torch, so that a DAG file can offer the model names as
a Param without importing torch at parse time; the torch side (sda.models.io) loads on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from sda.models.config import ModelConfig, ModelConfigBase
from sda.models.registry import ModelEntry, model_entry, model_names, parse_model_config, register_model

_IN_IO = {"DataShape", "build_model", "load_model", "model_size", "save_model"}

__all__ = ["DataShape", "ModelConfig", "ModelConfigBase", "ModelEntry", "build_model", "load_model", "model_entry",
           "model_names", "model_size", "parse_model_config", "register_model", "save_model"]


def __getattr__(name: str) -> Any:
    if name in _IN_IO:
        return getattr(importlib.import_module("sda.models.io"), name)
    raise AttributeError(f"module 'sda.models' has no attribute {name!r}")
