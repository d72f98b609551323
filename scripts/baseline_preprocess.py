"""The benchmark's baseline: single-process preprocessing in the style of DLRM's NumPy data_utils.

Line by line, doing the Spark job's work: split the line, apply the spec's parse rules (field count, label
and dense patterns; malformed lines dropped and counted), parse the label and dense values, turn hex
categorical values into ints (1-15 hex digits, else the not-hex code), count values in per-column dicts
(pass 1); then give every value seen at least `freq_threshold` times that the persistent vocabulary does
not hold yet the next id of its column (most frequent first, ties by value, as recdp.vocab does), map the
rows, clip and log1p the dense values, split by a seeded hash and save NumPy arrays (pass 2). The
vocabulary persists across days in <out>/vocab.npz. It keeps a day in memory, as the classic script does,
so its peak memory grows with the rows of a day.

Documented difference from the job: the split hash is CRC32 of the line (Python has no xxhash64), so the
same rows land in other splits; the ids, counts and values agree.

    python scripts/baseline_preprocess.py --dataset criteo --data DIR --day 2026-03-01 [--day ...] --out DIR
"""

from __future__ import annotations

import re
import sys
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recdp.ids import FIRST_VALUE_ID, MISSING_ID, OOV_ID
from recdp.ops import MAX_HEX_DIGITS, NOT_HEX
from scripts.singleprocess import run_days, save_splits

HEX = re.compile(f"[0-9a-fA-F]{{1,{MAX_HEX_DIGITS}}}")


def hex_code(value: str) -> int:
    return int(value, 16) if HEX.fullmatch(value) else NOT_HEX


def preprocess_day(spec, files: list[Path], out: Path, vocabularies: list[dict]) -> tuple[int, int]:
    n_cols = len(spec.raw_columns)
    index = {name: i for i, name in enumerate(spec.raw_columns)}
    label_i, dense_i = index[spec.label], [index[c] for c in spec.dense]
    cat_i = [index[c] for c in spec.categorical]
    label_rule, dense_rule = re.compile(spec.parse.label_pattern), re.compile(spec.parse.dense_pattern)
    to_key = hex_code if spec.preprocess.hex_categoricals else str
    labels, dense_rows, cat_rows, hashes = [], [], [], []
    counts: list[dict] = [{} for _ in cat_i]
    bad = 0
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as handle:
            if spec.raw.header:
                handle.readline()
            for line in handle:
                line = line.rstrip("\r\n").removeprefix("\ufeff")
                if not line:
                    continue
                fields = line.split(spec.raw.delimiter)
                if len(fields) != n_cols or not label_rule.fullmatch(fields[label_i]) or any(
                        fields[i] and not dense_rule.fullmatch(fields[i]) for i in dense_i):
                    bad += 1
                    continue
                cats = [to_key(fields[i]) if fields[i] else None for i in cat_i]
                for j, value in enumerate(cats):
                    if value is not None:
                        counts[j][value] = counts[j].get(value, 0) + 1
                labels.append(int(fields[label_i]))
                dense_rows.append([float(fields[i]) if fields[i] else 0.0 for i in dense_i])
                cat_rows.append(cats)
                hashes.append(zlib.crc32(line.encode()) % 1000)
    threshold = spec.preprocess.freq_threshold
    for ids, column_counts in zip(vocabularies, counts, strict=True):
        fresh = sorted(((-n, v) for v, n in column_counts.items() if n >= threshold and v not in ids))
        next_id = FIRST_VALUE_ID + len(ids)
        for offset, (_, value) in enumerate(fresh):
            ids[value] = next_id + offset
    cat = np.array([[MISSING_ID if v is None else vocabularies[j].get(v, OOV_ID) for j, v in enumerate(row)]
                    for row in cat_rows], dtype=np.int32)
    dense = np.log1p(np.clip(np.array(dense_rows, dtype=np.float32), 0, None))
    label = np.array(labels, dtype=np.float32)
    save_splits(spec, out, np.array(hashes), dense, cat, label)
    return len(labels), bad


def save_vocabularies(path: Path, columns: list[str], vocabularies: list[dict]) -> None:
    arrays = {}
    for name, ids in zip(columns, vocabularies, strict=True):
        keys = np.array(list(ids.keys()))
        arrays[f"{name}__keys"], arrays[f"{name}__ids"] = keys, np.array(list(ids.values()), dtype=np.int64)
    np.savez(path, **arrays)


def main() -> None:
    run_days(__doc__.splitlines()[0], preprocess_day, lambda spec: [{} for _ in spec.categorical],
             lambda vs: sum(len(v) for v in vs),
             after_day=lambda spec, out, vs: save_vocabularies(out / "vocab.npz", list(spec.categorical), vs))


if __name__ == "__main__":
    main()
