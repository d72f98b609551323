"""Building blocks shared by the models: fused embedding tables and MLPs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class FusedEmbeddings(nn.Module):
    """One embedding table per categorical column, stored as one fused table per embedding dim.

    Table t's rows live at offsets[t] .. offsets[t] + sizes[t] of its group's table, so all tables of a dim
    are looked up with one gather instead of one call per column.
    """

    def __init__(self, sizes: Sequence[int], dims: Sequence[int], sparse: bool = False) -> None:
        super().__init__()
        self.sizes, self.dims = list(sizes), list(dims)
        self.groups = sorted(set(self.dims))
        self.tables = nn.ModuleList()
        self._columns: list[list[int]] = []
        for dim in self.groups:
            columns = [t for t, d in enumerate(self.dims) if d == dim]
            rows = [self.sizes[t] for t in columns]
            offsets = torch.tensor([0, *torch.tensor(rows).cumsum(0)[:-1].tolist()], dtype=torch.int64)
            self.register_buffer(f"offsets_{dim}", offsets, persistent=False)
            table = nn.Embedding(sum(rows), dim, sparse=sparse)
            # DLRM's initialisation: uniform in +-sqrt(1 / rows) per table.
            with torch.no_grad():
                for column, start in zip(columns, offsets.tolist(), strict=True):
                    bound = (1.0 / self.sizes[column]) ** 0.5
                    table.weight[start:start + self.sizes[column]].uniform_(-bound, bound)
            self.tables.append(table)
            self._columns.append(columns)

    def stacked(self, cat: torch.Tensor) -> torch.Tensor:
        """[batch, tables, dim]; needs every table at one dim."""
        if len(self.groups) != 1:
            raise ValueError("stacked() needs every table at the same embedding dim")
        return self.tables[0](cat + self.offsets(self.groups[0]))

    def flat(self, cat: torch.Tensor) -> torch.Tensor:
        """[batch, sum of dims], tables grouped by dim."""
        parts = []
        for dim, table, columns in zip(self.groups, self.tables, self._columns, strict=True):
            index = cat[:, columns] if len(columns) != cat.shape[1] else cat
            parts.append(table(index + self.offsets(dim)).flatten(1))
        return torch.cat(parts, dim=1)

    def offsets(self, dim: int) -> torch.Tensor:
        return getattr(self, f"offsets_{dim}")

    def location(self, column: int) -> tuple[int, int]:
        """Where table `column` lives: the index of its fused table and its first row there."""
        group = self.groups.index(self.dims[column])
        return group, int(self.offsets(self.dims[column])[self._columns[group].index(column)])

    @property
    def output_dim(self) -> int:
        return sum(self.dims)


class IdWeights(nn.Module):
    """One scalar weight per categorical id (the wide / first-order part), fused over tables."""

    def __init__(self, sizes: Sequence[int], sparse: bool = False) -> None:
        super().__init__()
        offsets = torch.tensor([0, *torch.tensor(list(sizes)).cumsum(0)[:-1].tolist()], dtype=torch.int64)
        self.register_buffer("offsets", offsets, persistent=False)
        self.weight = nn.Embedding(int(sum(sizes)), 1, sparse=sparse)
        nn.init.zeros_(self.weight.weight)

    def forward(self, cat: torch.Tensor) -> torch.Tensor:
        return self.weight(cat + self.offsets).sum(dim=(1, 2))


def mlp(in_features: int, sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear + ReLU (+ dropout) per size; the caller adds the output layer."""
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(in_features, size), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_features = size
    return nn.Sequential(*layers)
