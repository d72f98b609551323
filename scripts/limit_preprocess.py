"""The benchmark's limit line: the same work in one Python process with pyarrow and numpy, no Spark.

Per day: read the files with Arrow's multi-threaded CSV reader through recdp.parse (the same rules),
fill/clip/log1p, hex to int64, count values, extend an in-memory vocabulary (values seen at least
`freq_threshold` times, most frequent first), map to ids with recdp.ops.VocabularyLookup, split, and write
NumPy arrays. No Parquet, no persistent vocabulary, no crash safety, and a whole day in memory: it shows
how fast the work can go on this machine, not a way to run it.

Documented difference from the job: the split is a seeded hash of the row's position, not of the line.

    python scripts/limit_preprocess.py --dataset criteo --data DIR --day 2026-03-01 [--day ...] --out DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recdp.ids import FIRST_VALUE_ID
from recdp.ops import VocabularyLookup, categorical_keys, dense_features
from recdp.parse import keep_well_formed, read_delimited
from scripts.singleprocess import run_days, save_splits


def _mixed(positions: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of row positions: a cheap, well-spread, seeded hash."""
    h = positions.astype(np.uint64) + np.uint64(seed) + np.uint64(0x9E3779B97F4A7C15)
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def preprocess_day(spec, files: list[Path], out: Path, vocabularies: list[dict[str, np.ndarray]]) -> tuple[int, int]:
    tables, bad = [], 0
    for path in files:
        raw, wrong = read_delimited(spec, str(path), list(spec.raw_columns), skip_rows=int(spec.raw.header))
        table, dropped = keep_well_formed(spec, raw)
        tables.append(table)
        bad += wrong + dropped
    table = pa.concat_tables(tables)
    dense = dense_features(table, list(spec.dense)).astype(np.float32)
    label = table[spec.label].to_numpy().astype(np.float32)
    cat = np.empty((table.num_rows, len(spec.categorical)), np.int32)
    for j, name in enumerate(spec.categorical):
        keys = categorical_keys(table[name], spec.preprocess.hex_categoricals)
        counted = pc.value_counts(keys.drop_null())
        values, counts = counted.field("values").to_numpy(zero_copy_only=False), counted.field("counts").to_numpy()
        known = vocabularies[j]
        frequent = counts >= spec.preprocess.freq_threshold
        fresh = frequent & ~np.isin(values, known["keys"])
        order = np.lexsort((values[fresh], -counts[fresh]))
        new_keys = values[fresh][order]
        new_ids = FIRST_VALUE_ID + len(known["keys"]) + np.arange(len(new_keys), dtype=np.int32)
        keys_all = np.concatenate([known["keys"], new_keys])
        ids_all = np.concatenate([known["ids"], new_ids])
        sort = np.argsort(keys_all, kind="stable")
        vocabularies[j] = {"keys": keys_all[sort], "ids": ids_all[sort]}
        cat[:, j] = VocabularyLookup(vocabularies[j]["keys"], vocabularies[j]["ids"]).ids(keys)
    bucket = _mixed(np.arange(table.num_rows), spec.preprocess.split_seed) % np.uint64(1000)
    save_splits(spec, out, bucket, dense, cat, label)
    return table.num_rows, bad


def new_vocabularies(spec) -> list[dict[str, np.ndarray]]:
    key_dtype = np.int64 if spec.preprocess.hex_categoricals else object
    return [{"keys": np.zeros(0, key_dtype), "ids": np.zeros(0, np.int32)} for _ in spec.categorical]


def main() -> None:
    run_days(__doc__.splitlines()[0], preprocess_day, new_vocabularies, lambda vs: sum(len(v["keys"]) for v in vs))


if __name__ == "__main__":
    main()
