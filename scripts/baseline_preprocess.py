"""The benchmark's baseline: single-process preprocessing in the style of DLRM's NumPy data_utils.

Line by line: split the line, parse the label and dense counts, count categorical values in per-column
dicts (pass 1); then give every value seen at least `freq_threshold` times an id in dict order, map the
rows, clip and log1p the dense values, split by a seeded hash and save NumPy arrays (pass 2). It keeps
everything in memory, as the classic script does, so its peak memory grows with the rows.

    python scripts/baseline_preprocess.py --dataset criteo --data DIR --day 2026-03-01 [--day ...] --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recdp.rawread import partition_files
from recdp.spec import load_spec
from recdp.storage import DataRoot, parse_day


def preprocess_day(spec, files: list[Path], out: Path) -> int:
    n_cols = len(spec.raw_columns)
    index = {name: i for i, name in enumerate(spec.raw_columns)}
    label_i, dense_i = index[spec.label], [index[c] for c in spec.dense]
    cat_i = [index[c] for c in spec.categorical]
    labels, dense_rows, cat_rows, hashes = [], [], [], []
    counts: list[dict[str, int]] = [{} for _ in cat_i]
    for path in files:
        with open(path) as handle:
            if spec.raw.header:
                handle.readline()
            for line in handle:
                fields = line.rstrip("\n").split(spec.raw.delimiter)
                if len(fields) != n_cols:
                    continue
                try:
                    label = int(fields[label_i])
                    dense = [float(fields[i]) if fields[i] else 0.0 for i in dense_i]
                except ValueError:
                    continue
                cats = [fields[i] for i in cat_i]
                for j, value in enumerate(cats):
                    if value:
                        counts[j][value] = counts[j].get(value, 0) + 1
                labels.append(label)
                dense_rows.append(dense)
                cat_rows.append(cats)
                hashes.append(zlib.crc32(line.encode()) % 1000)
    threshold = spec.preprocess.freq_threshold
    vocabularies = []
    for column_counts in counts:
        ids, next_id = {}, 2
        for value, count in column_counts.items():
            if count >= threshold:
                ids[value] = next_id
                next_id += 1
        vocabularies.append(ids)
    cat = np.array([[vocabularies[j].get(v, 1) if v else 0 for j, v in enumerate(row)] for row in cat_rows],
                   dtype=np.int32)
    dense = np.log1p(np.clip(np.array(dense_rows, dtype=np.float32), 0, None))
    label = np.array(labels, dtype=np.float32)
    bucket = np.array(hashes)
    splits = spec.preprocess.splits
    edges = (int(splits.train * 1000), int((splits.train + splits.valid) * 1000))
    out.mkdir(parents=True, exist_ok=True)
    for name, mask in (("train", bucket < edges[0]), ("valid", (bucket >= edges[0]) & (bucket < edges[1])),
                       ("test", bucket >= edges[1])):
        np.savez(out / f"{name}.npz", X_int=dense[mask], X_cat=cat[mask], y=label[mask])
    return len(labels)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="criteo")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--day", action="append", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    spec = load_spec(args.dataset)
    root = DataRoot(args.data.resolve())
    started, rows = time.monotonic(), 0
    for day in args.day:
        files = partition_files(spec, root.raw(spec.name, parse_day(day)))
        rows += preprocess_day(spec, files, args.out / f"day={day}")
    print(json.dumps({"rows": rows, "seconds": round(time.monotonic() - started, 3)}))


if __name__ == "__main__":
    main()
