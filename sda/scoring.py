"""Score raw rows of a dataset with an exported champion bundle (`sda export`).

Copied into each bundle as score.py, beside the bundle's copy of the `recdp` package (recdp.zip) and the
dataset's spec (spec.yaml), so a serving process scores without this project, Spark or MLflow (it needs
numpy, torch, pyarrow, pydantic and PyYAML):

    from score import BundleScorer
    probabilities = BundleScorer("bundle/").score(open("part-00000").read().splitlines())

It parses and transforms rows with the very functions of recdp's Spark job (recdp.parse, recdp.ops): the
spec's parse rules; missing dense values become 0, negatives 0, then log1p; categorical values (hex strings
as 64-bit ints when the dataset has them) map through the champion's vocabulary: missing -> 0, unknown -> 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

_ARCHIVE = Path(__file__).resolve().with_name("recdp.zip")
if _ARCHIVE.is_file() and str(_ARCHIVE) not in sys.path:
    sys.path.insert(0, str(_ARCHIVE))  # the bundle's own recdp, the one its model was trained with

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import torch  # noqa: E402

from recdp.ops import VocabularyLookup, categorical_keys, dense_features  # noqa: E402
from recdp.parse import parse_lines  # noqa: E402
from recdp.spec import load_spec  # noqa: E402


class BundleScorer:
    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.meta = json.loads((folder / "bundle.json").read_text())
        self.spec = load_spec(folder / "spec.yaml")
        self.model = torch.jit.load(str(folder / "model.ts"), map_location="cpu").eval()
        with np.load(folder / "vocab.npz", allow_pickle=False) as vocab:
            self.lookups = {c: VocabularyLookup(vocab[f"{c}__keys"], vocab[f"{c}__ids"])
                            for c in self.spec.categorical}

    def _with_label(self, lines: Iterable[str]) -> tuple[list[str], list[int]]:
        """The non-empty lines, each with a label field (a placeholder where serving rows have none), and their
        line numbers. A line with any other field count is refused."""
        spec = self.spec
        names = list(spec.raw_columns)
        label_at, header = names.index(spec.label), spec.raw.delimiter.join(names)
        kept, numbers = [], []
        for number, line in enumerate(lines, 1):
            line = line.rstrip("\r\n")
            if not line or (spec.raw.header and line == header):
                continue
            fields = line.split(spec.raw.delimiter)
            if len(fields) == len(names) - 1:
                fields.insert(label_at, "0")
            elif len(fields) != len(names):
                raise ValueError(f"line {number}: {len(fields)} fields, expected {len(names)} "
                                 f"(or {len(names) - 1} without the label)")
            kept.append(spec.raw.delimiter.join(fields))
            numbers.append(number)
        return kept, numbers

    def features(self, lines: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """(dense float32 [n, d], categorical ids int64 [n, k]) of raw lines, with or without the label."""
        spec = self.spec
        kept, numbers = self._with_label(lines)
        parsed = parse_lines(spec, pa.array(kept, pa.string()), carry=pa.array(range(len(kept)), pa.int64()))
        if parsed.malformed:
            good = {int(i) for i in parsed.table["_carry"].to_pylist()}
            bad = [numbers[i] for i in range(len(kept)) if i not in good]
            raise ValueError(f"line {bad[0]}: the label or a dense field does not match {spec.name}'s parse rules"
                             f" ({len(bad)} such lines)")
        table = parsed.table
        dense = dense_features(table, list(spec.dense)).astype(np.float32)
        columns = []
        for name in spec.categorical:
            keys = categorical_keys(table[name], spec.preprocess.hex_categoricals)
            columns.append(self.lookups[name].ids(keys).astype(np.int64))
        ids = np.stack(columns, axis=1) if columns else np.zeros((table.num_rows, 0), dtype=np.int64)
        return dense, ids

    @torch.no_grad()
    def score(self, lines: Iterable[str]) -> np.ndarray:
        """Click probabilities of raw lines."""
        dense, ids = self.features(lines)
        if len(dense) == 0:
            return np.zeros(0)
        return torch.sigmoid(self.model(torch.from_numpy(dense), torch.from_numpy(ids))).numpy().astype(np.float64)
