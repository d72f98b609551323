"""`sda export`: the champion as a self-contained bundle that scores raw rows of its dataset.

    bundle/
      model.ts      the model, TorchScript (torch.jit.load; no project code needed)
      vocab.npz     per categorical column: sorted keys and their ids (the champion's vocabulary version)
      bundle.json   the dataset's raw format and transforms, the registry version and its lineage
      score.py      BundleScorer (sda/scoring.py): raw lines -> click probabilities
      recdp.zip     the recdp package: the parser and ops of the Spark job, which score.py imports
      spec.yaml     the dataset spec (columns, raw format, parse rules)

The bundle is built in a staging directory and renamed into place: a reader never sees half of one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import yaml

from recdp.jobs.package import job_archive
from recdp.spec import DatasetSpec
from recdp.storage import staged_directory
from recdp.vocab import VocabularyStore
from sda.models import load_model
from sda.promote import Registry

SCORER = Path(__file__).with_name("scoring.py")


def vocabulary_arrays(vocab_root: Path, version: int, columns: list[str]) -> dict[str, np.ndarray]:
    """Keys (sorted) and ids per column at a vocabulary version, from its snapshot (recdp.vocab)."""
    store = VocabularyStore(vocab_root, columns)
    vocabulary = store.version(version)
    arrays: dict[str, np.ndarray] = {}
    for name in columns:
        table = vocabulary.column_table(name)
        values = table["value"]
        # Strings as a fixed-width unicode array: np.load refuses object arrays (allow_pickle=False).
        keys = values.to_numpy() if pa.types.is_integer(values.type) else np.array(values.to_pylist(), dtype=str)
        arrays[f"{name}__keys"] = keys if len(keys) else np.zeros(0, dtype=np.int64)
        arrays[f"{name}__ids"] = table["id"].to_numpy().astype(np.int64)
    return arrays


def export_champion(registry: Registry, spec: DatasetSpec, vocab_root: Path, destination: Path) -> Path:
    record = registry.champion()
    if record is None:
        raise LookupError(f"{registry.name} has no champion to export")
    if "recsys.vocab_version" not in record.tags:
        raise ValueError(f"{registry.name} version {record.version} has no vocabulary version tag: "
                         "its bundle could not map values to ids")
    version = int(record.tags["recsys.vocab_version"])
    with tempfile.TemporaryDirectory() as tmp, staged_directory(Path(destination)) as staging:
        model, config, shape = load_model(registry.champion_model(Path(tmp)))
        if tuple(shape.categorical_columns) != tuple(spec.categorical):
            raise ValueError(f"the champion's columns {shape.categorical_columns} are not {spec.name}'s")
        example = (torch.zeros(2, len(shape.dense_columns)), torch.ones(2, len(shape.categorical_columns),
                                                                        dtype=torch.int64))
        traced = torch.jit.trace(model.eval(), example, check_trace=True)
        traced.save(str(staging / "model.ts"))
        np.savez(staging / "vocab.npz", **vocabulary_arrays(vocab_root, version, list(spec.categorical)))
        meta = {
            "dataset": spec.name, "registered_model": registry.name, "version": record.version,
            "model": config.model_dump(mode="json"), "vocab_version": version,
            "raw_columns": list(spec.raw_columns), "delimiter": spec.raw.delimiter, "header": spec.raw.header,
            "label": spec.label, "dense": list(spec.dense), "categorical": list(spec.categorical),
            "hex_categoricals": spec.preprocess.hex_categoricals, "dense_pattern": spec.parse.dense_pattern,
            "table_sizes": list(shape.table_sizes), "lineage": record.tags, "exported_at": int(time.time()),
        }
        (staging / "bundle.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        shutil.copyfile(SCORER, staging / "score.py")
        shutil.copyfile(job_archive(Path(tmp)), staging / "recdp.zip")
        (staging / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    return Path(destination)
