"""What the benchmark's two single-process preprocessors share: the command line, the loop over days, and
the arrays they write (DLRM's .npz layout)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recdp.rawread import partition_files
from recdp.spec import DatasetSpec, load_spec
from recdp.storage import DataRoot, parse_day

# (spec, raw files, output folder, vocabularies) -> (well-formed rows, malformed rows)
DayFunction = Callable[[DatasetSpec, list[Path], Path, Any], tuple[int, int]]


def save_splits(spec: DatasetSpec, out: Path, bucket: np.ndarray, dense: np.ndarray, cat: np.ndarray,
                label: np.ndarray) -> None:
    """Rows to train/valid/test by a hash bucket in [0, 1000), as the spec's fractions say."""
    splits = spec.preprocess.splits
    edges = (int(splits.train * 1000), int((splits.train + splits.valid) * 1000))
    out.mkdir(parents=True, exist_ok=True)
    for name, mask in (("train", bucket < edges[0]), ("valid", (bucket >= edges[0]) & (bucket < edges[1])),
                       ("test", bucket >= edges[1])):
        np.savez(out / f"{name}.npz", X_int=dense[mask], X_cat=cat[mask], y=label[mask])


def run_days(description: str, preprocess_day: DayFunction, new_vocabularies: Callable[[DatasetSpec], Any],
             vocabulary_size: Callable[[Any], int],
             after_day: Callable[[DatasetSpec, Path, Any], None] | None = None) -> None:
    """The command line: every --day in order, one vocabulary across them; prints a JSON summary."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", default="criteo")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--day", action="append", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    spec = load_spec(args.dataset)
    root = DataRoot(args.data.resolve())
    vocabularies = new_vocabularies(spec)
    started, rows, bad = time.monotonic(), 0, 0
    for day in args.day:
        files = partition_files(spec, root.raw(spec.name, parse_day(day)))
        day_rows, day_bad = preprocess_day(spec, files, args.out / f"day={day}", vocabularies)
        rows, bad = rows + day_rows, bad + day_bad
        if after_day is not None:
            after_day(spec, args.out, vocabularies)
    print(json.dumps({"rows": rows, "bad_rows": bad, "seconds": round(time.monotonic() - started, 3),
                      "vocabulary_size": vocabulary_size(vocabularies)}))
