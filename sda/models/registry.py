"""The model registry: every model the pipeline can train joins it from one file of its own.

A model file registers a `ModelEntry`: its config (a pydantic `ModelConfigBase` subclass whose `name` field is
a Literal of the model's name), a builder (config, data shape, sparse) -> torch module, its advisor part (data
facts -> the recipe's model section and the model's own parameters to tune) and its training throughput on 2
cores, for the advisor's time estimates (without one, a conservative default and a warning). The built-in
models are sda/models/builtin.py and sda/models/logistic.py; more files join from the paths in
`RECSYS_MODEL_PATHS` (files or folders of .py files, separated by os.pathsep), loaded on first use. docs/MODELS.md
shows how to add one.

The contract a built module keeps (what the trainer, the evaluation and the export call):
    forward(dense [B, n_dense] float32, cat [B, n_cat] int64) -> logits [B]   (sigmoid(logits) is the CTR)
    loss(logits, labels) -> scalar   optional; without it, binary cross-entropy on the logits
Ids at or beyond a table's size never reach a model: they are mapped to the out-of-vocabulary row 0.

Config and registry import no torch, so a DAG file can list the model names at parse time; a builder imports
torch (and its module's classes) when it is called.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sda.models.config import ModelConfigBase

if TYPE_CHECKING:
    from sda.advisors.knowledge import DataFacts

log = logging.getLogger(__name__)

PATHS_SETTING = "RECSYS_MODEL_PATHS"
# Training samples per second on 2 cores assumed for a model that states none: slower than every built-in
# model measured (DLRM 30k, DCN-v2 28k at the advised sizes), so that budgets and deadlines err on the safe side.
DEFAULT_SAMPLES_PER_SECOND = 20_000.0

ModelAdvice = tuple[dict, list[dict]]  # (the recipe's model section, the model's own parameters to tune)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config: type[ModelConfigBase]
    build: Callable[[Any, Any, bool], Any]  # (config, DataShape, sparse) -> torch.nn.Module
    advise: Callable[[DataFacts], ModelAdvice]
    samples_per_second: float | None = None  # measured training throughput on 2 cores (make bench-train)
    description: str = ""


_entries: dict[str, ModelEntry] = {}
_loaded = False
_loading = threading.RLock()


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add a model (a model file calls this at import). Registering the same name twice is an error, unless it
    is the same entry (a module imported again)."""
    field = entry.config.model_fields.get("name")
    if not issubclass(entry.config, ModelConfigBase) or field is None or field.default != entry.name:
        raise ValueError(f"model {entry.name!r}: its config must subclass ModelConfigBase with "
                         f"name: Literal[{entry.name!r}] = {entry.name!r}")
    if entry.samples_per_second is not None and entry.samples_per_second <= 0:
        raise ValueError(f"model {entry.name!r}: samples_per_second must be positive")
    with _loading:
        earlier = _entries.get(entry.name)
        if earlier is not None and (earlier.config.__qualname__, earlier.build.__qualname__) != (
                entry.config.__qualname__, entry.build.__qualname__):
            raise ValueError(f"model {entry.name!r} is registered twice (by {earlier.build.__module__} and "
                             f"{entry.build.__module__})")
        _entries[entry.name] = entry
    return entry


def _load() -> None:
    global _loaded
    if _loaded:
        return
    with _loading:
        if _loaded:
            return
        importlib.import_module("sda.models.builtin")
        importlib.import_module("sda.models.logistic")
        for path in plugin_files(os.environ.get(PATHS_SETTING, "")):
            _load_file(path)
        _loaded = True


def plugin_files(setting: str) -> list[Path]:
    """The .py files a RECSYS_MODEL_PATHS value names (a folder: its .py files not starting with _)."""
    files = []
    for part in filter(None, (p.strip() for p in setting.split(os.pathsep))):
        path = Path(part).expanduser()
        if path.is_dir():
            files += sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        elif path.is_file() and path.suffix == ".py":
            files.append(path)
        else:
            raise ImportError(f"{PATHS_SETTING}: {path} is neither a .py file nor a folder")
    return files


def _load_file(path: Path) -> None:
    name = f"recsys_model_plugins.{path.stem}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"model file {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise ImportError(f"model file {path}: {type(error).__name__}: {error}") from error
    log.info("model file %s loaded", path)


def model_names() -> tuple[str, ...]:
    _load()
    return tuple(sorted(_entries))


def model_entry(name: str) -> ModelEntry:
    _load()
    entry = _entries.get(name)
    if entry is None:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(_entries)} (more join from "
                         f"{PATHS_SETTING})")
    return entry


_warned: set[str] = set()


def samples_per_second(name: str) -> float:
    """The model's training throughput for time estimates (the entry's, else the conservative default)."""
    entry = model_entry(name)
    if entry.samples_per_second is not None:
        return float(entry.samples_per_second)
    if name not in _warned:
        _warned.add(name)
        log.warning("model %s states no samples_per_second: budgets assume %.0f samples/s (measure it with make "
                    "bench-train and set it in its ModelEntry)", name, DEFAULT_SAMPLES_PER_SECOND)
    return DEFAULT_SAMPLES_PER_SECOND


def parse_model_config(document: Any) -> ModelConfigBase:
    """A model config from the recipe's model section (its `name` picks the model); a pydantic
    ValidationError or a ValueError names what is wrong."""
    if isinstance(document, ModelConfigBase):
        return document
    if not isinstance(document, dict) or "name" not in document:
        raise ValueError("a model section needs the model's name")
    return model_entry(str(document["name"])).config.model_validate(document)
