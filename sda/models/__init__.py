"""Built-in CTR models (DLRM, Wide & Deep, DCN-v2, DeepFM): build from a config, save, load.

The configs (pydantic) import without torch, so that a DAG file can offer the model names as a Param
without importing torch at parse time; the torch side (sda.models.io) loads on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from sda.models.config import MODEL_NAMES, ModelConfig

_IN_IO = {"DataShape", "build_model", "load_model", "model_size", "parse_model_config", "save_model"}

__all__ = ["MODEL_NAMES", "DataShape", "ModelConfig", "build_model", "load_model", "model_size",
           "parse_model_config", "save_model"]


def __getattr__(name: str) -> Any:
    if name in _IN_IO:
        return getattr(importlib.import_module("sda.models.io"), name)
    raise AttributeError(f"module 'sda.models' has no attribute {name!r}")
