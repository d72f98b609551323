"""Batches from memory-mapped training shards: block shuffling, vectorised gathers, tensors out.

A block (64k rows by default) is read from the memory map in one contiguous copy, permuted in memory and
cut into batches, so there is no per-sample Python work and reads stay sequential. Blocks are visited in
a seeded random order, across every shard directory of the training window.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recdp.shards import Shards, read_shards


@dataclass(frozen=True)
class Batch:
    dense: torch.Tensor  # float32 [B, n_dense]
    cat: torch.Tensor  # int64 [B, n_cat]
    label: torch.Tensor  # float32 [B]

    def __len__(self) -> int:
        return self.label.shape[0]


def open_split(day_dirs: Sequence[Path], split: str) -> list[Shards]:
    """The shards of one split for each processed day directory; all must share their columns."""
    shards = [read_shards(Path(d) / "shards" / split) for d in day_dirs]
    columns = {(tuple(s.header.dense_columns), tuple(s.header.categorical_columns)) for s in shards}
    if len(columns) != 1:
        raise ValueError(f"the {split} shards of {list(map(str, day_dirs))} do not share their columns")
    return shards


# The blocks of a sample do not depend on a trial's seed: every trial of a search trains on the same rows.
SAMPLE_SEED = 20_260_101


class BatchStream:
    """Batches of the shards' rows, or of a sample of `sample_rows` of them: whole blocks drawn at random
    (the same for every seed, so trials that sample compare on the same rows), the last one cut short."""

    def __init__(self, shards: Sequence[Shards], batch_size: int, shuffle: bool, seed: int = 0,
                 block_rows: int = 65_536, sample_rows: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.shards, self.batch_size, self.shuffle, self.seed = list(shards), batch_size, shuffle, seed
        self.blocks = [(i, start, min(start + block_rows, len(s)))
                       for i, s in enumerate(self.shards) for start in range(0, len(s), block_rows)]
        self.rows = sum(len(s) for s in self.shards)
        if sample_rows is not None and sample_rows < self.rows:
            kept, rows = [], 0
            for b in np.random.default_rng(SAMPLE_SEED).permutation(len(self.blocks)):
                index, start, end = self.blocks[b]
                end = min(end, start + sample_rows - rows)
                kept.append((index, start, end))
                rows += end - start
                if rows >= sample_rows:
                    break
            self.blocks, self.rows = sorted(kept), rows

    def __len__(self) -> int:
        return self.rows

    def epoch(self, number: int = 0) -> Iterator[Batch]:
        rng = np.random.default_rng([self.seed, number])
        order = rng.permutation(len(self.blocks)) if self.shuffle else range(len(self.blocks))
        carry: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        carried = 0
        for b in order:
            index, start, end = self.blocks[b]
            shards = self.shards[index]
            dense = np.asarray(shards.dense[start:end])
            cat = np.asarray(shards.cat[start:end])
            label = np.asarray(shards.label[start:end])
            if self.shuffle:
                perm = rng.permutation(end - start)
                dense, cat, label = dense[perm], cat[perm], label[perm]
            carry.append((dense, cat, label))
            carried += end - start
            if carried < self.batch_size:
                continue
            dense, cat, label = (np.concatenate(parts) for parts in zip(*carry, strict=True))
            full = (len(label) // self.batch_size) * self.batch_size
            for s in range(0, full, self.batch_size):
                yield _batch(dense[s:s + self.batch_size], cat[s:s + self.batch_size], label[s:s + self.batch_size])
            carry = [(dense[full:], cat[full:], label[full:])] if full < len(label) else []
            carried = len(label) - full
        if carried:
            dense, cat, label = (np.concatenate(parts) for parts in zip(*carry, strict=True))
            yield _batch(dense, cat, label)


def _batch(dense: np.ndarray, cat: np.ndarray, label: np.ndarray) -> Batch:
    return Batch(torch.from_numpy(np.ascontiguousarray(dense)),
                 torch.from_numpy(cat.astype(np.int64)),
                 torch.from_numpy(np.ascontiguousarray(label)))
