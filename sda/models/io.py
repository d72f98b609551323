"""Build a registered model from its config and the data shape; save and load it (torch.load with weights_only)."""

from __future__ import annotations

import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from sda.models.config import ModelConfig
from sda.models.registry import model_entry, parse_model_config


@dataclass(frozen=True)
class DataShape:
    """What a model needs to know of the data: column names and table sizes (from stats.json / shards)."""

    dense_columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]
    table_sizes: tuple[int, ...]
    vocab_version: int = 0

    @classmethod
    def from_header(cls, header) -> DataShape:
        return cls(tuple(header.dense_columns), tuple(header.categorical_columns),
                   tuple(int(header.table_sizes[c]) for c in header.categorical_columns), header.vocab_version)


def build_model(config: ModelConfig, shape: DataShape, sparse: bool = False) -> nn.Module:
    """The registered model's module for this data (sda.models.registry)."""
    config.check_columns(list(shape.categorical_columns))
    model = model_entry(config.name).build(config, shape, sparse)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {config.name!r}: its builder returned {type(model).__name__}, not a torch module")
    return model


def model_size(model: nn.Module) -> dict[str, int]:
    parameters = sum(p.numel() for p in model.parameters())
    return {"parameters": parameters, "bytes": sum(p.numel() * p.element_size() for p in model.parameters())}


def save_model(path: Path, model: nn.Module, config: ModelConfig, shape: DataShape) -> None:
    """state_dict + config + data shape, written atomically; loadable with torch.load(weights_only=True)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "format": 1,
        "config": config.model_dump(mode="json"),
        "shape": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(shape).items()},
        "state_dict": model.state_dict(),
    }
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except RuntimeError as error:
        # torch reports a failed write (a full disk) as "unexpected pos"; the OSError behind it says what.
        cause = error.__context__ or error.__cause__
        if isinstance(cause, OSError):
            raise OSError(cause.errno, f"{cause.strerror} while writing the model", str(path)) from error
        raise
    finally:
        tmp.unlink(missing_ok=True)


def load_model(path: Path) -> tuple[nn.Module, ModelConfig, DataShape]:
    document = torch.load(path, map_location="cpu", weights_only=True)
    config = parse_model_config(document["config"])
    raw = document["shape"]
    shape = DataShape(tuple(raw["dense_columns"]), tuple(raw["categorical_columns"]), tuple(raw["table_sizes"]),
                      raw["vocab_version"])
    model = build_model(config, shape)
    model.load_state_dict(document["state_dict"])
    model.eval()
    return model, config, shape
