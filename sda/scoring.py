"""Score raw rows of a dataset with an exported champion bundle (`sda export`).

Self-contained on purpose: it needs numpy and torch only, and is copied into each bundle as score.py, so a
serving process can score without this project, Spark or MLflow:

    from score import BundleScorer
    probabilities = BundleScorer("bundle/").score(open("part-00000").read().splitlines())

It applies the preprocessing of recdp's Spark job row by row: split on the delimiter; missing dense values
become 0, negatives 0, then log1p; categorical values (hex strings as 64-bit ints when the dataset has
them) map through the champion's vocabulary: missing -> 0, unknown -> 1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

MISSING_ID, OOV_ID = 0, 1


class BundleScorer:
    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.meta = json.loads((folder / "bundle.json").read_text())
        self.model = torch.jit.load(str(folder / "model.ts"), map_location="cpu").eval()
        with np.load(folder / "vocab.npz", allow_pickle=False) as vocab:
            self.vocab = {c: (vocab[f"{c}__keys"], vocab[f"{c}__ids"]) for c in self.meta["categorical"]}
        self.dense_pattern = re.compile(self.meta["dense_pattern"])

    def features(self, lines: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """(dense float32 [n, d], categorical ids int64 [n, k]) of raw lines, with or without the label."""
        meta = self.meta
        with_label = list(meta["raw_columns"])
        without_label = [c for c in with_label if c != meta["label"]]
        header = meta["delimiter"].join(with_label)
        dense_rows, cat_values = [], {c: [] for c in meta["categorical"]}
        for number, line in enumerate(lines, 1):
            line = line.rstrip("\r\n")
            if not line or (meta["header"] and line == header):
                continue
            fields = line.split(meta["delimiter"])
            if len(fields) == len(with_label):
                names = with_label
            elif len(fields) == len(without_label):
                names = without_label
            else:
                raise ValueError(f"line {number}: {len(fields)} fields, expected {len(with_label)} "
                                 f"(or {len(without_label)} without the label)")
            row = dict(zip(names, fields, strict=True))
            dense = []
            for name in meta["dense"]:
                raw = row[name]
                if raw and not self.dense_pattern.fullmatch(raw):
                    raise ValueError(f"line {number}: {name}={raw!r} is not a number")
                dense.append(float(raw) if raw else 0.0)
            dense_rows.append(dense)
            for name in meta["categorical"]:
                cat_values[name].append(row[name])
        dense = np.log1p(np.clip(np.asarray(dense_rows, dtype=np.float64).reshape(-1, len(meta["dense"])), 0, None))
        ids = np.stack([self._ids(name, cat_values[name]) for name in meta["categorical"]], axis=1) \
            if meta["categorical"] else np.zeros((len(dense_rows), 0), dtype=np.int64)
        return dense.astype(np.float32), ids.astype(np.int64)

    def _ids(self, column: str, values: list[str]) -> np.ndarray:
        keys, ids = self.vocab[column]
        if self.meta["hex_categoricals"]:
            codes = np.array([_hex(v) for v in values], dtype=np.int64)
        else:  # Python strings: a fixed-width array would cut longer values down to a known key
            keys, codes = keys.astype(object), np.array(values, dtype=object)
        result = np.full(len(values), OOV_ID, dtype=np.int64)
        if len(keys):
            where = np.clip(np.searchsorted(keys, codes), 0, len(keys) - 1)
            found = keys[where] == codes
            result[found] = ids[where[found]]
        result[np.array([v == "" for v in values], dtype=bool)] = MISSING_ID
        return result

    @torch.no_grad()
    def score(self, lines: Iterable[str]) -> np.ndarray:
        """Click probabilities of raw lines."""
        dense, ids = self.features(lines)
        if len(dense) == 0:
            return np.zeros(0)
        return torch.sigmoid(self.model(torch.from_numpy(dense), torch.from_numpy(ids))).numpy().astype(np.float64)


HEX = re.compile(r"[0-9a-fA-F]{1,15}")


def _hex(value: str) -> int:
    """recdp's HexToInt: 1 to 15 hex digits as an int; anything else -1 (never in a vocabulary)."""
    return int(value, 16) if HEX.fullmatch(value) else -1
